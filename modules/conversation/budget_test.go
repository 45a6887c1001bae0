package conversation_test

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/modules/conversation"
	tenancyevents "github.com/crispy-enigma/crispy/modules/tenancy/events"
	"github.com/crispy-enigma/crispy/platform/ai"
)

// greedyModel writes every token max_tokens allows (a word a token) and reports them: the worst
// case a budget must hold against. It records every max_tokens it was sent.
type greedyModel struct {
	mu    sync.Mutex
	sent  []int
	total atomic.Int64
}

func (g *greedyModel) Stream(ctx context.Context, req ai.Request, emit ai.Emit) (ai.Result, error) {
	g.mu.Lock()
	g.sent = append(g.sent, req.MaxTokens)
	g.mu.Unlock()
	n := req.MaxTokens
	if n <= 0 {
		n = 5000 // a provider's own default, far above any reservation
	}
	var b strings.Builder
	for i := 0; i < n; i++ {
		b.WriteString(" w")
	}
	if err := emit(b.String()); err != nil {
		return ai.Result{}, err
	}
	g.total.Add(int64(n))
	return ai.Result{Content: b.String(), Usage: ai.Usage{CompletionTokens: n, TotalTokens: n, Reported: true}, FinishReason: "length"}, nil
}

func (g *greedyModel) Complete(ctx context.Context, req ai.Request) (ai.Result, error) {
	return g.Stream(ctx, req, func(string) error { return nil })
}

func (g *greedyModel) maxSent() []int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]int(nil), g.sent...)
}

// The max_tokens sent upstream is capped at what the budget has left, so a turn that fits only in
// part runs with less (before: refused, since the reservation was a fixed 1,024), and a model that
// writes all it may never takes the tenant past its ceiling.
func TestBudgetCapsMaxTokensAtWhatIsLeft(t *testing.T) {
	t.Parallel()
	g := &greedyModel{}
	e := newEnv(t, opts{config: conversation.Config{MaxCompletionTokens: 1024, ContextTokens: 4096}, provider: g,
		tenants: map[string]tenancyevents.TenantConfig{"acme": {TokenBudget: tenancyevents.TokenBudget{Daily: 2000}}}})
	if r := e.chatJSON("acme", sid(), "hi"); r.status != 200 {
		t.Fatalf("first turn: %d %s", r.status, r.raw)
	}
	// Read-your-writes: the first turn's 1,024 count at once; under 1,000 are left.
	if r := e.chatJSON("acme", sid(), "hi"); r.status != 200 {
		t.Fatalf("second turn, with less than 1,024 left: %d %s", r.status, r.raw)
	}
	wantProblem(t, e.chatJSON("acme", sid(), "hi"), 429, "budget_exceeded")
	sent := g.maxSent()
	if len(sent) != 2 || sent[0] != 1024 || sent[1] >= 1024 || sent[1] < 900 {
		t.Fatalf("max_tokens sent upstream: %v, want 1024 then what was left", sent)
	}
	if used := g.total.Load(); used > 2000 {
		t.Fatalf("the model wrote %d tokens under a budget of 2000", used)
	}
}

// 30 turns at once against a budget of 12,000 with a model that writes all it may: the ceiling
// holds exactly, and more turns run than 12,000/1,024 (each one past the 11th gets what is left).
func TestBudgetCeilingHoldsUnderConcurrencyWithAGreedyModel(t *testing.T) {
	t.Parallel()
	g := &greedyModel{}
	e := newEnv(t, opts{config: conversation.Config{MaxCompletionTokens: 1024, ContextTokens: 4096}, provider: g,
		tenants: map[string]tenancyevents.TenantConfig{"acme": {TokenBudget: tenancyevents.TokenBudget{Daily: 12000}}}})
	var wg sync.WaitGroup
	var ok, refused atomic.Int64
	for i := 0; i < 30; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch r := e.chatJSON("acme", sid(), "hi"); {
			case r.status == 200:
				ok.Add(1)
			case r.status == 429 && r.body["code"] == "budget_exceeded":
				refused.Add(1)
			default:
				t.Errorf("unexpected %d %s", r.status, r.raw)
			}
		}()
	}
	wg.Wait()
	if used := g.total.Load(); used > 12000 {
		t.Fatalf("%d turns wrote %d tokens under a budget of 12,000", ok.Load(), used)
	}
	if ok.Load() < 12 || ok.Load()+refused.Load() != 30 {
		t.Fatalf("admitted %d, refused %d", ok.Load(), refused.Load())
	}
}

// tokensPerMinute caps the tokens of any 60 s span: a turn that does not fit waits for the minute.
func TestTokensPerMinute(t *testing.T) {
	t.Parallel()
	g := &greedyModel{}
	e := newEnv(t, opts{config: conversation.Config{MaxCompletionTokens: 1000, ContextTokens: 4096}, provider: g,
		tenants: map[string]tenancyevents.TenantConfig{
			"acme":   {RateLimit: tenancyevents.RateLimit{TokensPerMinute: 2500}},
			"globex": {RateLimit: tenancyevents.RateLimit{TokensPerMinute: 2500}}}})
	for i := 0; i < 3; i++ {
		if r := e.chatJSON("acme", sid(), "hi"); r.status != 200 {
			t.Fatalf("turn %d: %d %s", i, r.status, r.raw)
		}
	}
	r := e.chatJSON("acme", sid(), "hi")
	wantProblem(t, r, 429, "budget_exceeded")
	if ra, _ := strconv.Atoi(r.header.Get("Retry-After")); ra < 1 || ra > 61 {
		t.Fatalf("retry-after %d", ra)
	}
	// The third turn got what was left of the minute: 2,500 in all.
	if s := g.maxSent(); len(s) != 3 || s[2] >= 1000 || g.total.Load() > 2500 {
		t.Fatalf("max_tokens sent %v, %d written", s, g.total.Load())
	}
	// Another tenant's minute is its own.
	if r := e.chatJSON("globex", sid(), "hi"); r.status != 200 {
		t.Fatalf("globex: %d %s", r.status, r.raw)
	}
	e.clock.Add(61 * time.Second)
	if r := e.chatJSON("acme", sid(), "hi"); r.status != 200 {
		t.Fatalf("a minute later: %d %s", r.status, r.raw)
	}
}
