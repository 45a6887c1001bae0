package bus_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/bus"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/health"
	"github.com/crispy-enigma/crispy/platform/readmodel"
)

// dependency is a switchable outside dependency (an index, a provider): while down, handlers fail
// with an unavailable error, and count their attempts.
type dependency struct {
	down     atomic.Bool
	attempts atomic.Int64
}

func (d *dependency) call() error {
	if d.down.Load() {
		d.attempts.Add(1)
		return apperr.Wrap(errors.New("connection refused"), apperr.KindUnavailable, "test.indexUnavailable", "the index is unavailable")
	}
	return nil
}

// writer is a processor that acts on its events through dep, remembering what it acted on.
type writer struct {
	dep *dependency
	mu  sync.Mutex
	ns  []int
}

func (w *writer) register(c bus.Consumers, name string) {
	registerTestEvents(c.Codec().Add)
	bus.Handle(c.Processor(name), func(ctx context.Context, env bus.Envelope, ev happenedEvent) error {
		if err := w.dep.call(); err != nil {
			return err
		}
		w.mu.Lock()
		w.ns = append(w.ns, ev.N)
		w.mu.Unlock()
		return nil
	})
}

func (w *writer) acted() []int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.ns)
}

func TestUnavailableClassifiesDependencyFaults(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{errors.New("bad data"), false},
		{apperr.Invalid("x.y", "body", "no"), false},
		{apperr.New(apperr.KindUnavailable, "x.down", "down"), true},
		{fmt.Errorf("wrapped: %w", apperr.New(apperr.KindUnavailable, "x.down", "down")), true},
		{fmt.Errorf("append: %w", eventstore.ErrStorageUnavailable), true},
		{health.DegradedState("writes refused"), true},
		{health.CatchingUpState("rebuilding", 1, 2), false},
	} {
		if got := bus.Unavailable(c.err); got != c.want {
			t.Errorf("Unavailable(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

// A projection handler whose dependency is unavailable is retried far past MaxRetries until the
// dependency is back: the event is applied, not passed, and /health says degraded meanwhile. A
// handler failing otherwise keeps today's budget (tested by TestAFailingHandlerLeavesNoHalfAppliedBatch).
func TestProjectionWaitsOutAnUnavailableDependency(t *testing.T) {
	t.Parallel()
	store := eventstoretest.NewMemory()
	cfg := projectionConfig(t) // MaxRetries 2, backoff 1-5 ms
	dep := &dependency{}
	inner := &counting{}
	var p *bus.Projection
	r := start(t, cfg, store, func(c bus.Consumers) {
		registerTestEvents(c.Codec().Add)
		p = c.Projection("test.dependent", bus.ProjectionOptions{})
		bus.Apply(p, func(ctx context.Context, tx *readmodel.Tx, env bus.Envelope, ev happenedEvent) error {
			if err := dep.call(); err != nil {
				return err
			}
			return inner.apply(ctx, tx, env, ev.N)
		})
	})
	dep.down.Store(true)
	evs := appendN(t, store, acme, "a", typeHappened, 3)
	deadlineWait(t, func() bool { return dep.attempts.Load() > int64(3*cfg.MaxRetries+3) })
	status, _ := health.Classify(r.b.Check(context.Background()))
	if status != health.Degraded {
		t.Fatalf("/health bus while a projection waits for its dependency: %v, want degraded", r.b.Check(context.Background()))
	}
	dep.down.Store(false)
	if err := r.b.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := readCounts(t, p)
	for _, e := range evs {
		if st.applied[uint64(e.Position)] != 1 {
			t.Fatalf("event %d applied %d times after the dependency came back, want 1", e.Position, st.applied[uint64(e.Position)])
		}
	}
	if err := r.b.Check(context.Background()); err != nil {
		t.Fatalf("/health bus once the dependency is back: %v", err)
	}
}

// The same for a processor (on GoChannel): it waits, is degraded, and then acts on every event once
// and in order.
func TestProcessorWaitsOutAnUnavailableDependency(t *testing.T) {
	t.Parallel()
	store := eventstoretest.NewMemory()
	cfg := projectionConfig(t)
	dep := &dependency{}
	w := &writer{dep: dep}
	r := start(t, cfg, store, func(c bus.Consumers) { w.register(c, "test.writer") })
	dep.down.Store(true)
	appendN(t, store, acme, "a", typeHappened, 4)
	deadlineWait(t, func() bool { return dep.attempts.Load() > int64(3*cfg.MaxRetries+3) })
	if status, _ := health.Classify(r.b.Check(context.Background())); status != health.Degraded {
		t.Fatalf("/health bus while a processor waits for its dependency: %v, want degraded", r.b.Check(context.Background()))
	}
	dep.down.Store(false)
	if err := r.b.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := w.acted(); fmt.Sprint(got) != "[0 1 2 3]" {
		t.Fatalf("processor acted on %v once its dependency was back, want [0 1 2 3]", got)
	}
	if err := r.b.Check(context.Background()); err != nil {
		t.Fatalf("/health bus once the dependency is back: %v", err)
	}
}

// A bus stopped while an in-process processor waits for its dependency stops (before: the nacked
// event was handed back at once, the forwarder's publish never returned and Run hung for ever, so a
// server on the default bus never finished stopping while Elasticsearch was down), and the event it
// gave up, with those after it, is handled by the next run: once each, in order, none lost.
func TestStopWhileAProcessorWaitsForADependencyLosesNothing(t *testing.T) {
	t.Parallel()
	store := eventstoretest.NewMemory()
	cfg := projectionConfig(t)
	dep := &dependency{}
	w, other := &writer{dep: dep}, &writer{dep: &dependency{}}
	register := func(c bus.Consumers) {
		w.register(c, "test.writer")
		other.register(c, "test.other")
	}
	r := start(t, cfg, store, register)
	appendN(t, store, acme, "a", typeHappened, 2)
	if err := r.b.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	dep.down.Store(true)
	appendN(t, store, acme, "a", typeHappened, 3)
	deadlineWait(t, func() bool { return dep.attempts.Load() > 2 })
	stopped := make(chan error, 1)
	go func() { stopped <- r.stop() }()
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("stop: %v", err)
		}
	case <-time.After(waitLimit):
		t.Fatal("the bus did not stop while a processor waited for its dependency")
	}
	dep.down.Store(false)
	r = start(t, cfg, store, register)
	if err := r.b.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, otherGot := w.acted(), other.acted(); fmt.Sprint(got) != "[0 1 0 1 2]" || fmt.Sprint(otherGot) != "[0 1 0 1 2]" {
		t.Fatalf("after the restart the waiting processor acted on %v and the other on %v, want [0 1 0 1 2] each (two events, then three)", got, otherGot)
	}
}
