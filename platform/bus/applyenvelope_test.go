package bus_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/crispy-enigma/crispy/platform/bus"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/readmodel"
	"github.com/crispy-enigma/crispy/platform/request"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

const typeCounted = "test.Counted"

// decodes counts how many times a countedEvent's data was decoded, across the test's buses.
var decodes atomic.Int64

// countedEvent counts its decodings.
type countedEvent struct {
	N int `json:"n"`
}

func (c *countedEvent) UnmarshalJSON(b []byte) error {
	decodes.Add(1)
	var v struct {
		N int `json:"n"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	c.N = v.N
	return nil
}

// A type whose every handler takes only the envelope (ApplyEnvelope) is not decoded at all, yet
// every event of it is applied; once another projection on the same cursor takes its data, it is
// decoded once per event for both.
func TestApplyEnvelopeEventsAreNotDecoded(t *testing.T) {
	store := eventstoretest.NewMemory()
	const n = 7
	appendN(t, store, acme, "a", typeCounted, n)
	run := func(withData bool) (envelopes, data int64) {
		var env, dat atomic.Int64
		r := start(t, projectionConfig(t), store, func(reg bus.Consumers) {
			reg.Codec().Add(typeCounted, countedEvent{})
			p := reg.Projection("test.envelopes", bus.ProjectionOptions{Version: 1})
			bus.ApplyEnvelope[countedEvent](p, func(_ context.Context, _ *readmodel.Tx, env2 bus.Envelope) error {
				if env2.Type != typeCounted {
					t.Errorf("envelope of %s", env2.Type)
				}
				env.Add(1)
				return nil
			})
			if withData {
				q := reg.Projection("test.data", bus.ProjectionOptions{Version: 1})
				bus.Apply(q, func(_ context.Context, _ *readmodel.Tx, _ bus.Envelope, ev countedEvent) error {
					if ev.N < 0 || ev.N >= n {
						t.Errorf("decoded n = %d", ev.N)
					}
					dat.Add(1)
					return nil
				})
			}
		})
		if err := r.b.Sync(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := r.stop(); err != nil {
			t.Fatal(err)
		}
		return env.Load(), dat.Load()
	}
	decodes.Store(0)
	if env, _ := run(false); env != n || decodes.Load() != 0 {
		t.Fatalf("envelope handler alone: applied %d of %d events, decoded %d times (want none)", env, n, decodes.Load())
	}
	decodes.Store(0)
	if env, dat := run(true); env != n || dat != n || decodes.Load() != n {
		t.Fatalf("beside a data handler: applied %d and %d of %d events, decoded %d times (want %d)", env, dat, n, decodes.Load(), n)
	}
}

// A type only a projection with a cursor of its own takes is decoded by that cursor alone, once
// per event: not by the main cursor too, whose projections do not take it.
func TestOwnCursorTypesAreNotDecodedOnTheMainCursor(t *testing.T) {
	store := eventstoretest.NewMemory()
	const n = 5
	appendN(t, store, acme, "a", typeCounted, n)
	appendN(t, store, acme, "b", typeHappened, n)
	var own, shared atomic.Int64
	decodes.Store(0)
	r := start(t, projectionConfig(t), store, func(reg bus.Consumers) {
		reg.Codec().Add(typeCounted, countedEvent{})
		registerTestEvents(reg.Codec().Add)
		p := reg.Projection("test.shared", bus.ProjectionOptions{Version: 1})
		bus.Apply(p, func(context.Context, *readmodel.Tx, bus.Envelope, happenedEvent) error {
			shared.Add(1)
			return nil
		})
		q := reg.Projection("test.own", bus.ProjectionOptions{Version: 1, OwnCursor: true})
		bus.Apply(q, func(context.Context, *readmodel.Tx, bus.Envelope, countedEvent) error {
			own.Add(1)
			return nil
		})
	})
	if err := r.b.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if own.Load() != n || shared.Load() != n || decodes.Load() != n {
		t.Fatalf("applied %d (own cursor) and %d (shared) of %d each; the own cursor's type decoded %d times, want %d", own.Load(), shared.Load(), n, decodes.Load(), n)
	}
}

// A projection handler's context carries the event's own tenant and request id, whatever came
// before it: runs of one request, the same request id under another tenant, a request again
// after another.
func TestProjectionHandlerContextIsTheEvents(t *testing.T) {
	store := eventstoretest.NewMemory()
	type at struct {
		tid tenant.ID
		req string
	}
	order := []at{{acme, "r1"}, {acme, "r1"}, {acme, "r2"}, {globex, "r2"}, {globex, "r2"}, {acme, "r2"}, {acme, "r1"}, {acme, ""}, {globex, ""}}
	for i, a := range order {
		d, err := eventstore.NewEventData(typeHappened, map[string]any{"n": i})
		if err != nil {
			t.Fatal(err)
		}
		d.RequestID = a.req
		if _, err := store.Append(context.Background(), tenant.MustStream(a.tid, "thing", "x"), eventstore.Any, d); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	var got []at
	var actors []string
	r := start(t, projectionConfig(t), store, func(reg bus.Consumers) {
		registerTestEvents(reg.Codec().Add)
		p := reg.Projection("test.context", bus.ProjectionOptions{Version: 1})
		bus.Apply(p, func(ctx context.Context, _ *readmodel.Tx, env bus.Envelope, _ happenedEvent) error {
			tid, _ := tenant.FromContext(ctx)
			info := request.From(ctx)
			if tid != env.Tenant || info.ID != env.RequestID {
				t.Errorf("event %d of %s, request %q: handler's context has %s, request %q", env.Position, env.Tenant, env.RequestID, tid, info.ID)
			}
			mu.Lock()
			got = append(got, at{tid, info.ID})
			actors = append(actors, info.Actor)
			mu.Unlock()
			return nil
		})
	})
	if err := r.b.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(got) != fmt.Sprint(order) {
		t.Fatalf("handler contexts %v, want %v", got, order)
	}
	for _, a := range actors {
		if a != "system:bus/test.context" {
			t.Fatalf("actor %q in a handler's context", a)
		}
	}
}
