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
)

// Settings are the module's knobs, defaults applied by the module.
type Settings struct {
	SystemPrompt  string
	DefaultModel  string // server default ("builtin:offline" when nothing is configured)
	OverrideModel string // CRISPY_MODEL_ID: wins over the tenant's models.chat
	ContextTokens int
	MaxCompletion int
	RAGTopK       int
	ResumeWindow  time.Duration // how long a disconnected turn waits for its client, and a finished one stays resumable
	TurnTimeout   time.Duration
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
	Ledger    *domain.Ledger
	Index     *domain.Index
	Cache     *Cache
	Hub       *Hub
	Settings  Settings
	Metrics   *Metrics
	Log       *slog.Logger
	Now       func() time.Time
	// Running holds the turns in progress here (serialisation per session, shutdown).
	Running *Running
	// Started is when this process's module was built: a turn opened in the store before it was
	// left behind by an earlier run.
	Started time.Time
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
