package instrumented_test

import (
	"context"
	"testing"

	"github.com/VictoriaMetrics/metrics"

	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/eventstore/instrumented"
	"github.com/crispy-enigma/crispy/platform/health"
)

// degradedStore is a store that knows it refuses writes.
type degradedStore struct{ eventstore.Store }

func (degradedStore) Health(context.Context) error { return health.DegradedState("writes refused") }

// /health sees through the decorator to the store's own health; a store without one is ok when it
// answers a read.
func TestCheckHealthSeesThroughTheDecorator(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	deco := instrumented.New(degradedStore{eventstoretest.NewMemory()}, metrics.NewSet(), nil)
	if status, _ := health.Classify(eventstore.CheckHealth(ctx, deco)); status != health.Degraded {
		t.Fatalf("decorated degraded store: %s", status)
	}
	plain := instrumented.New(eventstoretest.NewMemory(), metrics.NewSet(), nil)
	if err := eventstore.CheckHealth(ctx, plain); err != nil {
		t.Fatalf("healthy store: %v", err)
	}
}
