package observability_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/crispy-enigma/crispy/modules/observability"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// TestRulesOfATenantNoLongerServedAreNotEvaluated: a tenant removed from the tenants file is not
// served, so its alert rules stop firing (and notifying its webhook); served tenants' rules still
// do.
func TestRulesOfATenantNoLongerServedAreNotEvaluated(t *testing.T) {
	t.Parallel()
	acme, beta := tenant.MustParse("acme"), tenant.MustParse("beta")
	e := newEnv(t, opts{deps: func(d *observability.Deps) {
		d.KnownTenants = func() []tenant.ID { return []tenant.ID{beta} } // acme left the tenants file
	}})
	for _, id := range []string{"acme", "beta"} {
		if r := e.do("PUT", "/metrics/alerts", id, "", map[string]any{"id": "r", "name": "any", "metric": "requests", "comparator": "gte", "threshold": 0}); r.status != 200 {
			t.Fatalf("%s: %d %v", id, r.status, r.body)
		}
	}
	e.sync()
	if err := e.mod.EvaluateAlerts(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(e.ruleEvents(beta, "r")); got != "[observability.AlertRuleSaved observability.AlertFired]" {
		t.Fatalf("beta (served): %s", got)
	}
	if got := fmt.Sprint(e.ruleEvents(acme, "r")); got != "[observability.AlertRuleSaved]" {
		t.Fatalf("acme (no longer served) fired: %s", got)
	}
}
