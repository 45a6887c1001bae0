package traced_test

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/crispy-enigma/crispy/platform/search"
	"github.com/crispy-enigma/crispy/platform/search/embedded"
	"github.com/crispy-enigma/crispy/platform/search/searchtest"
	"github.com/crispy-enigma/crispy/platform/search/traced"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// The wrapper is an index like any other: the acceptance suite holds.
func TestTracedIndexPassesTheSuite(t *testing.T) {
	searchtest.Run(t, func(t *testing.T) search.Index {
		idx, err := embedded.Open(embedded.Config{})
		if err != nil {
			t.Fatal(err)
		}
		return traced.New(idx, sdktrace.NewTracerProvider().Tracer("test"))
	})
}

func TestSearchIsASpanWithItsTenant(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	idx, err := embedded.Open(embedded.Config{})
	if err != nil {
		t.Fatal(err)
	}
	x := traced.New(idx, sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)).Tracer("test"))
	acme := tenant.MustParse("acme")
	if err := x.Upsert(context.Background(), acme, []search.Chunk{{DocID: "d", ChunkID: "d#0", Text: "x", Vector: []float32{1, 0, 0}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := x.Search(context.Background(), acme, search.Query{Vector: []float32{1, 0, 0}, K: 3}); err != nil {
		t.Fatal(err)
	}
	spans := rec.Ended()
	if len(spans) != 2 || spans[0].Name() != "index.upsert" || spans[1].Name() != "index.search" {
		t.Fatalf("spans %v", spans)
	}
	attrs := map[string]string{}
	for _, a := range spans[1].Attributes() {
		attrs[string(a.Key)] = a.Value.Emit()
	}
	if attrs["crispy.tenant"] != "acme" || attrs["crispy.index.hits"] != "1" {
		t.Fatalf("search span attributes %v", attrs)
	}
}
