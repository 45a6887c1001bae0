package conversation_test

import (
	"context"
	"strings"
	"testing"

	tenancyevents "github.com/crispy-enigma/crispy/modules/tenancy/events"
	"github.com/crispy-enigma/crispy/platform/httpapi"
	"github.com/crispy-enigma/crispy/platform/httpapi/httpapitest"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// keyGuard admits x-tenant-id with x-api-key as the request's credential ("key:<x-api-key>").
type keyGuard struct{}

func (keyGuard) Admit(ctx context.Context, a httpapi.Admission) (httpapi.Admitted, error) {
	adm, err := httpapitest.HeaderGuard{}.Admit(ctx, a)
	if err == nil && a.APIKey != "" {
		adm.Credential = "key:" + a.APIKey
	}
	return adm, err
}

// keyPolicy is the test policy with API keys that have budgets (tenancy.Module.APIKey).
type keyPolicy struct {
	*policy
	keys map[string]tenancyevents.APIKey // tenant/key id
}

func (p keyPolicy) APIKey(t tenant.ID, keyID string) (tenancyevents.APIKey, bool) {
	k, ok := p.keys[t.String()+"/"+keyID]
	return k, ok
}

// An API key's own daily token budget holds within the tenant's: the key's calls are capped at what
// its budget leaves, then refused with 429 budget_exceeded naming the key, while another key and
// a keyless call of the same tenant still run, and another tenant's key of the same id is
// unaffected (before: a key's budget was recorded and not enforced).
func TestAPIKeyBudgetIsEnforcedWithinTheTenants(t *testing.T) {
	t.Parallel()
	g := &greedyModel{}
	pol := keyPolicy{policy: &policy{m: map[string]tenancyevents.TenantConfig{"acme": {TokenBudget: tenancyevents.TokenBudget{Daily: 100000}}}},
		keys: map[string]tenancyevents.APIKey{
			"acme/key:aaaaaaaaaaaa":   {ID: "key:aaaaaaaaaaaa", Budget: &tenancyevents.KeyBudget{DailyTokens: 1500}},
			"globex/key:aaaaaaaaaaaa": {ID: "key:aaaaaaaaaaaa"},
		}}
	e := newEnv(t, opts{provider: g, guard: keyGuard{}, policyOverride: pol})
	chat := func(tn, key string) resp {
		t.Helper()
		return e.do("POST", "/chat", tn, map[string]any{"sessionId": sid(), "message": "hi", "stream": false}, "x-api-key", key)
	}
	if r := chat("acme", "aaaaaaaaaaaa"); r.status != 200 {
		t.Fatalf("first call of the key: %d %s", r.status, r.raw)
	}
	// About 1,024 used of the key's 1,500: the next call runs with what is left.
	if r := chat("acme", "aaaaaaaaaaaa"); r.status != 200 {
		t.Fatalf("second call of the key: %d %s", r.status, r.raw)
	}
	sent := g.maxSent()
	if len(sent) != 2 || sent[1] >= 500 || sent[1] < 300 {
		t.Fatalf("max_tokens sent for the key: %v, want 1024 then what its budget left", sent)
	}
	r := chat("acme", "aaaaaaaaaaaa")
	wantProblem(t, r, 429, "budget_exceeded")
	if detail, _ := r.body["detail"].(string); detail == "" || !strings.Contains(detail, "key:aaaaaaaaaaaa") {
		t.Fatalf("refusal does not name the key: %s", r.raw)
	}
	// Another key, a keyless call, and globex's key of the same id are not held by that budget.
	for _, c := range []struct{ tn, key string }{{"acme", "bbbbbbbbbbbb"}, {"acme", ""}, {"globex", "aaaaaaaaaaaa"}} {
		if r := chat(c.tn, c.key); r.status != 200 {
			t.Fatalf("%s key %q: %d %s", c.tn, c.key, r.status, r.raw)
		}
	}
}
