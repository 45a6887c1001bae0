// Package instrumented decorates any eventstore.Store with metrics and trace spans on appends, so
// every adapter (embedded, esdb) is measured the same way from the caller's side. The embedded store's
// own crispy_eventstore_append_duration_seconds measures inside the store (group commit and fsync);
// the metrics here measure what callers wait for, and count outcomes.
package instrumented

import (
	"context"
	"errors"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/exposition"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// Metric names.
const (
	MetricAppends        = "crispy_eventstore_appends_total"         // {result="ok|conflict|error"}
	MetricAppendedEvents = "crispy_eventstore_appended_events_total" // events in successful appends
	MetricAppendSeconds  = "crispy_eventstore_append_call_seconds"   // histogram, caller's view
)

// Store is the instrumented decorator. It is an eventstore.Store.
type Store struct {
	eventstore.Store
	tracer   trace.Tracer // nil when spans are off
	ok       *metrics.Counter
	conflict *metrics.Counter
	failed   *metrics.Counter
	events   *metrics.Counter
	latency  *metrics.PrometheusHistogram
}

// New wraps s. set may be nil (no metrics) and tracer may be nil (no spans). The metrics are created
// here once, so an append costs a few atomic adds and one histogram update.
func New(s eventstore.Store, set *metrics.Set, tracer trace.Tracer) *Store {
	if _, isNoop := tracer.(noop.Tracer); isNoop {
		tracer = nil // tracing is off: skip span bookkeeping on the hot path entirely
	}
	if set == nil {
		set = metrics.NewSet() // private, never exported: keeps the hot path free of nil checks
	}
	return &Store{
		Store:    s,
		tracer:   tracer,
		ok:       set.GetOrCreateCounter(MetricAppends + `{result="ok"}`),
		conflict: set.GetOrCreateCounter(MetricAppends + `{result="conflict"}`),
		failed:   set.GetOrCreateCounter(MetricAppends + `{result="error"}`),
		events:   set.GetOrCreateCounter(MetricAppendedEvents),
		latency:  set.GetOrCreatePrometheusHistogramExt(MetricAppendSeconds, exposition.LatencyBuckets),
	}
}

// Unwrap returns the decorated store.
func (s *Store) Unwrap() eventstore.Store { return s.Store }

// Append records the append's latency and outcome, and a span "eventstore.append" carrying the
// stream's tenant and category (never the event data).
func (s *Store) Append(ctx context.Context, stream tenant.Stream, expected eventstore.ExpectedRevision, evs ...eventstore.EventData) (eventstore.AppendResult, error) {
	span := trace.SpanFromContext(ctx) // a no-op span unless tracing is on
	if s.tracer != nil {
		ctx, span = s.tracer.Start(ctx, "eventstore.append", trace.WithSpanKind(trace.SpanKindClient))
	}
	recording := s.tracer != nil && span.IsRecording()
	if recording {
		span.SetAttributes(
			attribute.String("crispy.tenant", stream.Tenant().String()),
			attribute.String("crispy.stream.category", stream.Category()),
			attribute.Int("crispy.events", len(evs)),
			attribute.String("crispy.expected_revision", expected.String()),
		)
	}
	start := time.Now()
	res, err := s.Store.Append(ctx, stream, expected, evs...)
	s.latency.UpdateDuration(start)
	switch {
	case err == nil:
		s.ok.Inc()
		s.events.Add(len(evs))
		if recording {
			span.SetAttributes(attribute.Int64("crispy.position", int64(res.Position)))
		}
	case errors.Is(err, eventstore.ErrConflict):
		s.conflict.Inc()
		if recording {
			span.SetAttributes(attribute.String("error.type", "conflict"))
			span.SetStatus(codes.Error, "wrong expected revision")
		}
	default:
		s.failed.Inc()
		if recording {
			span.SetAttributes(attribute.String("error.type", "error"))
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
	}
	if s.tracer != nil {
		span.End()
	}
	return res, err
}

var _ eventstore.Store = (*Store)(nil)
