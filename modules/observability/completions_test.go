package observability_test

import (
	"testing"

	convevents "github.com/crispy-enigma/crispy/modules/conversation/events"
)

// A stateless /v1/chat/completions call leaves no session, only a CompletionRecorded in the
// tenant's completions stream: usage and cost count it as a chat turn, for its tenant only.
func TestStatelessCompletionsCountInUsageAndCost(t *testing.T) {
	t.Parallel()
	e := newEnv(t, opts{})
	day := epoch.UTC().Format("20060102")
	e.append(acme, convevents.CompletionsCategory, day, convevents.TypeCompletionRecorded, convevents.CompletionRecorded{CallID: "c1",
		Model: "openai:gpt-4o-mini", Outcome: convevents.OutcomeCompleted, LatencyMs: 100, TTFTMs: 20,
		Usage: convevents.Usage{PromptTokens: 1000, CompletionTokens: 500, TotalTokens: 1500}})
	e.append(acme, convevents.CompletionsCategory, day, convevents.TypeCompletionRecorded, convevents.CompletionRecorded{CallID: "c2",
		Model: "openai:gpt-4o-mini", Outcome: convevents.CodeStreamFailed, LatencyMs: 50,
		Usage: convevents.Usage{PromptTokens: 10, CompletionTokens: 5, TotalTokens: 15, Estimated: true}})
	e.append(acme, convevents.CompletionsCategory, day, convevents.TypeCompletionRecorded, convevents.CompletionRecorded{CallID: "c3",
		Model: "openai:gpt-4o-mini", Outcome: convevents.CodeCancelled, Cancelled: true, Usage: convevents.Usage{Estimated: true}})
	r := e.get("/usage", "acme")
	if r.status != 200 {
		t.Fatalf("usage: %d %s", r.status, r.raw)
	}
	for k, want := range map[string]float64{"requests": 3, "tokensIn": 1010, "tokensOut": 505} {
		if got := num(t, r.body, k); got != want {
			t.Errorf("%s = %v, want %v (%s)", k, got, want, r.raw)
		}
	}
	c := e.get("/metrics/cost", "acme")
	if got, want := num(t, c.body, "totalCostUsd"), round6((1010*0.15+505*0.60)/1e6); !approx(got, want) {
		t.Errorf("cost %v, want %v (%s)", got, want, c.raw)
	}
	if got := num(t, e.get("/usage", "globex").body, "requests"); got != 0 {
		t.Errorf("globex counts %v of acme's calls", got)
	}
}
