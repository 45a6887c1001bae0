package conversation_test

import (
	"encoding/json"
	"testing"

	"github.com/crispy-enigma/crispy/modules/conversation"
	tenancyevents "github.com/crispy-enigma/crispy/modules/tenancy/events"
	"github.com/crispy-enigma/crispy/platform/ai/aitest"
)

// A /v1 pass-through call on a nearly exhausted budget still runs, with the max_tokens the
// upstream receives capped at what the budget leaves (before: the call was refused, or ran with
// the client's max_tokens and took the tenant past its ceiling). A client that set no max_tokens
// gets one under a ceiling; a tenant without a ceiling gets the body exactly as written.
func TestV1CapsMaxTokensAtWhatTheBudgetLeaves(t *testing.T) {
	t.Parallel()
	// The upstream reports 1,900 tokens used per answer.
	up := &aitest.Upstream{Completion: `{"id":"x","object":"chat.completion","created":1,"model":"m",` +
		`"choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],` +
		`"usage":{"prompt_tokens":100,"completion_tokens":1800,"total_tokens":1900}}`}
	e := upstreamEnv(t, up, opts{config: conversation.Config{MaxCompletionTokens: 1024, ContextTokens: 4096},
		tenants: map[string]tenancyevents.TenantConfig{"acme": {TokenBudget: tenancyevents.TokenBudget{Daily: 2400}}}})
	msg := []map[string]any{{"role": "user", "content": "hi"}}
	call := func(tn string, body map[string]any) {
		t.Helper()
		if r := e.do("POST", "/v1/chat/completions", tn, body); r.status != 200 {
			t.Fatalf("%s %v: %d %s", tn, body, r.status, r.raw)
		}
	}
	maxOf := func(i int) (mt, mct *int) {
		t.Helper()
		var b struct {
			MaxTokens           *int `json:"max_tokens"`
			MaxCompletionTokens *int `json:"max_completion_tokens"`
		}
		if err := json.Unmarshal(up.Bodies()[i], &b); err != nil {
			t.Fatal(err)
		}
		return b.MaxTokens, b.MaxCompletionTokens
	}
	// Room for 300: sent as asked.
	call("acme", map[string]any{"model": "fake:m", "messages": msg, "max_tokens": 300})
	if mt, mct := maxOf(0); mt == nil || *mt != 300 || mct != nil {
		t.Fatalf("first call: max_tokens %v, max_completion_tokens %v, want 300 and none: %s", mt, mct, up.Bodies()[0])
	}
	// 1,900 of 2,400 used: under 500 left, so 1,000 asked is cut to what is left, in the field the client used.
	call("acme", map[string]any{"model": "fake:m", "messages": msg, "max_completion_tokens": 1000})
	mt, mct := maxOf(1)
	if mct == nil || *mct >= 500 || *mct < 400 || mt != nil {
		t.Fatalf("second call: max_completion_tokens %v (max_tokens %v), want what is left of 500: %s", mct, mt, up.Bodies()[1])
	}
	// The budget is spent now: refused before the upstream.
	if r := e.do("POST", "/v1/chat/completions", "acme", map[string]any{"model": "fake:m", "messages": msg}); r.status != 429 {
		t.Fatalf("third call on a spent budget: %d %s", r.status, r.raw)
	}
	if up.Calls() != 2 {
		t.Fatalf("upstream calls %d, want 2", up.Calls())
	}
	// Tenant isolation and the untouched body: globex has no ceiling; its max_tokens goes as written
	// and a call without one gets none.
	call("globex", map[string]any{"model": "fake:m", "messages": msg, "max_tokens": 5000})
	call("globex", map[string]any{"model": "fake:m", "messages": msg})
	if mt, _ := maxOf(2); mt == nil || *mt != 5000 {
		t.Fatalf("globex max_tokens %v, want 5000 as written", mt)
	}
	if mt, mct := maxOf(3); mt != nil || mct != nil {
		t.Fatalf("globex without max_tokens got %v/%v", mt, mct)
	}
}

// Under a ceiling, a call that sets no max_tokens is told the budget's grant (the model's own
// default could otherwise overshoot it).
func TestV1WithoutMaxTokensUnderACeilingIsToldTheGrant(t *testing.T) {
	t.Parallel()
	up := &aitest.Upstream{}
	e := upstreamEnv(t, up, opts{config: conversation.Config{MaxCompletionTokens: 1024, ContextTokens: 4096},
		tenants: map[string]tenancyevents.TenantConfig{"acme": {TokenBudget: tenancyevents.TokenBudget{Daily: 600}}}})
	if r := e.do("POST", "/v1/chat/completions", "acme", map[string]any{"model": "fake:m",
		"messages": []map[string]any{{"role": "user", "content": "hi"}}}); r.status != 200 {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	var b struct {
		MaxTokens *int `json:"max_tokens"`
	}
	_ = json.Unmarshal(up.Bodies()[0], &b)
	if b.MaxTokens == nil || *b.MaxTokens >= 600 || *b.MaxTokens < 500 {
		t.Fatalf("max_tokens %v, want what is left of 600: %s", b.MaxTokens, up.Bodies()[0])
	}
}
