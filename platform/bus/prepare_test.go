package bus_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/crispy-enigma/crispy/platform/bus"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/readmodel"
)

// Prepare sees the events of its type in batches (not one at a time), and the Apply handler of
// each event finds the value prepared for that event, never another's; events of other types get
// none.
func TestPreparedValuesReachTheirOwnEvents(t *testing.T) {
	t.Parallel()
	store := eventstoretest.NewMemory()
	var evs []eventstore.Event
	for i := range 4 {
		evs = append(evs, appendN(t, store, acme, fmt.Sprintf("a%d", i), typeHappened, 300)...)
		evs = append(evs, appendN(t, store, globex, fmt.Sprintf("o%d", i), typeOther, 7)...)
	}
	var calls, largest, prepared, applied, others atomic.Int64
	wrong := make(chan string, 1)
	r := start(t, projectionConfig(t), store, func(reg bus.Consumers) {
		registerTestEvents(reg.Codec().Add)
		p := reg.Projection("test.prepared", bus.ProjectionOptions{Version: 1})
		bus.Prepare(p, func(_ context.Context, envs []bus.Envelope, evs []happenedEvent) ([]any, error) {
			calls.Add(1)
			if int64(len(envs)) > largest.Load() {
				largest.Store(int64(len(envs)))
			}
			out := make([]any, len(envs))
			for i, env := range envs {
				out[i] = env.ID // the event's own id: Apply checks it gets its own
			}
			return out, nil
		})
		bus.Apply(p, func(ctx context.Context, _ *readmodel.Tx, env bus.Envelope, _ happenedEvent) error {
			applied.Add(1)
			if v, ok := bus.Prepared[string](ctx); ok {
				prepared.Add(1)
				if v != env.ID {
					select {
					case wrong <- fmt.Sprintf("event %s got the value prepared for %s", env.ID, v):
					default:
					}
				}
			}
			return nil
		})
		bus.Apply(p, func(ctx context.Context, _ *readmodel.Tx, _ bus.Envelope, _ otherEvent) error {
			if _, ok := bus.Prepared[string](ctx); ok {
				others.Add(1)
			}
			return nil
		})
	})
	if err := r.b.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	select {
	case w := <-wrong:
		t.Fatal(w)
	default:
	}
	if applied.Load() != 1200 || prepared.Load() != 1200 {
		t.Fatalf("applied %d events of the prepared type, %d with a prepared value; want 1200 and 1200", applied.Load(), prepared.Load())
	}
	if others.Load() != 0 {
		t.Fatalf("%d events of another type found a prepared value", others.Load())
	}
	if largest.Load() < 2 || calls.Load() >= 1200 {
		t.Fatalf("prepare was called %d times, with at most %d events: want batches", calls.Load(), largest.Load())
	}
}

// A Prepare handler that fails or panics costs only what it would have prepared: every event is
// still applied (its Apply handler doing the work itself), once.
func TestAFailingPrepareLeavesTheEventsToTheirHandlers(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"error", "panic"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			store := eventstoretest.NewMemory()
			evs := appendN(t, store, acme, "a", typeHappened, 50)
			evs = append(evs, appendN(t, store, globex, "g", typeHappened, 50)...)
			var c *counting
			var p *bus.Projection
			var prepared atomic.Int64
			r := start(t, projectionConfig(t), store, func(reg bus.Consumers) {
				registerTestEvents(reg.Codec().Add)
				c = &counting{}
				p = reg.Projection("test.prepare-fails", bus.ProjectionOptions{Version: 1})
				bus.Prepare(p, func(context.Context, []bus.Envelope, []happenedEvent) ([]any, error) {
					if how == "panic" {
						panic("prepare bug")
					}
					return nil, errors.New("key store unavailable")
				})
				bus.Apply(p, func(ctx context.Context, tx *readmodel.Tx, env bus.Envelope, ev happenedEvent) error {
					if _, ok := bus.Prepared[any](ctx); ok {
						prepared.Add(1)
					}
					return c.apply(ctx, tx, env, ev.N)
				})
			})
			if err := r.b.Sync(context.Background()); err != nil {
				t.Fatal(err)
			}
			wantCounts(t, readCounts(t, p), evs)
			if err := r.stop(); err != nil {
				t.Fatal(err)
			}
			if got := c.calls.Load(); got != int64(len(evs)) {
				t.Fatalf("applied %d events, want %d", got, len(evs))
			}
			if prepared.Load() != 0 {
				t.Fatalf("%d events found a value a failed prepare never returned", prepared.Load())
			}
		})
	}
}

// A Prepare handler for a type the projection does not apply is a registration mistake: Run refuses.
func TestPrepareWithoutApplyIsRefused(t *testing.T) {
	t.Parallel()
	b, err := bus.New(projectionConfig(t), bus.Deps{Store: eventstoretest.NewMemory()})
	if err != nil {
		t.Fatal(err)
	}
	registerTestEvents(b.Codec().Add)
	p := b.Projection("test.prepare-only", bus.ProjectionOptions{Version: 1})
	bus.Apply(p, func(context.Context, *readmodel.Tx, bus.Envelope, happenedEvent) error { return nil })
	bus.Prepare(p, func(context.Context, []bus.Envelope, []otherEvent) ([]any, error) { return nil, nil })
	if err := b.Run(context.Background()); err == nil {
		t.Fatal("Run accepted a Prepare handler for a type the projection does not apply")
	}
}
