package adapters

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"

	bolt "go.etcd.io/bbolt"

	"github.com/crispy-enigma/crispy/modules/observability/internal/domain"
	"github.com/crispy-enigma/crispy/platform/bus"
	"github.com/crispy-enigma/crispy/platform/readmodel"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// The alert rules read model, one key per rule, folded from the rule streams
// (t-{tenant}.alert-rule-{id}):
//
//	tenant 0x00 rule id  ->  domain.RuleState as JSON
//
// A tenant's rules are one cursor range, sorted by id.

// RuleCategory is the stream category of a rule.
const RuleCategory = "alert-rule"

func ruleKey(t tenant.ID, id string) []byte { return append(tenantPrefix(t), id...) }

// ApplyRuleEvent folds one event of a rule stream (AlertRuleSaved, AlertRuleDeleted, AlertFired,
// AlertResolved) into the rule's state (a projection handler). Events of other streams are ignored.
func ApplyRuleEvent(b *bolt.Bucket, env bus.Envelope, ev any) error {
	st, err := tenant.ParseStream(env.Stream)
	if err != nil || st.Category() != RuleCategory || st.Tenant() != env.Tenant {
		return nil
	}
	key := ruleKey(env.Tenant, st.Entity())
	var rs domain.RuleState
	if v := b.Get(key); v != nil {
		if err := json.Unmarshal(v, &rs); err != nil {
			return fmt.Errorf("rule %s: stored state: %w", key, err)
		}
		if rs.HasRev && env.Revision <= rs.LastRev {
			return nil // folded already
		}
	}
	rs.Apply(env.Revision, ev)
	v, err := json.Marshal(rs)
	if err != nil {
		return err
	}
	return b.Put(key, v)
}

// Rules answers the rule queries from the projection: 503 catching_up until it has caught up.
type Rules struct{ Projection *bus.Projection }

// ListRules returns t's existing rules, sorted by id.
func ListRules(b *bolt.Bucket, t tenant.ID) ([]domain.RuleState, error) {
	out := []domain.RuleState{}
	prefix := tenantPrefix(t)
	c := b.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		var rs domain.RuleState
		if err := json.Unmarshal(v, &rs); err != nil {
			return nil, fmt.Errorf("rule %s: stored state: %w", k, err)
		}
		if rs.Exists {
			out = append(out, rs)
		}
	}
	return out, nil
}

// List returns t's existing rules, sorted by id.
func (r Rules) List(ctx context.Context, t tenant.ID) ([]domain.RuleState, error) {
	if r.Projection == nil {
		return nil, errNotRegistered
	}
	var out []domain.RuleState
	err := r.Projection.View(ctx, func(tx *readmodel.Tx) error {
		var err error
		out, err = ListRules(tx.Bucket(), t)
		return err
	})
	return out, err
}

// Enabled returns every tenant's enabled rules, by tenant then id.
func (r Rules) Enabled(ctx context.Context) ([]domain.TenantRule, error) {
	var out []domain.TenantRule
	if r.Projection == nil {
		return nil, errNotRegistered
	}
	err := r.Projection.View(ctx, func(tx *readmodel.Tx) error {
		return tx.Bucket().ForEach(func(k, v []byte) error {
			i := bytes.IndexByte(k, 0)
			if i <= 0 {
				return nil
			}
			t, err := tenant.Parse(string(k[:i]))
			if err != nil {
				return nil
			}
			var rs domain.RuleState
			if err := json.Unmarshal(v, &rs); err != nil {
				return fmt.Errorf("rule %s: stored state: %w", k, err)
			}
			if rs.Exists && rs.Rule.Enabled {
				out = append(out, domain.TenantRule{Tenant: t, RuleState: rs})
			}
			return nil
		})
	})
	sort.SliceStable(out, func(i, j int) bool { return out[i].Tenant.String() < out[j].Tenant.String() })
	return out, err
}
