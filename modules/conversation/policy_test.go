package conversation_test

import (
	"testing"

	"github.com/crispy-enigma/crispy/modules/conversation"
	tenancyevents "github.com/crispy-enigma/crispy/modules/tenancy/events"
	"github.com/crispy-enigma/crispy/platform/ai/aitest"
)

// models.allowed binds the server's override (CRISPY_MODEL_ID) and the tenant's fallbacks too: a
// model it does not list is skipped (before: the override and every fallback ran regardless).
func TestAllowedModelsBindOverrideAndFallbacks(t *testing.T) {
	t.Parallel()
	e := newEnv(t, opts{config: conversation.Config{OverrideModel: "down:m"},
		tenants: map[string]tenancyevents.TenantConfig{
			"acme": {Models: tenancyevents.Models{Chat: "fake:m", Fallbacks: []string{"down:other", "builtin:offline"}, Allowed: []string{"fake:m", "builtin:offline"}}},
			"open": {Models: tenancyevents.Models{Chat: "fake:m"}}}})
	if r := e.chatJSON("acme", sid(), "hi"); r.status != 200 || r.body["model"] != "fake:m" {
		t.Fatalf("acme with a disallowed override: %d %s", r.status, r.raw)
	}
	e.fake.Push(aitest.Script{FailBefore: aitest.Unavailable("fake:m")}, aitest.Script{FailBefore: aitest.Unavailable("fake:m")},
		aitest.Script{FailBefore: aitest.Unavailable("fake:m")}, aitest.Script{FailBefore: aitest.Unavailable("fake:m")})
	if r := e.chatJSON("acme", sid(), "hi"); r.status != 200 || r.body["model"] != "builtin:offline" {
		t.Fatalf("acme falling back past a disallowed fallback: %d %s", r.status, r.raw)
	}
	if n := e.down.Calls(); n != 0 {
		t.Fatalf("a model outside models.allowed was called %d times", n)
	}
	wantProblem(t, e.chat("acme", sid(), "hi", map[string]any{"stream": false, "modelId": "down:m"}), 403, "model_not_allowed")
	// Without an allow-list the override applies (it is down: the call fails over to nothing).
	if r := e.chatJSON("open", sid(), "hi"); r.status == 200 {
		t.Fatalf("open should have used the override down:m: %s", r.raw)
	}
	if e.down.Calls() == 0 {
		t.Fatal("the override was not used where nothing restricts it")
	}
}

// features.rag: false cannot be overridden by a request's rag: true (before: it could); a tenant
// that leaves features.rag unset may still be asked for it.
func TestRAGOffBindsTheRequest(t *testing.T) {
	t.Parallel()
	retr := &fakeRetriever{}
	e := newEnv(t, opts{retr: retr, config: conversation.Config{DefaultModel: "builtin:offline"},
		tenants: map[string]tenancyevents.TenantConfig{
			"acme":  {Features: map[string]bool{"rag": false}},
			"other": {}}})
	r := e.chat("acme", sid(), "How fast are refunds paid?", map[string]any{"stream": false, "rag": true})
	if r.status != 200 || len(retr.calls) != 0 {
		t.Fatalf("acme (features.rag: false) asked for rag: %d, retrievals %v", r.status, retr.calls)
	}
	if cites := r.body["citations"].([]any); len(cites) != 0 {
		t.Fatalf("citations: %v", cites)
	}
	r = e.chat("other", sid(), "How fast are refunds paid?", map[string]any{"stream": false, "rag": true})
	if r.status != 200 || len(retr.calls) != 1 || retr.calls[0] != "other" {
		t.Fatalf("other asked for rag: %d, retrievals %v", r.status, retr.calls)
	}
}
