package instrumented_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/VictoriaMetrics/metrics"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/eventstore/instrumented"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// The decorator is a Store like any other: it passes the acceptance suite.
func TestAcceptance(t *testing.T) {
	eventstoretest.Run(t, func(t *testing.T) eventstore.Store {
		return instrumented.New(eventstoretest.NewMemory(), metrics.NewSet(), nil)
	})
}

func TestAppendMetricsAndSpans(t *testing.T) {
	t.Parallel()
	set := metrics.NewSet()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	s := instrumented.New(eventstoretest.NewMemory(), set, tp.Tracer("test"))
	ctx := context.Background()
	acme := tenant.MustParse("acme")
	st := tenant.MustStream(acme, "session", "s1")
	ev := eventstore.EventData{Type: "test.Happened", Data: []byte(`{}`)}
	if _, err := s.Append(ctx, st, eventstore.NoStream, ev, ev); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, st, eventstore.NoStream, ev); !errors.Is(err, eventstore.ErrConflict) {
		t.Fatalf("want conflict, got %v", err)
	}
	var buf bytes.Buffer
	set.WritePrometheus(&buf)
	out := buf.String()
	for _, want := range []string{
		`crispy_eventstore_appends_total{result="ok"} 1`,
		`crispy_eventstore_appends_total{result="conflict"} 1`,
		`crispy_eventstore_appended_events_total 2`,
		`crispy_eventstore_append_call_seconds_count 2`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("metrics lack %q:\n%s", want, out)
		}
	}
	spans := rec.Ended()
	if len(spans) != 2 {
		t.Fatalf("spans = %d, want 2", len(spans))
	}
	if spans[0].Name() != "eventstore.append" || spans[0].Status().Code == codes.Error {
		t.Errorf("first span %s %v", spans[0].Name(), spans[0].Status())
	}
	var tenantAttr string
	for _, a := range spans[0].Attributes() {
		if a.Key == "crispy.tenant" {
			tenantAttr = a.Value.AsString()
		}
	}
	if tenantAttr != "acme" {
		t.Errorf("span tenant %q", tenantAttr)
	}
	if spans[1].Status().Code != codes.Error {
		t.Errorf("conflict span not marked as error")
	}
}

// nopStore acknowledges appends without doing anything, so the benchmark measures the decorator.
type nopStore struct{ eventstore.Store }

func (nopStore) Append(context.Context, tenant.Stream, eventstore.ExpectedRevision, ...eventstore.EventData) (eventstore.AppendResult, error) {
	return eventstore.AppendResult{Position: 1}, nil
}

// BenchmarkRecordingOverhead: the decorator's cost per append of one event (metrics on, no-op tracer
// as when OTEL_EXPORTER_OTLP_ENDPOINT is unset), against a store that does nothing.
func BenchmarkRecordingOverhead(b *testing.B) {
	st := tenant.MustStream(tenant.MustParse("acme"), "session", "s1")
	ev := eventstore.EventData{Type: "test.Happened"}
	ctx := context.Background()
	b.Run("bare", func(b *testing.B) {
		var s eventstore.Store = nopStore{}
		for b.Loop() {
			_, _ = s.Append(ctx, st, eventstore.Any, ev)
		}
	})
	b.Run("instrumented", func(b *testing.B) {
		s := instrumented.New(nopStore{}, metrics.NewSet(), nil)
		for b.Loop() {
			_, _ = s.Append(ctx, st, eventstore.Any, ev)
		}
	})
	b.Run("instrumented+sdk-tracer", func(b *testing.B) {
		tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(tracetest.NewSpanRecorder()), sdktrace.WithSampler(sdktrace.NeverSample()))
		s := instrumented.New(nopStore{}, metrics.NewSet(), tp.Tracer("bench"))
		for b.Loop() {
			_, _ = s.Append(ctx, st, eventstore.Any, ev)
		}
	})
}
