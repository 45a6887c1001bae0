// Package conversation is the chat module: event-sourced sessions (t-{tenant}.session-{id}), model
// selection with fallbacks, context assembly (system prompt, RAG passages, tool result, history),
// token budgets, streaming with resumption, retention, the OpenAI-compatible endpoint and speech.
//
// Endpoints (SPEC §2): POST /chat, GET /chat/{sessionId}/stream, GET /chat/{sessionId}/history,
// DELETE /chat/{sessionId}, GET /sessions, POST /v1/chat/completions, POST /tts.
package conversation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/danielgtaylor/huma/v2"
	"github.com/google/uuid"

	"github.com/crispy-enigma/crispy/modules/conversation/events"
	"github.com/crispy-enigma/crispy/modules/conversation/internal/adapters"
	"github.com/crispy-enigma/crispy/modules/conversation/internal/app"
	"github.com/crispy-enigma/crispy/modules/conversation/internal/domain"
	chathttp "github.com/crispy-enigma/crispy/modules/conversation/internal/httpapi"
	"github.com/crispy-enigma/crispy/platform/ai"
	"github.com/crispy-enigma/crispy/platform/ai/offline"
	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/bus"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/metering"
	"github.com/crispy-enigma/crispy/platform/readmodel"
	"github.com/crispy-enigma/crispy/platform/tenant"

	"github.com/crispy-enigma/crispy/platform/atomicfile"
)

// DefaultSystemPrompt is used when Config.SystemPrompt is empty.
const DefaultSystemPrompt = "You are a helpful assistant. Answer concisely. When numbered sources are given, answer from them and cite them as [n]; " +
	"if they do not contain the answer, say so."

// Default memory budgets of the fold cache and of the finished turns kept for resumption.
const (
	DefaultCacheBytes  = 64 << 20
	DefaultResumeBytes = 64 << 20
)

// Config configures the module.
type Config struct {
	SystemPrompt string
	// DefaultModel is the server default chat model (default builtin:offline).
	DefaultModel string
	// OverrideModel (CRISPY_MODEL_ID) wins over the tenants' models.chat; a request's modelId still wins.
	OverrideModel string
	// ModelAliases name models for OpenAI clients ("fast": "openai:gpt-4o-mini"); a tenant's
	// models.aliases win.
	ModelAliases map[string]string
	// ContextTokens is the models' context window for history trimming (default 8192);
	// MaxCompletionTokens the tokens kept for the answer and reserved against budgets (default 1024).
	ContextTokens       int
	MaxCompletionTokens int
	// ModelMaxTokens is the default max_tokens per model ("provider:model": CRISPY_MODEL_MAX_TOKENS)
	// of a call that names none, reserved against budgets and sent upstream; a tenant's
	// models.maxTokens win, and MaxCompletionTokens applies to the models neither names.
	ModelMaxTokens map[string]int
	// RAGTopK is how many passages a RAG turn retrieves (default 5).
	RAGTopK int
	// ResumeWindow is how long a disconnected client may resume before its turn is cancelled, and how
	// long a finished turn stays resumable (default 15 s), within ResumeBytes.
	ResumeWindow time.Duration
	// ResumeBytes bounds the finished turns kept for resumption (default 64 MiB; below 0: none are
	// kept): past it the oldest finished turn is dropped first, and resuming it answers 404
	// turn_not_found as after the window. Running turns are never dropped.
	ResumeBytes int64
	// TurnTimeout bounds a whole turn (default 5 min).
	TurnTimeout time.Duration
	// CacheBytes bounds the folded sessions kept in memory, least recently used out first (default
	// 64 MiB; below 0: none are kept).
	CacheBytes int64
	// SnapshotEvery: a session gets a snapshot segment every this many events (default 256, at
	// least 16; below 0: none), so a long session is folded from a few segments and the events
	// after them rather than from every event.
	SnapshotEvery int
	// SweepInterval is how often the deployment expires idle sessions (default 1 h): every replica's
	// Run asks, one request per tenant and interval is recorded, and the retention processor (once
	// per deployment) sweeps. Give every replica the same interval.
	SweepInterval time.Duration
	// UserRecordDelay: the user's message is recorded on its own this long after the model call
	// starts, unless the answer is complete by then, in which case message and answer are recorded in
	// one append (default 2 ms; the message is always durable before done or error is sent).
	UserRecordDelay time.Duration
}

func (c *Config) defaults() {
	if c.SystemPrompt == "" {
		c.SystemPrompt = DefaultSystemPrompt
	}
	if c.DefaultModel == "" {
		c.DefaultModel = ai.Offline.String()
	}
	if c.ContextTokens == 0 {
		c.ContextTokens = 8192
	}
	if c.MaxCompletionTokens == 0 {
		c.MaxCompletionTokens = 1024
	}
	if c.RAGTopK == 0 {
		c.RAGTopK = 5
	}
	if c.ResumeWindow == 0 {
		c.ResumeWindow = 15 * time.Second
	}
	if c.TurnTimeout == 0 {
		c.TurnTimeout = 5 * time.Minute
	}
	if c.ResumeBytes == 0 {
		c.ResumeBytes = DefaultResumeBytes
	}
	if c.CacheBytes == 0 {
		c.CacheBytes = DefaultCacheBytes
	}
	if c.SnapshotEvery == 0 {
		c.SnapshotEvery = 256
	}
	if c.SweepInterval == 0 {
		c.SweepInterval = time.Hour
	}
	if c.UserRecordDelay == 0 {
		c.UserRecordDelay = 2 * time.Millisecond
	}
}

// Validate checks the configuration (after defaults).
func (c Config) Validate() error {
	if _, err := ai.ParseModelID(c.DefaultModel); err != nil {
		return fmt.Errorf("conversation: default model: %w", err)
	}
	if c.OverrideModel != "" {
		if _, err := ai.ParseModelID(c.OverrideModel); err != nil {
			return fmt.Errorf("conversation: override model (CRISPY_MODEL_ID): %w", err)
		}
	}
	for m, n := range c.ModelMaxTokens {
		if _, err := ai.ParseModelID(m); err != nil || n <= 0 {
			return fmt.Errorf("conversation: default max_tokens of %q: want provider:model and a positive count, got %d", m, n)
		}
	}
	if c.ContextTokens <= c.MaxCompletionTokens || c.MaxCompletionTokens < 0 {
		return fmt.Errorf("conversation: ContextTokens %d must exceed MaxCompletionTokens %d", c.ContextTokens, c.MaxCompletionTokens)
	}
	if c.RAGTopK < 0 || c.RAGTopK > 50 || c.ResumeWindow < 0 || c.TurnTimeout < 0 || c.SweepInterval < 0 || c.UserRecordDelay < 0 {
		return fmt.Errorf("conversation: invalid limits in %+v", c)
	}
	if c.SnapshotEvery > 0 && c.SnapshotEvery < domain.MinSnapshotEvery {
		return fmt.Errorf("conversation: SnapshotEvery %d: want at least %d events (or below 0 for no snapshots)", c.SnapshotEvery, domain.MinSnapshotEvery)
	}
	return nil
}

// Deps are the module's collaborators.
type Deps struct {
	Config Config
	Store  eventstore.Store
	// Router runs the models (platform/ai/providers.Build makes one from the server's config). Nil:
	// only builtin:offline.
	Router *ai.Router
	// Speaker answers POST /tts; nil: 503 tts_unavailable.
	Speaker   ai.Speaker
	Policy    TenantPolicy // nil: defaults for every tenant (tests)
	Retriever Retriever    // nil: RAG turns get no passages
	Tools     ToolRunner   // nil: tool_name is 503 tools_unavailable
	Log       *slog.Logger
	Metrics   *metrics.Set
	Now       func() time.Time // the retention clock (and budget days)
	// Sealer erases a session's content at its deletion or expiry by destroying its data key (the
	// store seals it: wire the store through platform/sealing with SealPolicy and PlainFields), and
	// keeps the session list's titles sealed. Nil: nothing is sealed (tests).
	Sealer Sealer
	// Instance names this replica, the same across its restarts and different from every other
	// replica's (InstanceID keeps one in the data folder). Turns record it, so that a start closes
	// as interrupted the turns its own earlier runs left open and never another replica's recent
	// turn. Empty: a name of this process only (an earlier run's turns then wait until stale).
	Instance string
	// Pricer prices model calls for API keys' budget.dailyUsd / monthlyUsd (observability's price
	// table). Nil: every call costs nothing, so USD budgets never refuse.
	Pricer Pricer
	// TokenWindow is the tokens-per-minute log shared by the replicas (tenancy's, in Redis, with
	// --redis): rateLimit.tokensPerMinute and keys' limits.tokensPerMinute then hold across
	// replicas. Nil: each process counts its own calls.
	TokenWindow TokenWindow
}

// Module is the conversation module.
type Module struct {
	svc      *app.Service
	interval time.Duration
	sealer   Sealer
}

// New builds the module.
func New(d Deps) (*Module, error) {
	d.Config.defaults()
	if err := d.Config.Validate(); err != nil {
		return nil, err
	}
	if d.Store == nil {
		return nil, fmt.Errorf("conversation: a Store is required")
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Router == nil {
		r, err := ai.NewRouter(ai.RouterConfig{}, map[string]ai.Provider{offline.Name: offline.New()})
		if err != nil {
			return nil, err
		}
		d.Router = r
	}
	c := d.Config
	if d.Instance == "" {
		d.Instance = "process-" + uuid.NewString()
	}
	svc := &app.Service{Store: d.Store, Router: d.Router, Speaker: d.Speaker, Ledger: domain.NewLedger(), Instance: d.Instance, Run: uuid.NewString(),
		Cache: app.NewCache(c.CacheBytes), Hub: app.NewHub(c.ResumeBytes, c.ResumeWindow), Running: app.NewRunning(), Started: time.Now(), Metrics: app.NewMetrics(d.Metrics, d.Router), Log: d.Log.With("module", "conversation"), Now: d.Now,
		Settings: app.Settings{SystemPrompt: c.SystemPrompt, DefaultModel: c.DefaultModel, OverrideModel: c.OverrideModel, ModelAliases: c.ModelAliases, ContextTokens: c.ContextTokens,
			MaxCompletion: c.MaxCompletionTokens, ModelMaxTokens: c.ModelMaxTokens, RAGTopK: c.RAGTopK, ResumeWindow: c.ResumeWindow, TurnTimeout: c.TurnTimeout,
			UserRecordDelay: c.UserRecordDelay, SnapshotEvery: max(c.SnapshotEvery, 0)}}
	svc.Metrics.WatchMemory(svc.Cache, svc.Hub)
	if d.Policy != nil {
		svc.Policy = d.Policy
		// The tenancy module also gives each API key's own budget (admin API keys' budget).
		if k, ok := d.Policy.(KeyBudgets); ok {
			svc.KeyBudget = func(t tenant.ID, key string) (c app.KeyCeilings) {
				ak, ok := k.APIKey(t, key)
				if !ok {
					return c
				}
				if ak.Budget != nil {
					c.Tokens.Daily, c.Tokens.Monthly = ak.Budget.DailyTokens, ak.Budget.MonthlyTokens
					c.DailyUSD, c.MonthlyUSD = ak.Budget.DailyUSD, ak.Budget.MonthlyUSD
				}
				if ak.Limits != nil {
					c.Tokens.PerMinute = int64(ak.Limits.TokensPerMinute)
				}
				return c
			}
		}
	}
	if d.Pricer != nil {
		svc.Pricer = pricerAdapter{d.Pricer}
	}
	if d.TokenWindow != nil {
		svc.Window = d.TokenWindow
		svc.Ledger.Hook = svc.WindowDone
	}
	if d.Retriever != nil {
		svc.Retriever = retrieverAdapter{d.Retriever}
	}
	if d.Tools != nil {
		svc.Tools = d.Tools
	}
	if d.Sealer != nil {
		svc.Keys = d.Sealer
	}
	return &Module{svc: svc, interval: c.SweepInterval, sealer: d.Sealer}, nil
}

type retrieverAdapter struct{ r Retriever }

func (a retrieverAdapter) Retrieve(ctx context.Context, t tenant.ID, q string, k int) ([]domain.Passage, error) {
	return a.r.Retrieve(ctx, t, q, k)
}

// Durable names of the module's consumers (their files are <data>/readmodels/<name>.db; the
// processor's name is its consumer group): never rename them.
const (
	sessionsProjection = "conversation.sessions"
	ledgerProjection   = "conversation.token-ledger"
	retentionProcessor = "conversation.retention"
	keysProcessor      = "conversation.key-shredder" // finishes a session end's key destruction (sealing on)
)

// Register mounts the endpoints, the read models and the retention processor:
//   - the session list (GET /sessions, the sessions with open turns, the idle ones) and the token
//     ledger (budget checks) are checkpointed projections: bbolt files that a start resumes from;
//   - the retention processor sweeps a tenant's idle sessions once per deployment when a replica
//     has recorded a RetentionSweepRequested (see Run).
func (m *Module) Register(api huma.API, b bus.Consumers) {
	events.Register(b.Codec().Add)
	// Version 2: rows keep the life and a sealed title (version 1 rows held the title plain).
	// Version 3: rows keep the owner (GET /sessions lists a user's own and the tenant's sessions).
	sessions := b.Projection(sessionsProjection, bus.ProjectionOptions{What: "the session list", Version: 3})
	list := adapters.SessionList{Projection: sessions}
	if m.sealer != nil {
		list.Sealer = m.sealer
	}
	bus.Apply(sessions, func(ctx context.Context, tx *readmodel.Tx, env bus.Envelope, ev events.SessionStarted) error {
		if id, ok := sessionOf(env); ok {
			var title string
			if p, ok := bus.Prepared[adapters.PreparedTitle](ctx); ok {
				title = string(p)
			} else {
				var err error
				if title, err = list.StoredTitle(ctx, env.Tenant, id, env.Revision, ev.Title); err != nil {
					return err
				}
			}
			return adapters.SessionStarted(tx, env.Tenant, id, ev.UserID, title, env.Time, env.Revision)
		}
		return nil
	})
	if m.sealer != nil {
		// A batch's titles are sealed together, ahead of the batch (see StoredTitles).
		bus.Prepare(sessions, func(ctx context.Context, envs []bus.Envelope, evs []events.SessionStarted) ([]any, error) {
			ts := make([]adapters.TitleOf, 0, len(envs))
			at := make([]int, 0, len(envs))
			for i, env := range envs {
				if id, ok := sessionOf(env); ok {
					ts = append(ts, adapters.TitleOf{Tenant: env.Tenant, ID: id, Life: env.Revision, Title: evs[i].Title})
					at = append(at, i)
				}
			}
			out := make([]any, len(envs))
			for j, v := range list.StoredTitles(ctx, ts) {
				out[at[j]] = v
			}
			return out, nil
		})
	}
	// The handlers that need only the envelope say so (ApplyEnvelope): a user's message is about half
	// of a chat history and nothing else on the shared cursor reads its data, so it is not decoded.
	bus.ApplyEnvelope[events.UserMessageAdded](sessions, func(_ context.Context, tx *readmodel.Tx, env bus.Envelope) error {
		if id, ok := sessionOf(env); ok {
			return adapters.MessageAdded(tx, env.Tenant, id, env.Time, env.Revision, true)
		}
		return nil
	})
	bus.ApplyEnvelope[events.AssistantMessageCompleted](sessions, func(_ context.Context, tx *readmodel.Tx, env bus.Envelope) error {
		if id, ok := sessionOf(env); ok {
			return adapters.MessageAdded(tx, env.Tenant, id, env.Time, env.Revision, false)
		}
		return nil
	})
	bus.ApplyEnvelope[events.AssistantMessageFailed](sessions, func(_ context.Context, tx *readmodel.Tx, env bus.Envelope) error {
		if id, ok := sessionOf(env); ok {
			return adapters.TurnFailed(tx, env.Tenant, id, env.Time, env.Revision)
		}
		return nil
	})
	// Every replica sees a deletion here: each drops what it holds of the session in memory.
	bus.ApplyEnvelope[events.SessionDeleted](sessions, func(_ context.Context, tx *readmodel.Tx, env bus.Envelope) error {
		if id, ok := sessionOf(env); ok {
			m.svc.Forget(env.Tenant, id)
			return adapters.SessionEnded(tx, env.Tenant, id)
		}
		return nil
	})
	bus.ApplyEnvelope[events.SessionExpired](sessions, func(_ context.Context, tx *readmodel.Tx, env bus.Envelope) error {
		if id, ok := sessionOf(env); ok {
			m.svc.Forget(env.Tenant, id)
			return adapters.SessionEnded(tx, env.Tenant, id)
		}
		return nil
	})

	// Version 2: also counts by API key (the event's actor), for per-key budgets. Version 3: and
	// an API key's tokens by model, for its USD budget.
	ledger := b.Projection(ledgerProjection, bus.ProjectionOptions{What: "the token budget ledger", Version: 3})
	count := func(tx *readmodel.Tx, env bus.Envelope, model string, u events.Usage) error {
		if err := adapters.AddTokens(tx, env.Tenant, env.Actor, env.Time, int64(u.TotalTokens)); err != nil {
			return err
		}
		return adapters.AddKeySpend(tx, env.Tenant, env.Actor, model, env.Time, domain.SpendTokens{Prompt: int64(u.PromptTokens),
			Cached: int64(u.CachedTokens), Completion: int64(u.CompletionTokens), Reasoning: int64(u.ReasoningTokens)})
	}
	// An answer's model and usage only: its content is not decoded for the ledger.
	bus.ApplyView[events.AssistantMessageCompleted](ledger, func(_ context.Context, tx *readmodel.Tx, env bus.Envelope, ev events.Metered) error {
		return count(tx, env, ev.Model, ev.Usage)
	})
	bus.Apply(ledger, func(_ context.Context, tx *readmodel.Tx, env bus.Envelope, ev events.AssistantMessageFailed) error {
		return count(tx, env, ev.Model, ev.Usage)
	})
	bus.Apply(ledger, func(_ context.Context, tx *readmodel.Tx, env bus.Envelope, ev events.CompletionRecorded) error {
		return count(tx, env, ev.Model, ev.Usage)
	})

	retention := b.Processor(retentionProcessor)
	bus.Handle(retention, func(ctx context.Context, env bus.Envelope, _ events.RetentionSweepRequested) error {
		n, err := m.svc.SweepTenant(ctx, env.Tenant)
		if n > 0 {
			m.svc.Log.InfoContext(ctx, "sessions expired", "tenant", env.Tenant.String(), "count", n)
		}
		return err
	})

	// Every deletion or expiry is finished here too: the request path destroys the life's key right
	// after recording the end, but a key store that is down or a crash in between would otherwise
	// leave the content readable for good (nothing comes back to an ended session).
	if m.sealer != nil {
		k := b.Processor(keysProcessor)
		finish := func(ctx context.Context, env bus.Envelope) error {
			id, ok := sessionOf(env)
			if !ok {
				return nil
			}
			if err := m.svc.FinishEnd(ctx, env.Tenant, id, env.Revision); err != nil {
				// Waited out, never passed: a key left alive is content left readable.
				return apperr.Wrap(err, apperr.KindUnavailable, "conversation.keysUnavailable", "the key store is unavailable")
			}
			return nil
		}
		bus.Handle(k, func(ctx context.Context, env bus.Envelope, _ events.SessionDeleted) error { return finish(ctx, env) })
		bus.Handle(k, func(ctx context.Context, env bus.Envelope, _ events.SessionExpired) error { return finish(ctx, env) })
	}

	m.svc.Sessions = list
	m.svc.Usage = adapters.TokenLedger{Projection: ledger, Cost: func(model string, u domain.SpendTokens) int64 {
		if m.svc.Pricer == nil {
			return 0
		}
		usd, _ := m.svc.Pricer.Cost(model, u)
		return int64(math.Round(usd * 1e9))
	}}
	chathttp.Register(api, m.svc)
}

// sessionOf is the session id of an event of a session stream (t-{tenant}.session-{id}).
func sessionOf(env bus.Envelope) (string, bool) {
	st, err := tenant.ParseStream(env.Stream)
	if err != nil || st.Category() != events.SessionCategory {
		return "", false
	}
	return st.Entity(), true
}

// Run asks for the retention sweep every SweepInterval until ctx ends: for each tenant with a
// session idle past its retention it records one RetentionSweepRequested per interval across the
// replicas (the first replica's append wins), which the retention processor handles once.
func (m *Module) Run(ctx context.Context) error {
	t := time.NewTicker(m.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			if _, err := m.RequestSweeps(ctx, now); err != nil && ctx.Err() == nil {
				m.svc.Log.WarnContext(ctx, "request the session retention sweep", "error", err)
			}
		}
	}
}

// RequestSweeps records the retention sweep request of the interval that holds at, for every
// tenant with a session idle past its retention, unless another replica has; it returns how many
// this call recorded. Run calls it every SweepInterval.
func (m *Module) RequestSweeps(ctx context.Context, at time.Time) (int, error) {
	return m.svc.RequestSweeps(ctx, at.UTC().Truncate(m.interval))
}

// InstanceID returns the replica name kept in the file at path (Deps.Instance), creating it with a
// new random name the first time. Keep the file in the replica's data folder: a replica's name must
// stay the same across its restarts and differ from every other replica's.
func InstanceID(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		if id := strings.TrimSpace(string(b)); id != "" {
			return id, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("conversation: read the instance name: %w", err)
	}
	id := uuid.NewString()
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return "", fmt.Errorf("conversation: instance name folder: %w", err)
	}
	if err := atomicfile.Write(path, []byte(id+"\n"), 0o640); err != nil {
		return "", fmt.Errorf("conversation: write the instance name: %w", err)
	}
	return id, nil
}

// CloseInterrupted closes, as interrupted, the turns an earlier run left with a user message and no
// outcome (a crash or kill -9 mid-turn), so that history and audit show them and their sessions take
// the next turn. Call it once the read models have caught up, before serving; it returns how many
// turns it closed.
func (m *Module) CloseInterrupted(ctx context.Context) (int, error) {
	return m.svc.CloseInterrupted(ctx)
}

// Shutdown ends the chat turns still open: from now on new turns are refused (503 shutting_down);
// each open one is cancelled, records its outcome (failed with code shutting_down, the partial
// answer discarded as cancelled) and sends its client an error event. It returns when all have, or
// when ctx ends. The server calls it shortly before its shutdown deadline, while the store is open,
// and again after the HTTP server has drained (for turns whose client had gone).
func (m *Module) Shutdown(ctx context.Context) error { return m.svc.Shutdown(ctx) }

// Sweep expires, now, every session idle past its tenant's sessionRetentionDays (per Deps.Now) and
// returns how many expired. (It does not go through the retention processor: for tools and tests.)
func (m *Module) Sweep(ctx context.Context) (int, error) { return m.svc.Sweep(ctx) }

// View is a session as it stood at a time; Message is one message of it.
type (
	View    = app.View
	Message = domain.Message
)

// SessionAsOf is the session folded from its readable events up to asOf, for the audit API. A
// deleted or expired session shows the deletion (Deleted/Expired) and no content. Unknown: 404.
func (m *Module) SessionAsOf(ctx context.Context, t tenant.ID, sessionID string, asOf time.Time) (View, error) {
	return m.svc.SessionAsOf(ctx, t, sessionID, asOf)
}

// ErrOfflineOnly is what Complete returns when the tenant's chat model is builtin:offline.
var ErrOfflineOnly = app.ErrOfflineOnly

// Complete answers a one-off completion for another module (a tool's Host.Complete, a RAG answer or
// query rewrite; purpose is one of platform/metering's Purpose* constants) with the tenant's chat
// model chain and its fallbacks, outside any session. It returns ErrOfflineOnly when the tenant's
// model is the offline one, so the caller can use its own deterministic method. The call is
// metered: booked against the tenant's token budget first (an *apperr.Error 429 budget_exceeded
// when it does not fit, and no model is called), then recorded as usage (CompletionRecorded with
// its purpose).
func (m *Module) Complete(ctx context.Context, t tenant.ID, purpose string, msgs []ai.Message, maxTokens int) (ai.Answer, error) {
	return m.svc.Complete(ctx, t, purpose, msgs, maxTokens)
}

// Meter is the metering port (platform/metering) over the tenant's token budget and usage events,
// for the model calls other modules make themselves (embeddings).
func (m *Module) Meter() metering.Meter { return m.svc }
