package app

import (
	"context"
	"time"

	"github.com/crispy-enigma/crispy/modules/tooling/internal/domain"
	"github.com/crispy-enigma/crispy/modules/tooling/internal/host"
	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// ListTools returns the tools the tenant may run (tools.enabled/allow/deny applied; a tool whose
// permissions the tenant revokes is listed, since running it answers 403 with the reason).
func (s *Service) ListTools(ctx context.Context, t tenant.ID) ([]host.Tool, error) {
	tools, err := s.Host.Tools(ctx)
	if err != nil {
		return nil, apperr.Wrap(err, apperr.KindUnavailable, "tools_unavailable", "the tool host is not available")
	}
	cfg, err := s.policy(ctx, t)
	if err != nil {
		return nil, err
	}
	out := make([]host.Tool, 0, len(tools))
	for _, tl := range tools {
		if cfg.ToolAllowed(tl.Desc.Name) {
			out = append(out, tl)
		}
	}
	return out, nil
}

// ExecutionStats is the answer of GET /metrics/tools/execution.
type ExecutionStats struct {
	From, Until time.Time
	Tools       []domain.ToolStats
	Total       domain.ToolStats
}

// ExecutionMetrics sums the tenant's executions over period.
func (s *Service) ExecutionMetrics(ctx context.Context, t tenant.ID, period string) (ExecutionStats, error) {
	d, ok := domain.Period(period)
	if !ok {
		return ExecutionStats{}, apperr.Invalid("invalid_period", "query.period", "period must be 1h, 24h, 7d or 30d")
	}
	until := s.Now().UTC()
	from := until.Add(-d)
	tools, err := s.Stats.Query(ctx, t, from, until)
	if err != nil {
		return ExecutionStats{}, err
	}
	total := domain.ToolStats{Tool: "*"}
	var sum float64
	for _, ts := range tools {
		total.Executions += ts.Executions
		total.Successes += ts.Successes
		total.Errors += ts.Errors
		sum += ts.MeanDurationMs * float64(ts.Executions)
	}
	if total.Executions > 0 {
		total.MeanDurationMs = sum / float64(total.Executions)
	}
	return ExecutionStats{From: from, Until: until, Tools: tools, Total: total}, nil
}
