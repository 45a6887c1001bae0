// Package app holds the tenancy use cases: recording the tenants file as events (sync_tenants.go)
// and admitting a request (admit.go).
package app

import (
	"context"

	"github.com/crispy-enigma/crispy/modules/tenancy/internal/domain"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// Limiter decides whether one more request of tenant t fits every scope in s (tenant, key, user),
// and counts it in all of them when it does, atomically. Implementations: adapters.MemoryLimiter
// (one process) and adapters.RedisLimiter (shared by replicas).
type Limiter interface {
	Allow(ctx context.Context, t tenant.ID, s domain.Scopes) (domain.Decision, error)
}
