// Package app holds the conversation use cases: chat turns (turn.go), history and deletion
// (sessions.go), retention (retention.go), speech (speech.go), over a cached session repository
// (repo.go, cache.go, snapshot.go) and an in-memory buffer of recent turns for resumption (hub.go);
// stateless /v1 calls record usage only (stateless.go).
package app

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/crispy-enigma/crispy/modules/conversation/internal/domain"
	tenancyevents "github.com/crispy-enigma/crispy/modules/tenancy/events"
	"github.com/crispy-enigma/crispy/platform/ai"
	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// Policy, Retriever and ToolRunner are the module's ports (ports.go declares them for the wiring).
type (
	Policy interface {
		Config(ctx context.Context, t tenant.ID) (tenancyevents.TenantConfig, error)
	}
	Retriever interface {
		Retrieve(ctx context.Context, t tenant.ID, query string, k int) ([]domain.Passage, error)
	}
	ToolRunner interface {
		Execute(ctx context.Context, t tenant.ID, name string, params json.RawMessage, userID string) (json.RawMessage, error)
	}
	// Keys destroys a session life's data key (the store seals its content under it).
	Keys interface {
		Destroy(ctx context.Context, t tenant.ID, keyID string) error
	}
)

// Settings are the module's knobs, defaults applied by the module.
type Settings struct {
	SystemPrompt  string
	DefaultModel  string // server default ("builtin:offline" when nothing is configured)
	OverrideModel string // CRISPY_MODEL_ID: wins over the tenant's models.chat
	// ModelAliases name models for OpenAI clients (a tenant's models.aliases win).
	ModelAliases  map[string]string
	ContextTokens int
	MaxCompletion int
	// ModelMaxTokens is the server's default max_tokens per model ("provider:model"), for calls
	// that name none (a tenant's models.maxTokens win; else MaxCompletion).
	ModelMaxTokens map[string]int
	RAGTopK        int
	ResumeWindow   time.Duration // how long a disconnected turn waits for its client, and a finished one stays resumable
	TurnTimeout    time.Duration
	// UserRecordDelay is how long a turn waits before recording the user's message on its own; an
	// answer that is complete by then is recorded with it in one append.
	UserRecordDelay time.Duration
	// SnapshotEvery: a long session gets a snapshot segment every this many events (0: none).
	SnapshotEvery int
}

// Service runs the use cases.
type Service struct {
	Store     eventstore.Store
	Router    *ai.Router
	Speaker   ai.Speaker
	Policy    Policy
	Retriever Retriever
	Tools     ToolRunner
	// Keys erases a session's content when it ends; nil: nothing is sealed, nothing to destroy.
	Keys Keys
	// Ledger books this process's turns on top of the recorded use that Usage reads.
	Ledger *domain.Ledger
	Usage  UsageReader
	// KeyBudget is an API key's own ceilings (0: none), within the tenant's; nil: none.
	KeyBudget func(t tenant.ID, key string) KeyCeilings
	// Pricer prices model calls for API keys' USD budgets (nil: every call costs nothing).
	Pricer Pricer
	// Window is the tokens-per-minute log shared by replicas (Redis); nil: the Ledger's own, per
	// process. Its bookings are settled and released through the Ledger's Hook (window.go).
	Window   TokenWindow
	windowed sync.Map // turn id -> []windowBooking
	// windowLog spaces out the log lines of a failing Window (unix ns of the last).
	windowLog atomic.Int64
	Sessions  SessionIndex
	Cache     *Cache
	Hub       *Hub
	Settings  Settings
	Metrics   *Metrics
	Log       *slog.Logger
	Now       func() time.Time
	// Running holds the turns in progress here (serialisation per session, shutdown).
	Running *Running
	// Started is when this process's module was built: a turn recorded without an instance (before
	// turns named theirs) and opened before it was left behind by an earlier run.
	Started time.Time
	// Instance names this replica (one per data folder, the same across its restarts) and Run this
	// process; a turn records both, so that a start closes the turns its own earlier runs left open,
	// and never a turn another replica may still be streaming (those only once they are stale).
	Instance, Run string
}

// SessionIndex is the session list read model.
type SessionIndex interface {
	// List is a page of the tenant's sessions that user may see (its own and the tenant's), newest
	// first, after cursor; domain.ErrBadCursor for a cursor it did not make.
	List(ctx context.Context, t tenant.ID, viewer domain.Viewer, limit int, cursor string) ([]domain.Summary, string, error)
	// WithOpenTurns lists the sessions with turns awaiting their outcome.
	WithOpenTurns(ctx context.Context) ([]domain.SessionRef, error)
	// Tenants lists the tenants that have sessions.
	Tenants(ctx context.Context) ([]tenant.ID, error)
	// Idle is a page of the tenant's sessions last active before cutoff, after the place next of
	// the previous page ("" from the start; "" returned at the end).
	Idle(ctx context.Context, t tenant.ID, cutoff time.Time, after string, limit int) (ids []string, next string, err error)
}

// KeyCeilings are an API key's own ceilings within its tenant's (0: none): Tokens its dailyTokens,
// monthlyTokens and limits.tokensPerMinute, DailyUSD and MonthlyUSD its budget in dollars.
type KeyCeilings struct {
	Tokens               domain.Ceilings
	DailyUSD, MonthlyUSD float64
}

// Pricer prices a model's tokens (USD; priced false: the price table does not know the model).
type Pricer interface {
	Cost(model string, t domain.SpendTokens) (usd float64, priced bool)
}

// UsageReader reads the token ledger read model: a tenant's recorded use today and this month.
type UsageReader interface {
	Used(ctx context.Context, t tenant.ID, now time.Time) (domain.Usage, error)
}

func (s *Service) config(ctx context.Context, t tenant.ID) (tenancyevents.TenantConfig, error) {
	if s.Policy == nil {
		return tenancyevents.TenantConfig{ID: t.String()}, nil
	}
	c, err := s.Policy.Config(ctx, t)
	if err != nil {
		if _, ok := apperr.As(err); ok {
			return c, err
		}
		return c, fmt.Errorf("tenant %s config: %w", t, err)
	}
	return c, nil
}

func errSessionNotFound() error {
	return apperr.NotFound("session_not_found", "no such session for this tenant")
}
