package conversation_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/crispy-enigma/crispy/modules/conversation"
	tenancyevents "github.com/crispy-enigma/crispy/modules/tenancy/events"
	"github.com/crispy-enigma/crispy/platform/ai"
	"github.com/crispy-enigma/crispy/platform/ai/aitest"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

func TestBudgetLedgerIsRebuiltFromEventsOnStart(t *testing.T) {
	t.Parallel()
	st := eventstoretest.NewMemory()
	o := opts{store: st, config: conversation.Config{MaxCompletionTokens: 50, ContextTokens: 4096},
		fake:    aitest.New(aitest.Script{Usage: &ai.Usage{PromptTokens: 250, CompletionTokens: 50, TotalTokens: 300}}),
		tenants: map[string]tenancyevents.TenantConfig{"acme": {TokenBudget: tenancyevents.TokenBudget{Daily: 950}}}}
	e := newEnv(t, o)
	for i := 0; i < 3; i++ {
		if r := e.chatJSON("acme", sid(), "hi"); r.status != 200 {
			t.Fatal(r.raw)
		}
	}
	e.cancel()
	// A new instance on the same store: once replay has fed the projection, the 900 tokens used
	// today count, and the next turn (about 100 reserved) does not fit under 950.
	e2 := newEnv(t, o)
	eventually(t, "replayed", func() bool {
		n := 0
		for _, x := range e2.do("GET", "/sessions", "acme", nil).body["sessions"].([]any) {
			n += int(x.(map[string]any)["messageCount"].(float64))
		}
		return n == 6 // every answer, hence every usage, has been fed
	})
	wantProblem(t, e2.chatJSON("acme", sid(), "hi"), 429, "budget_exceeded")
	if r := e2.chatJSON("globex", sid(), "hi"); r.status != 200 {
		t.Fatalf("globex has no budget: %s", r.raw)
	}
}

func TestSessionAsOfShowsThePast(t *testing.T) {
	t.Parallel()
	e := newEnv(t, opts{})
	s := sid()
	e.chatJSON("acme", s, "first")
	time.Sleep(5 * time.Millisecond)
	mid := time.Now()
	time.Sleep(5 * time.Millisecond)
	e.chatJSON("acme", s, "second")
	ctx := context.Background()
	v, err := e.mod.SessionAsOf(ctx, tenant.MustParse("acme"), s, mid)
	if err != nil || !v.Live || len(v.Messages) != 2 || v.Messages[0].Content != "first" {
		t.Fatalf("%+v %v", v, err)
	}
	if v, _ := e.mod.SessionAsOf(ctx, tenant.MustParse("acme"), s, time.Now()); len(v.Messages) != 4 {
		t.Fatalf("now: %d messages", len(v.Messages))
	}
	if _, err := e.mod.SessionAsOf(ctx, tenant.MustParse("globex"), s, time.Now()); err == nil {
		t.Fatal("globex read acme's session")
	}
	if _, err := e.mod.SessionAsOf(ctx, tenant.MustParse("acme"), s, mid.Add(-time.Hour)); err == nil {
		t.Fatal("a session before its first event must be 404")
	}
}

func TestMetricsRecordTurnsTokensAndFallbacks(t *testing.T) {
	t.Parallel()
	set := metrics.NewSet()
	e := newEnv(t, opts{metrics: set, tenants: map[string]tenancyevents.TenantConfig{"acme": {Models: tenancyevents.Models{Chat: "down:m", Fallbacks: []string{"fake:m"}}}}})
	e.chatJSON("acme", sid(), "hi")
	var b strings.Builder
	set.WritePrometheus(&b)
	out := b.String()
	for _, want := range []string{`crispy_chat_turns_total{model="fake:m",outcome="completed"} 1`, `crispy_chat_fallbacks_total{model="down:m",reason="unavailable"} 1`,
		`crispy_chat_tokens_total{model="fake:m",direction="in"}`, `crispy_chat_ttft_seconds_bucket{model="fake:m"`, `crispy_ai_breaker_state{model="down:m"} 0`} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %s in\n%s", want, out)
		}
	}
	if strings.Contains(out, "acme") {
		t.Error("tenant id in metric labels")
	}
}
