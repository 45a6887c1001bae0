package conversation_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/modules/conversation"
	tenancyevents "github.com/crispy-enigma/crispy/modules/tenancy/events"
)

// milliPricer prices every fake model's completion at $1,000 per million tokens ($0.001 a token)
// and its prompt at nothing, so a key's dollars are easy to count in tokens and do not depend on
// the prompt estimate (the greedy model reports no prompt tokens); other models are unpriced.
type milliPricer struct{}

func (milliPricer) Cost(model string, _, _, completion, _ int64) (float64, bool) {
	if !strings.HasPrefix(model, "fake:") {
		return 0, false
	}
	return float64(completion) * 0.001, true
}

// An API key's daily USD budget holds like its token budget: the second call is capped at what the
// dollars left pay for (at the model's price), the third is refused with the same 429
// budget_exceeded, naming the key and the USD budget; another key and another tenant's key of the
// same id are not held by it (before: dailyUsd was recorded and never enforced).
func TestAPIKeyUSDBudgetIsEnforced(t *testing.T) {
	t.Parallel()
	g := &greedyModel{}
	pol := keyPolicy{policy: &policy{m: map[string]tenancyevents.TenantConfig{}},
		keys: map[string]tenancyevents.APIKey{
			"acme/key:aaaaaaaaaaaa":   {ID: "key:aaaaaaaaaaaa", Budget: &tenancyevents.KeyBudget{DailyUSD: 1.5}},
			"globex/key:aaaaaaaaaaaa": {ID: "key:aaaaaaaaaaaa"},
		}}
	e := newEnv(t, opts{provider: g, guard: keyGuard{}, policyOverride: pol, pricer: milliPricer{}})
	chat := func(tn, key string) resp {
		t.Helper()
		return e.do("POST", "/chat", tn, map[string]any{"sessionId": sid(), "message": "hi", "stream": false}, "x-api-key", key)
	}
	if r := chat("acme", "aaaaaaaaaaaa"); r.status != 200 {
		t.Fatalf("first call of the key: %d %s", r.status, r.raw)
	}
	// $1.024 (1,024 tokens) spent of $1.50: the next call may write what $0.476 pays for.
	if r := chat("acme", "aaaaaaaaaaaa"); r.status != 200 {
		t.Fatalf("second call of the key: %d %s", r.status, r.raw)
	}
	sent := g.maxSent()
	if len(sent) != 2 || sent[0] != 1024 || sent[1] != 476 {
		t.Fatalf("max_tokens sent for the key: %v, want 1024 then what its dollars left pay for", sent)
	}
	r := chat("acme", "aaaaaaaaaaaa")
	wantProblem(t, r, 429, "budget_exceeded")
	if d, _ := r.body["detail"].(string); !strings.Contains(d, "key:aaaaaaaaaaaa") || !strings.Contains(d, "USD") {
		t.Fatalf("refusal does not name the key's USD budget: %s", r.raw)
	}
	if spent := g.total.Load(); spent > 1500 {
		t.Fatalf("the key's calls wrote %d tokens ($%.3f) under a $1.50 budget", spent, float64(spent)*0.001)
	}
	for _, c := range []struct{ tn, key string }{{"acme", "bbbbbbbbbbbb"}, {"globex", "aaaaaaaaaaaa"}} {
		if r := chat(c.tn, c.key); r.status != 200 {
			t.Fatalf("%s key %q: %d %s", c.tn, c.key, r.status, r.raw)
		}
	}
	// A restart (the in-memory bookings forgotten) reads the spend back from the token ledger read
	// model: the key is still refused.
	e.sync()
	e2 := newEnv(t, opts{provider: g, guard: keyGuard{}, policyOverride: pol, pricer: milliPricer{}, store: e.raw})
	e2.sync()
	wantProblem(t, e2.do("POST", "/chat", "acme", map[string]any{"sessionId": sid(), "message": "hi", "stream": false}, "x-api-key", "aaaaaaaaaaaa"), 429, "budget_exceeded")
}

// Concurrent calls of one key cannot take it past its USD budget: each reservation books the
// dearest cost of its call before it runs, so however they interleave the model is never told to
// write more than the dollars left pay for.
func TestAPIKeyUSDBudgetHoldsUnderConcurrency(t *testing.T) {
	t.Parallel()
	g := &greedyModel{}
	pol := keyPolicy{policy: &policy{m: map[string]tenancyevents.TenantConfig{}},
		keys: map[string]tenancyevents.APIKey{"acme/key:cccccccccccc": {ID: "key:cccccccccccc", Budget: &tenancyevents.KeyBudget{DailyUSD: 1.5}}}}
	e := newEnv(t, opts{config: conversation.Config{MaxCompletionTokens: 1024}, provider: g, guard: keyGuard{}, policyOverride: pol, pricer: milliPricer{}})
	var wg sync.WaitGroup
	codes := make([]int, 8)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i] = e.do("POST", "/chat", "acme", map[string]any{"sessionId": sid(), "message": "hi", "stream": false}, "x-api-key", "cccccccccccc").status
		}()
	}
	wg.Wait()
	ok, refused := 0, 0
	for _, c := range codes {
		switch c {
		case 200:
			ok++
		case 429:
			refused++
		default:
			t.Fatalf("statuses %v", codes)
		}
	}
	if spent := g.total.Load(); spent > 1500 || ok == 0 || refused == 0 {
		t.Fatalf("8 concurrent calls: %d ran, %d refused, %d tokens ($%.3f) written under a $1.50 budget", ok, refused, spent, float64(spent)*0.001)
	}
}

// A request without max_tokens reserves (and sends) the default of the model it goes to: the
// tenant's models.maxTokens first, then the server's (CRISPY_MODEL_MAX_TOKENS), then
// MaxCompletionTokens.
func TestPerModelDefaultMaxTokens(t *testing.T) {
	t.Parallel()
	g := &greedyModel{}
	e := newEnv(t, opts{provider: g,
		config: conversation.Config{MaxCompletionTokens: 1024, ModelMaxTokens: map[string]int{"fake:m": 300, "fake:big": 2000}},
		tenants: map[string]tenancyevents.TenantConfig{
			"acme":   {Models: tenancyevents.Models{MaxTokens: map[string]int{"fake:m": 200}}},
			"globex": {Models: tenancyevents.Models{Chat: "fake:other"}},
		}})
	chat := func(tn string, extra map[string]any) {
		t.Helper()
		body := map[string]any{"sessionId": sid(), "message": "hi", "stream": false}
		for k, v := range extra {
			body[k] = v
		}
		if r := e.do("POST", "/chat", tn, body); r.status != 200 {
			t.Fatalf("%s: %d %s", tn, r.status, r.raw)
		}
	}
	chat("acme", nil)                                   // the tenant's default for fake:m
	chat("beta", nil)                                   // the server's for fake:m
	chat("globex", nil)                                 // no default for fake:other: MaxCompletionTokens
	chat("acme", map[string]any{"modelId": "fake:big"}) // the server's for fake:big
	if got, want := g.maxSent(), []int{200, 300, 1024, 2000}; !equalInts(got, want) {
		t.Fatalf("max_tokens sent: %v, want %v", got, want)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// An API key's own limits.tokensPerMinute holds within the tenant's (it was recorded and not
// enforced): the second call is capped at what the key's minute leaves, the third refused, while
// another key of the tenant still runs; a minute later the key runs again.
func TestAPIKeyTokensPerMinuteIsEnforced(t *testing.T) {
	t.Parallel()
	g := &greedyModel{}
	pol := keyPolicy{policy: &policy{m: map[string]tenancyevents.TenantConfig{}},
		keys: map[string]tenancyevents.APIKey{"acme/key:dddddddddddd": {ID: "key:dddddddddddd", Limits: &tenancyevents.KeyLimits{TokensPerMinute: 1500}}}}
	e := newEnv(t, opts{provider: g, guard: keyGuard{}, policyOverride: pol})
	chat := func(key string) resp {
		return e.do("POST", "/chat", "acme", map[string]any{"sessionId": sid(), "message": "hi", "stream": false}, "x-api-key", key)
	}
	for i := 0; i < 2; i++ {
		if r := chat("dddddddddddd"); r.status != 200 {
			t.Fatalf("call %d of the key: %d %s", i+1, r.status, r.raw)
		}
	}
	if sent := g.maxSent(); len(sent) != 2 || sent[0] != 1024 || sent[1] >= 476 || sent[1] < 300 {
		t.Fatalf("max_tokens sent: %v, want 1024 then what the key's minute left", sent)
	}
	wantProblem(t, chat("dddddddddddd"), 429, "budget_exceeded")
	if r := chat("eeeeeeeeeeee"); r.status != 200 {
		t.Fatalf("another key: %d %s", r.status, r.raw)
	}
	e.clock.Add(61 * time.Second)
	if r := chat("dddddddddddd"); r.status != 200 {
		t.Fatalf("a minute later: %d %s", r.status, r.raw)
	}
}

// A key with a USD budget is refused, 403 model_unpriced naming the model and the fix, when its
// call may reach a model the price table does not price (here a fallback): the model's cost would
// count nothing, so the budget would not hold. The same call with a key without a USD budget runs,
// and once every reachable model is priced the budgeted key runs too. Before, an unpriced model
// cost $0 and a USD-budgeted key could spend through it without limit.
func TestAPIKeyUSDBudgetRefusesUnpricedModels(t *testing.T) {
	t.Parallel()
	g := &greedyModel{}
	pol := keyPolicy{policy: &policy{m: map[string]tenancyevents.TenantConfig{
		"acme":   {Models: tenancyevents.Models{Fallbacks: []string{"down:m"}}},
		"globex": {},
	}}, keys: map[string]tenancyevents.APIKey{
		"acme/key:aaaaaaaaaaaa":   {ID: "key:aaaaaaaaaaaa", Budget: &tenancyevents.KeyBudget{DailyUSD: 5}},
		"globex/key:aaaaaaaaaaaa": {ID: "key:aaaaaaaaaaaa", Budget: &tenancyevents.KeyBudget{DailyUSD: 5}},
	}}
	e := newEnv(t, opts{provider: g, guard: keyGuard{}, policyOverride: pol, pricer: milliPricer{}})
	chat := func(tn, key string) resp {
		t.Helper()
		return e.do("POST", "/chat", tn, map[string]any{"sessionId": sid(), "message": "hi", "stream": false}, "x-api-key", key)
	}
	r := chat("acme", "aaaaaaaaaaaa")
	wantProblem(t, r, 403, "model_unpriced")
	if d, _ := r.body["detail"].(string); !strings.Contains(d, "down:m") || !strings.Contains(d, "key:aaaaaaaaaaaa") || !strings.Contains(d, "CRISPY_PRICES") {
		t.Fatalf("the refusal does not name the model, the key and the fix: %s", r.raw)
	}
	if n := g.total.Load(); n != 0 {
		t.Fatalf("the model was called (%d tokens) for a refused call", n)
	}
	if r := chat("acme", "bbbbbbbbbbbb"); r.status != 200 {
		t.Fatalf("a key without a USD budget: %d %s", r.status, r.raw)
	}
	if r := chat("globex", "aaaaaaaaaaaa"); r.status != 200 {
		t.Fatalf("every reachable model priced: %d %s", r.status, r.raw)
	}
}
