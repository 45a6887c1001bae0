// Package observability is what an operator watches and what an analyst audits, all derived from the
// event streams: Prometheus metrics (HTTP, event store, Go runtime and process), per-tenant usage and
// cost projections, SLIs, anomalies and alert rules with signed webhooks, the audit API (events,
// sessions as of a time, hash-chain verification) and the replay/verify functions behind the CLI.
//
// On the bus: two checkpointed projections, observability.usage (usage and cost per tenant, 5-minute
// bucket and model or tool) and observability.alert-rules (rules and whether each fires), each a
// bbolt file under <data>/readmodels that a start resumes from; and one processor,
// observability.alert-webhooks, that sends the notice of each recorded transition once per
// deployment. See internal/alerts for how two replicas record one transition.
package observability

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/danielgtaylor/huma/v2"
	"gopkg.in/yaml.v3"

	convevents "github.com/crispy-enigma/crispy/modules/conversation/events"
	"github.com/crispy-enigma/crispy/modules/observability/events"
	"github.com/crispy-enigma/crispy/modules/observability/internal/adapters"
	"github.com/crispy-enigma/crispy/modules/observability/internal/alerts"
	"github.com/crispy-enigma/crispy/modules/observability/internal/api"
	"github.com/crispy-enigma/crispy/modules/observability/internal/app"
	"github.com/crispy-enigma/crispy/modules/observability/internal/domain"
	"github.com/crispy-enigma/crispy/modules/observability/internal/telemetry"
	toolevents "github.com/crispy-enigma/crispy/modules/tooling/events"
	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/bus"
	"github.com/crispy-enigma/crispy/platform/bus/codec"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/exposition"
	"github.com/crispy-enigma/crispy/platform/httpapi"
	"github.com/crispy-enigma/crispy/platform/readmodel"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// Price is a model's price in USD per million tokens (input, cachedInput, output, reasoning).
type Price = domain.Price

// PriceTable maps "provider:model" (or a bare model name) to its price.
type PriceTable = domain.PriceTable

// DefaultPrices is the built-in price table (list prices of well-known models; builtin:offline is 0).
func DefaultPrices() PriceTable { return domain.DefaultPrices() }

// Config configures the module.
type Config struct {
	// Prices are added to (and override) the default table.
	Prices PriceTable
	// PriceFile, when set, is a YAML or JSON file read at New: either a map of model id to price or
	// {prices: {...}}; its entries override the defaults and Prices. Example:
	//   prices:
	//     "openai:gpt-4o": {input: 2.5, cachedInput: 1.25, output: 10}
	PriceFile string
	// WebhookSecret signs alert notices (HMAC-SHA256). Required when any rule has a webhook to be
	// verifiable; empty signs with an empty key (and New logs a warning).
	WebhookSecret string
	// AlertInterval is how often Run evaluates alert rules (default 30 s).
	AlertInterval time.Duration
	// WebhookMaxAge: a transition recorded longer ago than this is not notified (default 24 h); see
	// the alert-webhooks processor.
	WebhookMaxAge time.Duration
	// WebhookRetries after the first attempt (default 3); WebhookBackoff the first wait, doubling
	// (default 1 s); WebhookTimeout bounds one attempt (default 5 s).
	WebhookRetries int
	WebhookBackoff time.Duration
	WebhookTimeout time.Duration
	// WebhookAllowInternal lets webhooks reach loopback, private and link-local addresses. Off by
	// default: tenants choose webhook URLs and must not reach the operator's network through them.
	WebhookAllowInternal bool
	// MaxTenantLabels bounds how many tenants get their own metric label (default 100).
	MaxTenantLabels int
	// DisableMetricsRoute keeps GET /metrics off the API (when cmd/crispy serves it on --metrics-addr
	// with MetricsHandler).
	DisableMetricsRoute bool
}

func (c *Config) defaults() {
	if c.AlertInterval == 0 {
		c.AlertInterval = 30 * time.Second
	}
	if c.WebhookRetries == 0 {
		c.WebhookRetries = 3
	}
	if c.WebhookBackoff == 0 {
		c.WebhookBackoff = time.Second
	}
	if c.WebhookTimeout == 0 {
		c.WebhookTimeout = 5 * time.Second
	}
	if c.MaxTenantLabels == 0 {
		c.MaxTenantLabels = 100
	}
	if c.WebhookMaxAge == 0 {
		c.WebhookMaxAge = 24 * time.Hour
	}
}

// Validate checks the configuration.
func (c Config) Validate() error {
	if c.AlertInterval < 0 || c.WebhookRetries < 0 || c.WebhookBackoff < 0 || c.WebhookTimeout < 0 || c.MaxTenantLabels < 0 || c.WebhookMaxAge < 0 {
		return fmt.Errorf("observability: negative interval, retries, backoff, timeout, label bound or webhook age")
	}
	if err := c.Prices.Validate(); err != nil {
		return fmt.Errorf("observability: %w", err)
	}
	return nil
}

// LoadPriceFile reads a YAML or JSON price file.
func LoadPriceFile(path string) (PriceTable, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read price file: %w", err)
	}
	var wrapped struct {
		Prices PriceTable `yaml:"prices"`
	}
	if err := yaml.Unmarshal(b, &wrapped); err == nil && len(wrapped.Prices) > 0 {
		return wrapped.Prices, wrapped.Prices.Validate()
	}
	var flat PriceTable
	if err := yaml.Unmarshal(b, &flat); err != nil {
		return nil, fmt.Errorf("price file %s: %w", path, err)
	}
	if len(flat) == 0 {
		return nil, fmt.Errorf("price file %s has no prices", path)
	}
	if err := flat.Validate(); err != nil {
		return nil, fmt.Errorf("price file %s: %w", path, err)
	}
	return flat, nil
}

// Deps are the module's collaborators.
type Deps struct {
	Config Config
	Store  eventstore.Store
	// Metrics is the process's metric set (also given to the other modules); nil: a private one.
	Metrics *metrics.Set
	// KnownTenants lists the configured tenants that get their own metric label; others are "other".
	// nil: every tenant is "other". When set, only these tenants' alert rules are evaluated (a
	// tenant removed from the tenants file fires no more alerts).
	KnownTenants func() []tenant.ID
	Sessions     SessionAuditor // nil: GET /audit/sessions answers 503
	Search       SearchStats    // nil: search and cache SLIs are zeros
	HTTPClient   *http.Client   // for webhooks; nil: a client with WebhookTimeout that refuses internal addresses unless WebhookAllowInternal
	// AuditLog is the signed tenant-wide Merkle log (platform/auditlog); nil: its endpoints answer 503.
	AuditLog AuditLog
	// AlertTicks, when set, drives evaluation instead of a ticker of Config.AlertInterval (tests).
	AlertTicks <-chan time.Time
	Log        *slog.Logger
	Now        func() time.Time
}

// Module is the observability module.
type Module struct {
	cfg      Config
	store    eventstore.Store
	set      *metrics.Set
	log      *slog.Logger
	now      func() time.Time
	usage    adapters.Usage // its projection is set by Register
	rules    adapters.Rules // likewise
	svc      *app.Service
	alerts   *alerts.Engine
	webhooks *alerts.Webhooks
	http     *telemetry.HTTP
	sessions SessionAuditor
	auditLog AuditLog
	ticks    <-chan time.Time
}

// New builds the module.
func New(d Deps) (*Module, error) {
	d.Config.defaults()
	if err := d.Config.Validate(); err != nil {
		return nil, err
	}
	if d.Store == nil {
		return nil, fmt.Errorf("observability: a Store is required")
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	log := d.Log.With("module", "observability")
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Metrics == nil {
		d.Metrics = metrics.NewSet()
	}
	prices := domain.DefaultPrices().Merge(d.Config.Prices)
	if d.Config.PriceFile != "" {
		fromFile, err := LoadPriceFile(d.Config.PriceFile)
		if err != nil {
			return nil, fmt.Errorf("observability: %w", err)
		}
		prices = prices.Merge(fromFile)
	}
	client := d.HTTPClient
	if client == nil {
		client = alerts.NewClient(d.Config.WebhookTimeout, d.Config.WebhookAllowInternal)
	}
	if d.Config.WebhookSecret == "" {
		log.Warn("no webhook secret configured (CRISPY_WEBHOOK_SECRET): alert rules with a webhookUrl are refused, and notices of existing ones are not sent unsigned")
	}
	m := &Module{cfg: d.Config, store: d.Store, set: d.Metrics, log: log, now: d.Now, sessions: d.Sessions, auditLog: d.AuditLog, ticks: d.AlertTicks}
	notifier := &alerts.Notifier{Client: client, Secret: []byte(d.Config.WebhookSecret), Retries: d.Config.WebhookRetries,
		Backoff: d.Config.WebhookBackoff, Log: log, Now: d.Now}
	// The module's own registry of its events: the alert rule streams are folded with it, as the
	// bus decodes them for the read models.
	evc := codec.New()
	events.Register(evc.Add)
	m.webhooks = &alerts.Webhooks{Notifier: notifier, Store: d.Store, Codec: evc, MaxAge: d.Config.WebhookMaxAge, Log: log, Now: d.Now}
	m.svc = &app.Service{Model: &m.usage, Prices: prices, Now: d.Now}
	if d.Search != nil {
		m.svc.Cache = d.Search.CacheStats
	}
	m.alerts = alerts.NewEngine(d.Store, evc, &m.rules, m.svc.MetricValue, log, d.Now)
	m.alerts.Served = d.KnownTenants
	m.alerts.Signed, m.alerts.AllowInternal = d.Config.WebhookSecret != "", d.Config.WebhookAllowInternal
	m.svc.Alerts = m.alerts
	m.http = telemetry.NewHTTP(d.Metrics, d.KnownTenants, d.Config.MaxTenantLabels, 30*time.Second, d.Now)
	return m, nil
}

// Consumer names (durable: the projections name their files under <data>/readmodels, the
// processor its consumer group; never rename them).
const (
	projectionUsage  = "observability.usage"
	projectionAlerts = "observability.alert-rules"
	processorHooks   = "observability.alert-webhooks"
)

// Register mounts the endpoints (/usage, /metrics/*, /audit/*, and GET /metrics unless disabled), the
// checkpointed usage and alert-rule projections (a start resumes from their checkpoints; their
// queries answer 503 catching_up until they have caught up) and the alert-webhooks processor (once
// per deployment).
func (m *Module) Register(a huma.API, b bus.Consumers) {
	convevents.Register(b.Codec().Add)
	toolevents.Register(b.Codec().Add)
	events.Register(b.Codec().Add)

	// Version 2: usage by key and by user too (GET /usage?groupBy): rebuilt from the log.
	usage := b.Projection(projectionUsage, bus.ProjectionOptions{What: "usage and cost", Version: 2})
	// An answer's metered fields only: its content is not decoded for usage.
	bus.ApplyView[convevents.AssistantMessageCompleted](usage, func(_ context.Context, tx *readmodel.Tx, env bus.Envelope, ev convevents.Metered) error {
		return adapters.RecordTurn(tx, env.Tenant, env.Time, domain.ChatTurn{Model: ev.Model, Completed: true, Tokens: tokens(ev.Usage),
			Estimated: ev.Usage.Estimated, LatencyMs: ev.LatencyMs, TTFTMs: ev.TTFTMs, Fallbacks: len(ev.Fallbacks),
			Key: env.Actor, User: userOf(env, ev.UserID)})
	})
	bus.Apply(usage, func(_ context.Context, tx *readmodel.Tx, env bus.Envelope, ev convevents.AssistantMessageFailed) error {
		return adapters.RecordTurn(tx, env.Tenant, env.Time, domain.ChatTurn{Model: ev.Model,
			Cancelled: ev.Cancelled || ev.Code == convevents.CodeCancelled, Tokens: tokens(ev.Usage), Estimated: ev.Usage.Estimated,
			LatencyMs: ev.LatencyMs, TTFTMs: ev.TTFTMs, Fallbacks: len(ev.Fallbacks), Key: env.Actor, User: userOf(env, ev.UserID)})
	})
	// A stateless /v1/chat/completions call: counted as a chat turn. A metered call of another
	// module (a purpose: rewrite, answer, tool callback, embeddings): in usage and cost only.
	bus.Apply(usage, func(_ context.Context, tx *readmodel.Tx, env bus.Envelope, ev convevents.CompletionRecorded) error {
		turn := domain.ChatTurn{Model: ev.Model, Completed: ev.Outcome == convevents.OutcomeCompleted,
			Cancelled: ev.Cancelled || ev.Outcome == convevents.CodeCancelled, Tokens: tokens(ev.Usage), Estimated: ev.Usage.Estimated,
			LatencyMs: ev.LatencyMs, TTFTMs: ev.TTFTMs, Fallbacks: len(ev.Fallbacks), Key: env.Actor, User: userOf(env, ev.UserID)}
		if ev.Purpose != "" {
			return adapters.RecordCall(tx, env.Tenant, env.Time, turn)
		}
		return adapters.RecordTurn(tx, env.Tenant, env.Time, turn)
	})
	bus.Apply(usage, func(_ context.Context, tx *readmodel.Tx, env bus.Envelope, ev toolevents.ToolSucceeded) error {
		return adapters.RecordTool(tx, env.Tenant, env.Time, domain.ToolCall{Tool: ev.Tool, Succeeded: true, DurationMs: ev.DurationMs})
	})
	bus.Apply(usage, func(_ context.Context, tx *readmodel.Tx, env bus.Envelope, ev toolevents.ToolFailed) error {
		return adapters.RecordTool(tx, env.Tenant, env.Time, domain.ToolCall{Tool: ev.Tool, Succeeded: false, DurationMs: ev.DurationMs,
			ClientError: ev.CallersFault()})
	})
	m.usage.Projection = usage

	rules := b.Projection(projectionAlerts, bus.ProjectionOptions{What: "alert rules", Version: 1})
	bus.Apply(rules, func(_ context.Context, tx *readmodel.Tx, env bus.Envelope, ev events.AlertRuleSaved) error {
		return adapters.ApplyRuleEvent(tx.Bucket(), env, ev)
	})
	bus.Apply(rules, func(_ context.Context, tx *readmodel.Tx, env bus.Envelope, ev events.AlertRuleDeleted) error {
		return adapters.ApplyRuleEvent(tx.Bucket(), env, ev)
	})
	bus.Apply(rules, func(_ context.Context, tx *readmodel.Tx, env bus.Envelope, ev events.AlertFired) error {
		return adapters.ApplyRuleEvent(tx.Bucket(), env, ev)
	})
	bus.Apply(rules, func(_ context.Context, tx *readmodel.Tx, env bus.Envelope, ev events.AlertResolved) error {
		return adapters.ApplyRuleEvent(tx.Bucket(), env, ev)
	})
	bus.Apply(rules, func(_ context.Context, tx *readmodel.Tx, env bus.Envelope, ev events.AlertDelivered) error {
		return adapters.ApplyRuleEvent(tx.Bucket(), env, ev)
	})
	bus.Apply(rules, func(_ context.Context, tx *readmodel.Tx, env bus.Envelope, ev events.AlertDeliveryFailed) error {
		return adapters.ApplyRuleEvent(tx.Bucket(), env, ev)
	})
	m.rules.Projection = rules

	hooks := b.Processor(processorHooks)
	bus.Handle(hooks, m.webhooks.Fired)
	bus.Handle(hooks, m.webhooks.Resolved)
	m.registerUsageMetrics(b)

	audit := &api.Audit{Store: m.store, Now: m.now, Log: m.auditLog}
	if m.sessions != nil {
		audit.Sessions = m.sessionFunc
	}
	audit.Register(a)
	mh := &api.Metrics{App: m.svc, Alerts: m.alerts}
	if !m.cfg.DisableMetricsRoute {
		mh.Prometheus = m.WritePrometheus
	}
	mh.Register(a)
}

func (m *Module) sessionFunc(ctx context.Context, t tenant.ID, id string, asOf time.Time) (AuditedSession, error) {
	s, err := m.sessions.SessionAsOf(ctx, t, id, asOf)
	if err != nil {
		if _, ok := apperr.As(err); ok {
			return s, err
		}
		return s, apperr.Wrap(err, apperr.KindUnavailable, "session_audit_failed", "the session could not be rebuilt; try again")
	}
	if !s.Exists {
		// Another tenant's session looks exactly like one that never existed.
		return AuditedSession{}, apperr.NotFound("session_not_found", "no session with that id existed at asOf")
	}
	if s.Messages == nil {
		s.Messages = []AuditedMessage{}
	}
	return s, nil
}

// userOf is the user a call is counted under: the one its request asserted, else the event's own.
func userOf(env bus.Envelope, evUser string) string {
	if env.User != "" {
		return env.User
	}
	return evUser
}

func tokens(u convevents.Usage) domain.Tokens {
	return domain.Tokens{Input: int64(u.PromptTokens), Cached: int64(u.CachedTokens), Output: int64(u.CompletionTokens), Reasoning: int64(u.ReasoningTokens)}
}

// Run evaluates alert rules every AlertInterval (or on every AlertTicks tick) until ctx ends. Every
// replica evaluates; the rule stream's expected revision lets one record each transition, and the
// alert-webhooks processor sends its notice once per deployment.
func (m *Module) Run(ctx context.Context) error {
	ticks := m.ticks
	if ticks == nil {
		t := time.NewTicker(m.cfg.AlertInterval)
		defer t.Stop()
		ticks = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticks:
			// Failures are logged per rule; the loop carries on so one broken rule cannot stop the rest.
			_ = m.alerts.EvaluateAll(ctx)
		}
	}
}

// EvaluateAlerts evaluates every enabled rule once at Now (what Run does on each tick) and records
// the transitions; the alert-webhooks processor sends their notices.
func (m *Module) EvaluateAlerts(ctx context.Context) error { return m.alerts.EvaluateAll(ctx) }

// RecordRequest is httpapi.Deps.OnRequest: request counts by route, status and (configured) tenant,
// and latency histograms by route and status.
func (m *Module) RecordRequest(r httpapi.RequestRecord) {
	m.http.Record(r.Route, r.Status, r.Duration, r.Tenant)
}

// WritePrometheus writes the metric set, then Go runtime and process metrics, each family with its
// HELP and TYPE lines (platform/exposition), so `promtool check metrics` accepts it.
func (m *Module) WritePrometheus(w io.Writer) {
	_ = exposition.Write(w, m.set) // fails only on a write error, which the client already saw
}

// MetricsHandler serves WritePrometheus, for a separate --metrics-addr.
func (m *Module) MetricsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", exposition.ContentType)
		m.WritePrometheus(w)
	})
}

// UsageTotals are a tenant's token counts since a time.
type UsageTotals struct {
	Requests        int64
	InputTokens     int64
	OutputTokens    int64
	CachedTokens    int64
	ReasoningTokens int64
	CostUSD         float64
}

// Tokens is input plus output tokens.
func (u UsageTotals) Tokens() int64 { return u.InputTokens + u.OutputTokens }

// Usage reads the usage projection: t's totals from since (rounded down to a 5-minute edge) to now.
// A token budget can read it; the projection lags the store by the bus's delivery delay, and
// answers 503 catching_up (an *apperr.Error) until it has caught up.
func (m *Module) Usage(ctx context.Context, t tenant.ID, since time.Time) (UsageTotals, error) {
	sum, err := m.usage.Window(ctx, t, since, m.now())
	if err != nil {
		return UsageTotals{}, err
	}
	tot := sum.Total()
	_, cost := domain.Costs(sum, m.svc.Prices)
	return UsageTotals{Requests: tot.Requests, InputTokens: tot.Input, OutputTokens: tot.Output, CachedTokens: tot.Cached,
		ReasoningTokens: tot.Reasoning, CostUSD: cost}, nil
}

// Cost is what tokens of model cost in USD at the effective price table, as /usage counts them
// (prompt includes cached, completion includes reasoning); priced is false for a model the table
// does not know (it costs 0). Per-key USD budgets use it (conversation.Pricer).
func (m *Module) Cost(model string, prompt, cached, completion, reasoning int64) (usd float64, priced bool) {
	p, ok := m.svc.Prices.Lookup(model)
	if !ok {
		return 0, false
	}
	return p.Cost(domain.Tokens{Input: prompt, Cached: cached, Output: completion, Reasoning: reasoning}), true
}

// Prices is the effective price table (defaults, config and price file merged).
func (m *Module) Prices() PriceTable { return m.svc.Prices.Merge(nil) }
