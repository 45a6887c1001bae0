package conversation_test

import (
	"context"
	"errors"
	"testing"

	"github.com/crispy-enigma/crispy/modules/conversation"
	tenancyevents "github.com/crispy-enigma/crispy/modules/tenancy/events"
	"github.com/crispy-enigma/crispy/platform/ai"
	"github.com/crispy-enigma/crispy/platform/ai/aitest"
	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/metering"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

func TestCompleteUsesTheTenantsModelChain(t *testing.T) {
	t.Parallel()
	fake := aitest.New(aitest.Script{Tokens: []string{"tool ", "answer"}})
	e := newEnv(t, opts{fake: fake, config: conversation.Config{DefaultModel: "builtin:offline"}, tenants: map[string]tenancyevents.TenantConfig{
		"acme": {Models: tenancyevents.Models{Chat: "down:m", Fallbacks: []string{"fake:m"}}},
	}})
	ans, err := e.mod.Complete(context.Background(), tenant.MustParse("acme"), metering.PurposeTool, []ai.Message{{Role: ai.RoleUser, Content: "summarise"}}, 100)
	if err != nil {
		t.Fatal(err)
	}
	if ans.Content != "tool answer" || ans.Model.String() != "fake:m" || len(ans.Attempts) != 1 || ans.Attempts[0].Model.String() != "down:m" {
		t.Fatalf("answer = %+v", ans)
	}
	// A tenant on the server default, which is the offline model, gets ErrOfflineOnly: the caller
	// uses its own deterministic method.
	_, err = e.mod.Complete(context.Background(), tenant.MustParse("beta"), metering.PurposeTool, []ai.Message{{Role: ai.RoleUser, Content: "x"}}, 100)
	if !errors.Is(err, conversation.ErrOfflineOnly) {
		t.Fatalf("offline tenant: err = %v, want ErrOfflineOnly", err)
	}
}

// A one-off completion is metered like a chat turn: recorded as usage with its purpose in the
// tenant's completions stream (which the token ledger counts), and refused with 429 budget_exceeded,
// without calling a model, once the tenant's budget cannot take it. Another tenant's budget and
// records are untouched.
func TestCompleteIsMeteredAndBudgeted(t *testing.T) {
	t.Parallel()
	fake := aitest.New(aitest.Script{Tokens: []string{"ok"}, Usage: &ai.Usage{PromptTokens: 40, CompletionTokens: 20, TotalTokens: 60, Reported: true}})
	budget := tenancyevents.TokenBudget{Daily: 200}
	e := newEnv(t, opts{fake: fake, tenants: map[string]tenancyevents.TenantConfig{
		"acme":   {Models: tenancyevents.Models{Chat: "fake:m"}, TokenBudget: budget},
		"globex": {Models: tenancyevents.Models{Chat: "fake:m"}, TokenBudget: budget},
	}})
	ctx := context.Background()
	msgs := []ai.Message{{Role: ai.RoleUser, Content: "rewrite this"}}
	calls := 0
	var refused error
	for i := 0; i < 10 && refused == nil; i++ {
		if _, err := e.mod.Complete(ctx, tenant.MustParse("acme"), metering.PurposeRewrite, msgs, 20); err != nil {
			refused = err
			break
		}
		calls++
		e.sync()
	}
	if ae, ok := apperr.As(refused); !ok || ae.Code != "budget_exceeded" || ae.Kind != apperr.KindRateLimited {
		t.Fatalf("after %d calls: err = %v, want 429 budget_exceeded", calls, refused)
	}
	// 60 tokens a call, each booking its estimate plus 20 before it runs: 3 fit in 200.
	if calls != 3 || fake.Calls() != 3 {
		t.Fatalf("%d calls answered, %d reached the model; want 3 and 3 (the refused one calls no model)", calls, fake.Calls())
	}
	recs := completions(t, e, "acme")
	if len(recs) != 3 {
		t.Fatalf("recorded %d calls, want 3: %+v", len(recs), recs)
	}
	for _, r := range recs {
		if r.Purpose != metering.PurposeRewrite || r.Operation != metering.OperationChat || r.Model != "fake:m" ||
			r.Usage.TotalTokens != 60 || r.Outcome != "completed" {
			t.Fatalf("record %+v, want purpose %s, fake:m, 60 tokens, completed", r, metering.PurposeRewrite)
		}
	}
	// The other tenant's budget is its own.
	if _, err := e.mod.Complete(ctx, tenant.MustParse("globex"), metering.PurposeAnswer, msgs, 20); err != nil {
		t.Fatalf("globex: %v", err)
	}
	if n := len(completions(t, e, "globex")); n != 1 {
		t.Fatalf("globex has %d records, want 1", n)
	}
}
