package conversation_test

import (
	"context"
	"errors"
	"testing"

	"github.com/crispy-enigma/crispy/modules/conversation"
	tenancyevents "github.com/crispy-enigma/crispy/modules/tenancy/events"
	"github.com/crispy-enigma/crispy/platform/ai"
	"github.com/crispy-enigma/crispy/platform/ai/aitest"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

func TestCompleteUsesTheTenantsModelChain(t *testing.T) {
	t.Parallel()
	fake := aitest.New(aitest.Script{Tokens: []string{"tool ", "answer"}})
	e := newEnv(t, opts{fake: fake, config: conversation.Config{DefaultModel: "builtin:offline"}, tenants: map[string]tenancyevents.TenantConfig{
		"acme": {Models: tenancyevents.Models{Chat: "down:m", Fallbacks: []string{"fake:m"}}},
	}})
	ans, err := e.mod.Complete(context.Background(), tenant.MustParse("acme"), []ai.Message{{Role: ai.RoleUser, Content: "summarise"}}, 100)
	if err != nil {
		t.Fatal(err)
	}
	if ans.Content != "tool answer" || ans.Model.String() != "fake:m" || len(ans.Attempts) != 1 || ans.Attempts[0].Model.String() != "down:m" {
		t.Fatalf("answer = %+v", ans)
	}
	// A tenant on the server default, which is the offline model, gets ErrOfflineOnly: the caller
	// uses its own deterministic method.
	_, err = e.mod.Complete(context.Background(), tenant.MustParse("beta"), []ai.Message{{Role: ai.RoleUser, Content: "x"}}, 100)
	if !errors.Is(err, conversation.ErrOfflineOnly) {
		t.Fatalf("offline tenant: err = %v, want ErrOfflineOnly", err)
	}
}
