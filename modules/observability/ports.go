package observability

import (
	"context"
	"time"

	"github.com/crispy-enigma/crispy/modules/observability/internal/api"
	"github.com/crispy-enigma/crispy/modules/observability/internal/domain"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// SessionAuditor rebuilds a chat session from its events as it stood at asOf. cmd/crispy adapts the
// conversation module to it (or uses NewSessionAuditor over the store); nil disables GET
// /audit/sessions (503).
type SessionAuditor interface {
	SessionAsOf(ctx context.Context, t tenant.ID, sessionID string, asOf time.Time) (AuditedSession, error)
}

// AuditedSession is a session as the audit sees it.
type AuditedSession = domain.AuditedSession

// AuditedMessage is one message of an audited session.
type AuditedMessage = domain.AuditedMessage

// AuditLog is the signed tenant-wide Merkle log behind GET /audit/public-key, GET /audit/checkpoint,
// POST /audit/verify and GET /audit/events/{id}/proof: *auditlog.Log.
type AuditLog = api.AuditLog

// SearchStats gives the retrieval module's search cache numbers for a window (the same numbers as
// GET /metrics/search-cache). cmd/crispy adapts the retrieval module to it; nil means zeros.
type SearchStats interface {
	CacheStats(ctx context.Context, t tenant.ID, since, until time.Time) (CacheStats, error)
}

// CacheStats are {hits, misses, hitRate, avgLatencyMs, totalChecks}; HitRate and TotalChecks are
// derived from Hits and Misses when left zero.
type CacheStats = domain.CacheStats
