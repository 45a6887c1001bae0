// Package alerts keeps tenants' alert rules (as events in t-{tenant}.alert-rule-{id} streams),
// evaluates them, records transitions (AlertFired, AlertResolved) and delivers signed webhook notices.
//
// Once per deployment, however many replicas: every replica evaluates the enabled rules (from its
// rules read model) on its ticker, but a transition is an append to the rule's stream with the
// revision its decision was made on, re-checked on the stream's fresh fold: when two replicas decide
// the same transition, the store takes one append and the other sees the rule already in that state.
// The notice is sent by a bus processor (Webhooks) on the recorded AlertFired/AlertResolved, which
// runs once per deployment (a NATS JetStream durable consumer shared by the replicas) and names the
// event id in the notice, so a receiver drops the repeat of a redelivery.
package alerts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/crispy-enigma/crispy/modules/observability/events"
	"github.com/crispy-enigma/crispy/modules/observability/internal/domain"
	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/bus/codec"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/request"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// Category is the stream category of a rule.
const Category = "alert-rule"

// Evaluator computes a metric of a tenant over a period ending at now.
type Evaluator func(ctx context.Context, t tenant.ID, metric string, period domain.Period, now time.Time) (float64, error)

// RuleReader is the rules read model.
type RuleReader interface {
	// List returns t's existing rules, sorted by id.
	List(ctx context.Context, t tenant.ID) ([]domain.RuleState, error)
	// Enabled returns every tenant's enabled rules.
	Enabled(ctx context.Context) ([]domain.TenantRule, error)
}

// Engine changes rules and evaluates them.
type Engine struct {
	Store    eventstore.Store
	Codec    *codec.Registry // the observability events: what rule streams are folded with
	Rules    RuleReader
	Evaluate Evaluator
	Log      *slog.Logger
	Now      func() time.Time
	// Served lists the tenants served now (those in the tenants file); EvaluateAll skips the rules
	// of any other (a tenant removed from the file fires no more alerts). nil: every tenant.
	Served func() []tenant.ID
	// Signed says a webhook secret is configured: without one a rule with a webhookUrl is refused
	// at save (422), since its notices could not be signed.
	Signed bool
	// AllowInternal (CRISPY_WEBHOOK_ALLOW_INTERNAL) accepts webhook URLs on internal addresses;
	// otherwise they are refused at save (422) as the webhook client refuses them at connect time.
	AllowInternal bool
	// Lookup resolves a webhook host at save (nil: the system resolver).
	Lookup func(ctx context.Context, host string) ([]netip.Addr, error)

	// pending holds, per rule with a for duration, since when its condition has held without the
	// rule firing yet ("tenant\x00rule"). In memory, per replica, as Prometheus keeps it: a restart
	// starts the wait again, so it can only fire later, never on a shorter streak.
	pendingMu sync.Mutex
	pending   map[string]time.Time

	// writing serialises this process's writes of one rule stream (stream name -> lock), so a
	// burst of saves of one rule queues instead of exhausting the optimistic-concurrency retries;
	// only writers on other replicas can still conflict. An entry lives while a write holds or
	// waits for it (refs), so ids that come and go do not grow the map.
	writingMu sync.Mutex
	writing   map[string]*streamLock
}

type streamLock struct {
	mu   sync.Mutex
	refs int // guarded by Engine.writingMu
}

// lockStream takes the write lock of stream st and returns its release.
func (g *Engine) lockStream(st string) func() {
	g.writingMu.Lock()
	if g.writing == nil {
		g.writing = map[string]*streamLock{}
	}
	l := g.writing[st]
	if l == nil {
		l = &streamLock{}
		g.writing[st] = l
	}
	l.refs++
	g.writingMu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		g.writingMu.Lock()
		if l.refs--; l.refs == 0 {
			delete(g.writing, st)
		}
		g.writingMu.Unlock()
	}
}

// NewEngine returns an engine over the rules read model.
func NewEngine(store eventstore.Store, c *codec.Registry, rules RuleReader, eval Evaluator, log *slog.Logger, now func() time.Time) *Engine {
	return &Engine{Store: store, Codec: c, Rules: rules, Evaluate: eval, Log: log, Now: now}
}

// decode turns a rule-stream event into its typed value through the event codec c (nil for a
// type c does not know: a newer binary's event, skipped by the fold).
func decode(c *codec.Registry, e *eventstore.Event) (any, error) {
	if !c.Known(e.Type) {
		return nil, nil
	}
	v, err := c.Decode(e.Type, e.Data)
	if err != nil {
		return nil, fmt.Errorf("%s@%d: %w", e.Stream, e.Revision, err)
	}
	return v, nil
}

// RuleView is a rule with its current state.
type RuleView struct {
	events.AlertRule
	Firing bool `json:"firing"`
	// LastDelivery is the outcome of the last webhook notice of the rule's transitions: delivered,
	// or the error it failed with after its retries.
	LastDelivery *domain.Delivery `json:"lastDelivery,omitempty"`
}

// List returns t's rules sorted by id, from the read model (503 catching_up until it has caught
// up).
func (g *Engine) List(ctx context.Context, t tenant.ID) ([]RuleView, error) {
	rules, err := g.Rules.List(ctx, t)
	if err != nil {
		return nil, err
	}
	out := make([]RuleView, 0, len(rules))
	for _, rs := range rules {
		out = append(out, RuleView{AlertRule: rs.Rule, Firing: rs.Firing, LastDelivery: rs.Delivery})
	}
	return out, nil
}

// load folds a rule's stream from the store (the source of truth for writes).
func (g *Engine) load(ctx context.Context, st tenant.Stream) (domain.RuleState, error) {
	var rs domain.RuleState
	evs, err := g.Store.ReadStream(ctx, st, 0, 0)
	if err != nil {
		return rs, fmt.Errorf("read %s: %w", st, err)
	}
	for i := range evs {
		v, err := decode(g.Codec, &evs[i])
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
func (g *Engine) update(ctx context.Context, st tenant.Stream, decide func(domain.RuleState) ([]eventstore.EventData, error)) (domain.RuleState, error) {
	defer g.lockStream(st.String())()
	for attempt := 0; ; attempt++ {
		rs, err := g.load(ctx, st)
		if err != nil {
			return rs, err
		}
		evs, err := decide(rs)
		if err != nil || len(evs) == 0 {
			return rs, err
		}
		res, err := g.Store.Append(ctx, st, eventstore.After(rs.LastRev, rs.HasRev), evs...)
		if errors.Is(err, eventstore.ErrConflict) {
			if attempt < 4 {
				continue
			}
			return rs, apperr.Wrap(err, apperr.KindConflict, "alert_rule_conflict", "the rule is being changed by another request; retry")
		}
		if err != nil {
			return rs, fmt.Errorf("append to %s: %w", st, err)
		}
		// The fresh fold plus what was just appended is the rule's state as written (the read model
		// shows it once the bus has delivered the events).
		for i := range res.Events {
			v, err := decode(g.Codec, &res.Events[i])
			if err != nil {
				return rs, err
			}
			rs.Apply(res.Events[i].Revision, v)
		}
		return rs, nil
	}
}

// CodeWebhookRefused is Save's refusal of a webhook URL this server will not deliver to (no
// secret, an internal address): the API answers 422 on body.webhookUrl.
const CodeWebhookRefused = "webhook_url_refused"

// Save creates or replaces a rule after validating it, and returns it with its state as written.
func (g *Engine) Save(ctx context.Context, t tenant.ID, r events.AlertRule) (RuleView, error) {
	if err := domain.ValidateRule(r); err != nil {
		return RuleView{}, err
	}
	if r.WebhookURL != "" {
		bad := func(msg string) error {
			return apperr.New(apperr.KindInvalid, CodeWebhookRefused, msg).WithFields(apperr.FieldError{Location: "body.webhookUrl", Message: msg})
		}
		if !g.Signed {
			return RuleView{}, bad("this server has no webhook secret (CRISPY_WEBHOOK_SECRET), so notices could not be signed; the operator must set one, or save the rule without webhookUrl")
		}
		if !g.AllowInternal {
			if err := CheckURL(ctx, r.WebhookURL, g.Lookup); err != nil {
				return RuleView{}, bad(fmt.Sprintf("webhookUrl must not point at an internal address (%v); the operator can allow them with CRISPY_WEBHOOK_ALLOW_INTERNAL=true", err))
			}
		}
	}
	st, err := tenant.NewStream(t, Category, r.ID)
	if err != nil {
		return RuleView{}, apperr.Invalid("invalid_alert_rule", "body.id", "id is not usable as a rule id")
	}
	rs, err := g.update(ctx, st, func(domain.RuleState) ([]eventstore.EventData, error) {
		ev, err := eventstore.NewEventData(events.TypeAlertRuleSaved, events.AlertRuleSaved{Rule: r})
		return []eventstore.EventData{ev}, err
	})
	if err != nil {
		return RuleView{}, err
	}
	return RuleView{AlertRule: rs.Rule, Firing: rs.Firing}, nil
}

// Delete removes a rule; an unknown id (or another tenant's) is 404.
func (g *Engine) Delete(ctx context.Context, t tenant.ID, id string) error {
	notFound := apperr.NotFound("alert_rule_not_found", "no alert rule with that id")
	if !domain.RuleIDPattern.MatchString(id) {
		return notFound
	}
	st := tenant.MustStream(t, Category, id)
	_, err := g.update(ctx, st, func(rs domain.RuleState) ([]eventstore.EventData, error) {
		if !rs.Exists {
			return nil, notFound
		}
		ev, err := eventstore.NewEventData(events.TypeAlertRuleDeleted, events.AlertRuleDeleted{RuleID: id})
		return []eventstore.EventData{ev}, err
	})
	return err
}

// EvaluateAll evaluates every enabled rule of every tenant once and records transitions (their
// notices are sent by the Webhooks processor). Errors of one rule are logged and do not stop the
// others; the first is returned. While the rules read model catches up it evaluates nothing and
// returns its 503 catching_up.
func (g *Engine) EvaluateAll(ctx context.Context) error {
	now := g.Now()
	rules, err := g.Rules.Enabled(ctx)
	if err != nil {
		return err
	}
	var served map[tenant.ID]bool
	if g.Served != nil {
		ids := g.Served()
		served = make(map[tenant.ID]bool, len(ids))
		for _, id := range ids {
			served[id] = true
		}
	}
	var first error
	for _, w := range rules {
		if served != nil && !served[w.Tenant] {
			continue
		}
		if err := g.evaluate(ctx, w.Tenant, w.RuleState, now); err != nil {
			g.Log.WarnContext(ctx, "alert rule evaluation failed", "tenant", w.Tenant.String(), "rule", w.Rule.ID, "error", err)
			if first == nil {
				first = err
			}
		}
	}
	return first
}

func (g *Engine) evaluate(ctx context.Context, t tenant.ID, seen domain.RuleState, now time.Time) error {
	r := seen.Rule
	period, err := domain.ParsePeriod(r.Period)
	if err != nil {
		return err
	}
	value, err := g.Evaluate(ctx, t, r.Metric, period, now)
	if err != nil {
		return fmt.Errorf("evaluate %s of %s: %w", r.Metric, t, err)
	}
	if !domain.Fires(r, value) || seen.Firing {
		g.clearPending(t, r.ID)
	}
	fires := domain.Fires(r, value)
	if fires && !seen.Firing && !g.held(t, r, now) {
		return nil // the condition has not held for the rule's for duration yet
	}
	if fires == seen.Firing {
		// No transition as far as the read model knows. Had another replica recorded one it has not
		// applied yet, the next tick sees it.
		return nil
	}
	ctx = request.With(ctx, request.Info{ID: request.From(ctx).ID, Actor: "system:alerts"})
	st := tenant.MustStream(t, Category, r.ID)
	_, err = g.update(ctx, st, func(rs domain.RuleState) ([]eventstore.EventData, error) {
		// Re-check on the stream's fresh fold: the rule may have been deleted, disabled or changed
		// meanwhile, or another replica recorded this transition first.
		if !rs.Exists || !rs.Rule.Enabled || rs.Rule != r || rs.Firing == fires {
			return nil, nil
		}
		rule := r
		var ev eventstore.EventData
		var err error
		if fires {
			ev, err = eventstore.NewEventData(events.TypeAlertFired, events.AlertFired{RuleID: r.ID, Value: value, At: now.UTC(), Rule: &rule})
		} else {
			ev, err = eventstore.NewEventData(events.TypeAlertResolved, events.AlertResolved{RuleID: r.ID, Value: value, At: now.UTC(), Rule: &rule})
		}
		return []eventstore.EventData{ev}, err
	})
	return err
}

// held reports whether r's condition, true at now, has held for r's for duration: since the first
// evaluation that found it true with no evaluation since that found it false. A rule without a for
// duration has held at once.
func (g *Engine) held(t tenant.ID, r events.AlertRule, now time.Time) bool {
	d, _ := domain.ForDuration(r)
	if d <= 0 {
		return true
	}
	g.pendingMu.Lock()
	defer g.pendingMu.Unlock()
	if g.pending == nil {
		g.pending = map[string]time.Time{}
	}
	k := t.String() + "\x00" + r.ID
	since, ok := g.pending[k]
	if !ok {
		g.pending[k] = now
		return false
	}
	return now.Sub(since) >= d
}

// clearPending forgets a rule's streak (its condition was false, or it fired).
func (g *Engine) clearPending(t tenant.ID, id string) {
	g.pendingMu.Lock()
	defer g.pendingMu.Unlock()
	delete(g.pending, t.String()+"\x00"+id)
}

// Notice is the JSON body POSTed to a rule's webhook.
type Notice struct {
	// ID is the id of the AlertFired or AlertResolved event: the same for every delivery of one
	// transition (also in the x-crispy-delivery header), so a receiver can drop repeats.
	ID     string           `json:"id"`
	Event  string           `json:"event"` // alert.firing or alert.resolved
	Tenant string           `json:"tenant"`
	Rule   events.AlertRule `json:"rule"`
	State  string           `json:"state"` // firing or resolved
	Value  float64          `json:"value"`
	At     time.Time        `json:"at"`
}

// MarshalNotice is the exact body that is signed and sent.
func MarshalNotice(n Notice) ([]byte, error) { return json.Marshal(n) }
