package adapters_test

import (
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/crispy-enigma/crispy/modules/observability/events"
	"github.com/crispy-enigma/crispy/modules/observability/internal/adapters"
	"github.com/crispy-enigma/crispy/platform/bus"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// A tenant lists only its own rules, even when its id is a prefix of another's; a transition folds
// into its own tenant's rule; an event applied twice (a redelivery) folds once.
func TestRulesAreTenantScopedAndFoldOnce(t *testing.T) {
	t.Parallel()
	s := openModel(t)
	a, ab := tenant.MustParse("a"), tenant.MustParse("a-b")
	env := func(tn tenant.ID, rev uint64) bus.Envelope {
		return bus.Envelope{Tenant: tn, Stream: tenant.MustStream(tn, adapters.RuleCategory, "r").String(), Revision: rev}
	}
	rule := events.AlertRule{ID: "r", Name: "n", Metric: "requests", Comparator: "gt", Threshold: 1, Period: "1h", Enabled: true}
	update(t, s, func(b *bolt.Bucket) error {
		for _, step := range []struct {
			env bus.Envelope
			ev  any
		}{
			{env(a, 0), events.AlertRuleSaved{Rule: rule}},
			{env(ab, 0), events.AlertRuleSaved{Rule: rule}},
			{env(a, 1), events.AlertFired{RuleID: "r", Value: 2}},
			{env(a, 1), events.AlertFired{RuleID: "r", Value: 2}},                                                       // redelivered
			{env(a, 0), events.AlertRuleDeleted{RuleID: "r"}},                                                           // an older revision: already folded
			{bus.Envelope{Tenant: a, Stream: tenant.MustStream(a, "session", "x").String()}, events.AlertRuleDeleted{}}, // not a rule stream
		} {
			if err := adapters.ApplyRuleEvent(b, step.env, step.ev); err != nil {
				return err
			}
		}
		return nil
	})
	view(t, s, func(b *bolt.Bucket) {
		ra, err := adapters.ListRules(b, a)
		if err != nil || len(ra) != 1 || !ra[0].Firing || ra[0].LastRev != 1 {
			t.Fatalf("a: %+v %v", ra, err)
		}
		rab, err := adapters.ListRules(b, ab)
		if err != nil || len(rab) != 1 || rab[0].Firing {
			t.Fatalf("a-b sees a's firing state: %+v %v", rab, err)
		}
		if none, _ := adapters.ListRules(b, tenant.MustParse("c")); len(none) != 0 {
			t.Fatalf("c: %+v", none)
		}
	})
}
