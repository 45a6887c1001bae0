package retrieval_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/crispy-enigma/crispy/modules/retrieval"
	"github.com/crispy-enigma/crispy/platform/ai/embeddings"
	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/metering"
	"github.com/crispy-enigma/crispy/platform/search/embedded"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// fakeEmbedder is a provider's embeddings model ("fake:emb"): it counts its calls.
type fakeEmbedder struct{ calls int }

func (f *fakeEmbedder) Embed(_ context.Context, texts []string) ([][]float32, error) {
	f.calls++
	out := make([][]float32, len(texts))
	for i := range texts {
		out[i] = []float32{1, 0, 0}
	}
	return out, nil
}
func (f *fakeEmbedder) Model() string  { return "fake:emb" }
func (f *fakeEmbedder) Dimension() int { return 3 }

type oneEmbedder struct{ e embeddings.Embedder }

func (o oneEmbedder) Resolve(string) (embeddings.Embedder, error) { return o.e, nil }

// recMeter books until refuse is set, and keeps what was recorded per tenant.
type recMeter struct {
	mu     sync.Mutex
	refuse bool
	done   map[string][]metering.Call
}

func (m *recMeter) Begin(_ context.Context, t tenant.ID, tokens int) (metering.Hold, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.refuse {
		return nil, apperr.New(apperr.KindRateLimited, "budget_exceeded", "over budget")
	}
	return recHold{m, t}, nil
}

type recHold struct {
	m *recMeter
	t tenant.ID
}

func (h recHold) Done(_ context.Context, c metering.Call) error {
	h.m.mu.Lock()
	defer h.m.mu.Unlock()
	if h.m.done == nil {
		h.m.done = map[string][]metering.Call{}
	}
	h.m.done[h.t.String()] = append(h.m.done[h.t.String()], c)
	return nil
}
func (recHold) Cancel() {}

// Embeddings calls to a provider are metered (issue 15 item 5): each is a usage record of the
// calling tenant with its purpose, model and tokens, and the budget's refusal stops the call before
// the provider is called.
func TestEmbeddingsAreMeteredAndBudgeted(t *testing.T) {
	t.Parallel()
	ix, err := embedded.Open(embedded.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	emb, meter := &fakeEmbedder{}, &recMeter{}
	m, err := retrieval.New(retrieval.Deps{Store: eventstoretest.NewMemory(), Index: ix, Embedders: oneEmbedder{emb}, Meter: meter})
	if err != nil {
		t.Fatal(err)
	}
	acme, globex := tenant.MustParse("acme"), tenant.MustParse("globex")
	if _, model, err := m.EmbedFor(context.Background(), acme, metering.PurposeEmbeddings, []string{"refunds take fourteen days"}); err != nil || model != "fake:emb" {
		t.Fatalf("embed: %v %q", err, model)
	}
	if _, _, err := m.Embed(context.Background(), acme, []string{"a tool's text"}); err != nil {
		t.Fatal(err)
	}
	got := meter.done["acme"]
	if len(got) != 2 || got[0].Purpose != metering.PurposeEmbeddings || got[1].Purpose != metering.PurposeToolEmbed ||
		got[0].Operation != metering.OperationEmbeddings || got[0].Model != "fake:emb" || got[0].PromptTokens <= 0 || !got[0].Estimated {
		t.Fatalf("recorded %+v", got)
	}
	if len(meter.done["globex"]) != 0 {
		t.Fatalf("globex has acme's records: %+v", meter.done["globex"])
	}
	meter.refuse = true
	calls := emb.calls
	_, _, err = m.EmbedFor(context.Background(), globex, metering.PurposeEmbeddings, []string{"x"})
	var ae *apperr.Error
	if !errors.As(err, &ae) || ae.Code != "budget_exceeded" || emb.calls != calls {
		t.Fatalf("over budget: %v (provider calls %d → %d), want 429 budget_exceeded without a call", err, calls, emb.calls)
	}
}
