// Package alerts keeps tenants' alert rules (as events in t-{tenant}.alert-rule-{id} streams),
// evaluates them, records transitions (AlertFired, AlertResolved) and delivers signed webhook notices.
package alerts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/crispy-enigma/crispy/modules/observability/events"
	"github.com/crispy-enigma/crispy/modules/observability/internal/domain"
	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/request"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// Category is the stream category of a rule.
const Category = "alert-rule"

// Types are the event types of rule streams (for the projection).
var Types = []string{events.TypeAlertRuleSaved, events.TypeAlertRuleDeleted, events.TypeAlertFired, events.TypeAlertResolved}

// Evaluator computes a metric of a tenant over a period ending at now.
type Evaluator func(ctx context.Context, t tenant.ID, metric string, period domain.Period, now time.Time) (float64, error)

// Engine holds the rules' state and evaluates them.
type Engine struct {
	Store    eventstore.Store
	Evaluate Evaluator
	Notifier *Notifier // nil: no webhooks
	Log      *slog.Logger
	Now      func() time.Time

	mu    sync.Mutex
	rules map[tenant.ID]map[string]*domain.RuleState
	// seen is the highest revision applied per stream, so events that arrive twice (write path,
	// then the projection) are folded once.
	seen map[string]uint64
	// writing serialises this process's writes of one rule stream (stream name -> *sync.Mutex), so a
	// burst of saves of one rule queues instead of exhausting the optimistic-concurrency retries;
	// only writers on other replicas can still conflict.
	writing sync.Map
}

// NewEngine returns an engine with no rules.
func NewEngine(store eventstore.Store, eval Evaluator, n *Notifier, log *slog.Logger, now func() time.Time) *Engine {
	return &Engine{Store: store, Evaluate: eval, Notifier: n, Log: log, Now: now,
		rules: map[tenant.ID]map[string]*domain.RuleState{}, seen: map[string]uint64{}}
}

// Decode turns a rule-stream event into its typed value.
func Decode(e *eventstore.Event) (any, error) {
	var v any
	var err error
	switch e.Type {
	case events.TypeAlertRuleSaved:
		var x events.AlertRuleSaved
		err = e.Decode(&x)
		v = x
	case events.TypeAlertRuleDeleted:
		var x events.AlertRuleDeleted
		err = e.Decode(&x)
		v = x
	case events.TypeAlertFired:
		var x events.AlertFired
		err = e.Decode(&x)
		v = x
	case events.TypeAlertResolved:
		var x events.AlertResolved
		err = e.Decode(&x)
		v = x
	default:
		return nil, nil
	}
	return v, err
}

// Apply folds one recorded event (from the projection or the write path). Idempotent.
func (g *Engine) Apply(e *eventstore.Event) error {
	st, err := tenant.ParseStream(e.Stream)
	if err != nil || st.Category() != Category {
		return nil
	}
	v, err := Decode(e)
	if err != nil || v == nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if last, ok := g.seen[e.Stream]; ok && e.Revision <= last {
		return nil
	}
	g.seen[e.Stream] = e.Revision
	byID := g.rules[e.Tenant]
	if byID == nil {
		byID = map[string]*domain.RuleState{}
		g.rules[e.Tenant] = byID
	}
	id := st.Entity()
	rs := byID[id]
	if rs == nil {
		rs = &domain.RuleState{}
		byID[id] = rs
	}
	rs.Apply(e.Revision, v)
	return nil
}

func (g *Engine) install(st tenant.Stream, rs domain.RuleState) {
	g.mu.Lock()
	defer g.mu.Unlock()
	name := st.String()
	if last, ok := g.seen[name]; ok && last >= rs.LastRev {
		return
	}
	g.seen[name] = rs.LastRev
	byID := g.rules[st.Tenant()]
	if byID == nil {
		byID = map[string]*domain.RuleState{}
		g.rules[st.Tenant()] = byID
	}
	byID[st.Entity()] = &rs
}

// RuleView is a rule with its current state.
type RuleView struct {
	events.AlertRule
	Firing bool `json:"firing"`
}

// List returns t's rules sorted by id.
func (g *Engine) List(t tenant.ID) []RuleView {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := []RuleView{}
	for _, rs := range g.rules[t] {
		if rs.Exists {
			out = append(out, RuleView{AlertRule: rs.Rule, Firing: rs.Firing})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Firing returns t's firing rules.
func (g *Engine) Firing(t tenant.ID) []RuleView {
	var out []RuleView
	for _, r := range g.List(t) {
		if r.Firing {
			out = append(out, r)
		}
	}
	return out
}

// load folds a rule's stream from the store (the source of truth for writes).
func (g *Engine) load(ctx context.Context, st tenant.Stream) (domain.RuleState, error) {
	var rs domain.RuleState
	evs, err := g.Store.ReadStream(ctx, st, 0, 0)
	if err != nil {
		return rs, fmt.Errorf("read %s: %w", st, err)
	}
	for i := range evs {
		v, err := Decode(&evs[i])
		if err != nil {
			return rs, err
		}
		if v != nil {
			rs.Apply(evs[i].Revision, v)
		}
	}
	if n := len(evs); n > 0 {
		// Revisions before a truncation are unreadable; the last readable one is what appends follow.
		rs.LastRev, rs.HasRev = evs[n-1].Revision, true
	}
	return rs, nil
}

// update is load, decide, append with the expected revision; it retries a few times on conflicts
// with the evaluator, which appends to the same stream.
func (g *Engine) update(ctx context.Context, st tenant.Stream, decide func(domain.RuleState) ([]eventstore.EventData, error)) error {
	l, _ := g.writing.LoadOrStore(st.String(), &sync.Mutex{})
	mu := l.(*sync.Mutex)
	mu.Lock()
	defer mu.Unlock()
	for attempt := 0; ; attempt++ {
		rs, err := g.load(ctx, st)
		if err != nil {
			return err
		}
		evs, err := decide(rs)
		if err != nil || len(evs) == 0 {
			return err
		}
		res, err := g.Store.Append(ctx, st, eventstore.After(rs.LastRev, rs.HasRev), evs...)
		if errors.Is(err, eventstore.ErrConflict) {
			if attempt < 4 {
				continue
			}
			return apperr.Wrap(err, apperr.KindConflict, "alert_rule_conflict", "the rule is being changed by another request; retry")
		}
		if err != nil {
			return fmt.Errorf("append to %s: %w", st, err)
		}
		// The fresh fold plus what was just appended is the rule's whole state; install it unless the
		// projection has already seen further (a projection still replaying must not leave the state
		// with only the newest events folded).
		for i := range res.Events {
			v, err := Decode(&res.Events[i])
			if err != nil {
				return err
			}
			rs.Apply(res.Events[i].Revision, v)
		}
		g.install(st, rs)
		return nil
	}
}

// Save creates or replaces a rule after validating it.
func (g *Engine) Save(ctx context.Context, t tenant.ID, r events.AlertRule) error {
	if err := domain.ValidateRule(r); err != nil {
		return err
	}
	st, err := tenant.NewStream(t, Category, r.ID)
	if err != nil {
		return apperr.Invalid("invalid_alert_rule", "body.id", "id is not usable as a rule id")
	}
	return g.update(ctx, st, func(domain.RuleState) ([]eventstore.EventData, error) {
		ev, err := eventstore.NewEventData(events.TypeAlertRuleSaved, events.AlertRuleSaved{Rule: r})
		return []eventstore.EventData{ev}, err
	})
}

// Delete removes a rule; an unknown id (or another tenant's) is 404.
func (g *Engine) Delete(ctx context.Context, t tenant.ID, id string) error {
	notFound := apperr.NotFound("alert_rule_not_found", "no alert rule with that id")
	if !domain.RuleIDPattern.MatchString(id) {
		return notFound
	}
	st := tenant.MustStream(t, Category, id)
	return g.update(ctx, st, func(rs domain.RuleState) ([]eventstore.EventData, error) {
		if !rs.Exists {
			return nil, notFound
		}
		ev, err := eventstore.NewEventData(events.TypeAlertRuleDeleted, events.AlertRuleDeleted{RuleID: id})
		return []eventstore.EventData{ev}, err
	})
}

type pending struct {
	t  tenant.ID
	rs domain.RuleState
}

// EvaluateAll evaluates every enabled rule of every tenant once, records transitions and sends their
// notices. Errors of one rule are logged and do not stop the others; the first is returned.
func (g *Engine) EvaluateAll(ctx context.Context) error {
	now := g.Now()
	g.mu.Lock()
	var work []pending
	for t, byID := range g.rules {
		for _, rs := range byID {
			if rs.Exists && rs.Rule.Enabled {
				work = append(work, pending{t: t, rs: *rs})
			}
		}
	}
	g.mu.Unlock()
	sort.Slice(work, func(i, j int) bool {
		if work[i].t != work[j].t {
			return work[i].t.String() < work[j].t.String()
		}
		return work[i].rs.Rule.ID < work[j].rs.Rule.ID
	})
	var first error
	for _, w := range work {
		if err := g.evaluate(ctx, w.t, w.rs.Rule, now); err != nil {
			g.Log.WarnContext(ctx, "alert rule evaluation failed", "tenant", w.t.String(), "rule", w.rs.Rule.ID, "error", err)
			if first == nil {
				first = err
			}
		}
	}
	return first
}

func (g *Engine) evaluate(ctx context.Context, t tenant.ID, r events.AlertRule, now time.Time) error {
	period, err := domain.ParsePeriod(r.Period)
	if err != nil {
		return err
	}
	value, err := g.Evaluate(ctx, t, r.Metric, period, now)
	if err != nil {
		return fmt.Errorf("evaluate %s of %s: %w", r.Metric, t, err)
	}
	fires := domain.Fires(r, value)
	ctx = request.With(ctx, request.Info{ID: request.From(ctx).ID, Actor: "system:alerts"})
	var notice *Notice
	st := tenant.MustStream(t, Category, r.ID)
	err = g.update(ctx, st, func(rs domain.RuleState) ([]eventstore.EventData, error) {
		notice = nil
		// Re-check on the fresh state: the rule may have been deleted, disabled or changed meanwhile.
		if !rs.Exists || !rs.Rule.Enabled || rs.Rule != r || rs.Firing == fires {
			return nil, nil
		}
		var ev eventstore.EventData
		var err error
		state := "resolved"
		if fires {
			state = "firing"
			ev, err = eventstore.NewEventData(events.TypeAlertFired, events.AlertFired{RuleID: r.ID, Value: value, At: now.UTC()})
		} else {
			ev, err = eventstore.NewEventData(events.TypeAlertResolved, events.AlertResolved{RuleID: r.ID, Value: value, At: now.UTC()})
		}
		if r.WebhookURL != "" {
			notice = &Notice{Event: "alert." + state, Tenant: t.String(), Rule: r, State: state, Value: value, At: now.UTC()}
		}
		return []eventstore.EventData{ev}, err
	})
	if err != nil {
		return err
	}
	if notice != nil && g.Notifier != nil {
		g.Notifier.Send(r.WebhookURL, *notice)
	}
	return nil
}

// Notice is the JSON body POSTed to a rule's webhook.
type Notice struct {
	Event  string           `json:"event"` // alert.firing or alert.resolved
	Tenant string           `json:"tenant"`
	Rule   events.AlertRule `json:"rule"`
	State  string           `json:"state"` // firing or resolved
	Value  float64          `json:"value"`
	At     time.Time        `json:"at"`
}

// MarshalNotice is the exact body that is signed and sent.
func MarshalNotice(n Notice) ([]byte, error) { return json.Marshal(n) }
