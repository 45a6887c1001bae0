package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/VictoriaMetrics/metrics"

	"github.com/crispy-enigma/crispy/platform/ai"
	"github.com/crispy-enigma/crispy/platform/exposition"
)

// modelObserver meters every upstream model attempt (latency, first token, outcome) and breaker
// change, and logs each failed attempt and each breaker change as a WARN line in the context of
// the request that met it, so its requestId and tenant lead from the failure to the request.
// Model labels are "provider:model" from the tenants file and the server's defaults: a bounded set.
type modelObserver struct {
	set *metrics.Set
	log *slog.Logger

	mu sync.Mutex
	// changes are breaker transitions not yet logged: gobreaker reports them without a context,
	// from inside an attempt, and the attempt's own report (which has the context) follows at once.
	changes map[string][]string
}

func newModelObserver(set *metrics.Set, log *slog.Logger) *modelObserver {
	return &modelObserver{set: set, log: log, changes: map[string][]string{}}
}

// attempt is ai.RouterConfig.OnAttempt.
func (o *modelObserver) attempt(ctx context.Context, a ai.AttemptRecord) {
	outcome := a.Reason
	if outcome == "" {
		outcome = "ok"
	}
	o.set.GetOrCreateCounter(fmt.Sprintf(`crispy_ai_attempts_total{model=%q,outcome=%q}`, a.Model, outcome)).Inc()
	o.set.GetOrCreatePrometheusHistogramExt(fmt.Sprintf(`crispy_ai_upstream_duration_seconds{model=%q,outcome=%q}`, a.Model, outcome),
		exposition.LatencyBuckets).Update(a.Duration.Seconds())
	if a.FirstToken > 0 {
		o.set.GetOrCreatePrometheusHistogramExt(fmt.Sprintf(`crispy_ai_upstream_ttft_seconds{model=%q}`, a.Model),
			exposition.LatencyBuckets).Update(a.FirstToken.Seconds())
	}
	o.mu.Lock()
	changes := o.changes[a.Model]
	delete(o.changes, a.Model)
	o.mu.Unlock()
	if a.Err != nil && a.Reason != "cancelled" {
		o.log.WarnContext(ctx, "model attempt failed", "model", a.Model, "reason", a.Reason, "retry", a.Retry,
			"durationMs", a.Duration.Milliseconds(), "error", a.Err.Error())
	}
	for _, c := range changes {
		o.log.WarnContext(ctx, "model circuit breaker changed state", "model", a.Model, "change", c)
	}
}

// breaker is ai.RouterConfig.OnBreakerChange.
func (o *modelObserver) breaker(model, from, to string) {
	o.set.GetOrCreateCounter(fmt.Sprintf(`crispy_ai_breaker_transitions_total{model=%q,to=%q}`, model, to)).Inc()
	o.mu.Lock()
	o.changes[model] = append(o.changes[model], from+" -> "+to)
	o.mu.Unlock()
}

// fallback is told when a call moves on from a model that failed to the next of its list.
func (o *modelObserver) fallback(ctx context.Context, from ai.Attempt, next ai.ModelID) {
	o.set.GetOrCreateCounter(fmt.Sprintf(`crispy_ai_fallbacks_total{model=%q,reason=%q}`, from.Model.String(), from.Reason)).Inc()
	o.log.WarnContext(ctx, "model fallback", "model", from.Model.String(), "reason", from.Reason, "next", next.String())
}
