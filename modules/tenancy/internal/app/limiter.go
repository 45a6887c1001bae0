// Package app holds the tenancy use cases: recording the tenants file as events (sync_tenants.go)
// and admitting a request (admit.go).
package app

import (
	"context"

	"github.com/crispy-enigma/crispy/modules/tenancy/internal/domain"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// Limiter decides whether one more request of (tenant, user) fits the tenant's policy, and counts it
// when it does. user "" is the tenant's anonymous key. Implementations: adapters.MemoryLimiter (one
// process) and adapters.RedisLimiter (shared by replicas).
type Limiter interface {
	Allow(ctx context.Context, t tenant.ID, user string, p domain.RatePolicy) (domain.Decision, error)
}
