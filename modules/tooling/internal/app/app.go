// Package app holds the tooling use cases: list the tools, execute one (permissions, schemas, audit),
// and query execution statistics.
package app

import (
	"context"
	"log/slog"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"go.opentelemetry.io/otel/trace"

	tenancyevents "github.com/crispy-enigma/crispy/modules/tenancy/events"
	"github.com/crispy-enigma/crispy/modules/tooling/internal/domain"
	"github.com/crispy-enigma/crispy/modules/tooling/internal/host"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/keystore"
	"github.com/crispy-enigma/crispy/platform/tenant"
	"github.com/crispy-enigma/crispy/plugins/sdk"
)

// Policy mirrors the module's TenantPolicy port.
type Policy interface {
	Config(ctx context.Context, t tenant.ID) (tenancyevents.TenantConfig, error)
}

// StatsReader reads the execution statistics read model. It refuses (503 catching_up) rather than
// answer from a read model that has not caught up.
type StatsReader interface {
	Query(ctx context.Context, t tenant.ID, since, until time.Time) ([]domain.ToolStats, error)
}

// Service runs the use cases.
type Service struct {
	Host         *host.Manager
	Store        eventstore.Store
	Keys         keystore.Store // holds each tenant's params secret (domain.ParamsKeyID)
	Policy       Policy         // nil: every tool allowed, every permission granted
	Capabilities sdk.Capabilities
	Stats        StatsReader  // the execution statistics read model (set by the module's Register)
	Metrics      *metrics.Set // optional
	Tracer       trace.Tracer // optional: an execute_tool span per call
	Log          *slog.Logger
	Now          func() time.Time
}

// policy returns the tenant's configuration (the zero config, which allows everything, without a
// policy).
func (s *Service) policy(ctx context.Context, t tenant.ID) (tenancyevents.TenantConfig, error) {
	if s.Policy == nil {
		return tenancyevents.TenantConfig{ID: t.String()}, nil
	}
	return s.Policy.Config(ctx, t)
}
