package bus_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/crispy-enigma/crispy/platform/bus"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/readmodel"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// acted records a typed processor's calls.
type acted struct {
	mu   sync.Mutex
	envs []bus.Envelope
	ns   []int
}

func (a *acted) register(reg bus.Consumers, name string) {
	registerTestEvents(reg.Codec().Add)
	q := reg.Processor(name)
	bus.Handle(q, func(ctx context.Context, env bus.Envelope, ev happenedEvent) error {
		if t, ok := tenant.FromContext(ctx); !ok || t != env.Tenant || ev.Tenant != env.Tenant.String() {
			return errors.New("processor called outside the event's tenant")
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		a.envs = append(a.envs, env)
		a.ns = append(a.ns, ev.N)
		return nil
	})
}

func (a *acted) ids() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]string, len(a.envs))
	for i, e := range a.envs {
		out[i] = e.ID
	}
	return out
}

func wantIDs(evs []eventstore.Event, typ string) []string {
	var out []string
	for _, e := range evs {
		if e.Type == typ {
			out = append(out, e.ID)
		}
	}
	return out
}

// A typed processor gets its events decoded, in order, with their envelope, and after a restart
// only the events it had not finished.
func TestTypedProcessorGoChannel(t *testing.T) {
	t.Parallel()
	store := eventstoretest.NewMemory()
	cfg := projectionConfig(t)
	a := &acted{}
	r := start(t, cfg, store, func(reg bus.Consumers) { a.register(reg, "test.act") })
	var evs []eventstore.Event
	evs = append(evs, appendN(t, store, acme, "a", typeHappened, 5)...)
	evs = append(evs, appendN(t, store, globex, "g", typeOther, 3)...)
	evs = append(evs, appendN(t, store, globex, "g", typeHappened, 4)...)
	if err := r.b.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, want := a.ids(), wantIDs(evs, typeHappened); !slices.Equal(got, want) {
		t.Fatalf("processor got %v, want %v", got, want)
	}
	if a.ns[5] != 0 || a.envs[5].Tenant != globex || a.envs[5].Position != evs[8].Position || a.envs[5].Type != typeHappened {
		t.Fatalf("decoded %d with envelope %+v", a.ns[5], a.envs[5])
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	b := &acted{}
	r = start(t, cfg, store, func(reg bus.Consumers) { b.register(reg, "test.act") })
	fresh := appendN(t, store, acme, "fresh", typeHappened, 2)
	if err := r.b.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, want := b.ids(), wantIDs(fresh, typeHappened); !slices.Equal(got, want) {
		t.Fatalf("after a restart the processor got %v, want only %v", got, want)
	}
}

// Two replicas on one store and one NATS JetStream: a processor acts once per deployment, each event
// on one replica or the other, never both; the projections of each replica see every event.
func TestIntegrationNATSProcessorActsOncePerDeployment(t *testing.T) {
	t.Parallel()
	cfg := natsConfig(t)
	cfg.ReadModelDir = t.TempDir()
	cfg2 := cfg
	cfg2.CheckpointDir, cfg2.ReadModelDir = t.TempDir(), t.TempDir()
	store := eventstoretest.NewMemory()
	one, two := &acted{}, &acted{}
	var p1, p2 *bus.Projection
	r1 := start(t, cfg, store, func(reg bus.Consumers) {
		one.register(reg, "test.act-once")
		p1 = (&counting{}).register(reg, "test.replica-counts")
	})
	r2 := start(t, cfg2, store, func(reg bus.Consumers) {
		two.register(reg, "test.act-once")
		p2 = (&counting{}).register(reg, "test.replica-counts")
	})
	const n = 60
	var evs []eventstore.Event
	for range n / 2 {
		evs = append(evs, appendN(t, store, acme, "r", typeHappened, 1)...)
		evs = append(evs, appendN(t, store, globex, "r", typeHappened, 1)...)
	}
	deadlineWait(t, func() bool { return len(one.ids())+len(two.ids()) >= n })
	for _, r := range []running{r1, r2} {
		if err := r.b.Sync(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	count := map[string]int{}
	for _, id := range append(one.ids(), two.ids()...) {
		count[id]++
	}
	for _, e := range evs {
		if count[e.ID] != 1 {
			t.Errorf("event %s acted on %d times across replicas, want once", e.ID, count[e.ID])
		}
	}
	wantCounts(t, readCounts(t, p1), evs)
	wantCounts(t, readCounts(t, p2), evs)
	t.Logf("replica one acted on %d, replica two on %d", len(one.ids()), len(two.ids()))
}

// A replica started on a new data folder joins a deployment whose stream holds the history: its
// processors' cursor starts after the stream's last event, so it does not publish the history again
// (past the duplicate window, the processors would act on every old event a second time).
func TestIntegrationNATSNewReplicaDoesNotRepublishHistory(t *testing.T) {
	t.Parallel()
	cfg := natsConfig(t)
	cfg.ReadModelDir = t.TempDir()
	cfg.DuplicateWindow = time.Second // so that the test passes it, not so that anything is faster
	store := eventstoretest.NewMemory()
	one := &acted{}
	r1 := start(t, cfg, store, func(reg bus.Consumers) { one.register(reg, "test.join") })
	old := appendN(t, store, acme, "old", typeHappened, 30)
	deadlineWait(t, func() bool { return len(one.ids()) >= len(old) })
	if err := r1.stop(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(cfg.DuplicateWindow + 500*time.Millisecond) // the broker would no longer drop a republished id

	cfg2 := cfg
	cfg2.CheckpointDir, cfg2.ReadModelDir = t.TempDir(), t.TempDir()
	two := &acted{}
	r2 := start(t, cfg2, store, func(reg bus.Consumers) { two.register(reg, "test.join") })
	fresh := appendN(t, store, globex, "fresh", typeHappened, 4)
	deadlineWait(t, func() bool { return len(two.ids()) >= len(fresh) })
	if err := r2.b.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, want := two.ids(), wantIDs(fresh, typeHappened); !slices.Equal(got, want) {
		t.Fatalf("the new replica's processor acted on %d events, want only the %d new ones (history republished?)", len(got), len(want))
	}
}

// corruptAfter is a store whose subscriptions fail as a damaged log does once they pass position at.
type corruptAfter struct {
	eventstore.Store
	at eventstore.Position
}

func (s corruptAfter) Subscribe(ctx context.Context, o eventstore.SubscribeOptions, h eventstore.Handler) error {
	err := s.Store.Subscribe(ctx, eventstore.SubscribeOptions{From: o.From}, func(ctx context.Context, e eventstore.Event) error {
		if e.Position > s.at {
			return fmt.Errorf("read event at %d: %w", e.Position, eventstore.ErrCorrupt)
		}
		return h(ctx, e)
	})
	return err
}

// A store that cannot be read past an event stops the bus with the cause, instead of retrying the
// same bytes for ever while the read models stay short of the store (before: Run never returned and
// the server waited for a catch-up that could not happen).
func TestCorruptStoreStopsTheBus(t *testing.T) {
	t.Parallel()
	mem := eventstoretest.NewMemory()
	appendN(t, mem, acme, "a", typeHappened, 5)
	cfg := projectionConfig(t)
	b, err := bus.New(cfg, bus.Deps{Store: corruptAfter{Store: mem, at: 3}})
	if err != nil {
		t.Fatal(err)
	}
	(&counting{}).register(b, "test.corrupt-counts")
	(&acted{}).register(b, "test.corrupt-act")
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	err = b.Run(ctx)
	if !errors.Is(err, eventstore.ErrCorrupt) || !strings.Contains(err.Error(), "crispy verify") || ctx.Err() != nil {
		t.Fatalf("Run returned %v (context: %v), want the corruption named with the way to locate it", err, ctx.Err())
	}
}

// In process, the processors' cursor passes over the events no processor handles without
// publishing them (a message and a router pass each, for nothing), and still moves past them: the
// processor gets its events in order, the bus has no lag, and a restart starts after them.
func TestInProcessProcessorsSkipEventsNoneHandles(t *testing.T) {
	t.Parallel()
	store := eventstoretest.NewMemory()
	set := metrics.NewSet()
	cfg := goChannelConfig(t)
	b, err := bus.New(cfg, bus.Deps{Store: store, Metrics: set})
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	rec.processor(b, "test.happened-only", typeHappened)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	appendN(t, store, acme, "o", typeOther, 50)
	want := appendN(t, store, acme, "h", typeHappened, 2)
	appendN(t, store, globex, "o", typeOther, 30)
	if err := b.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	got := rec.waitFor(t, 2)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(envIDs(got), ids(want)) {
		t.Fatalf("processor got %v, want %v", envIDs(got), ids(want))
	}
	var sb strings.Builder
	set.WritePrometheus(&sb)
	for _, line := range []string{`crispy_bus_published_events_total 2`, `crispy_bus_lag_events 0`} {
		if !strings.Contains(sb.String(), line) {
			t.Errorf("metrics lack %q:\n%s", line, sb.String())
		}
	}
	// The forwarder's checkpoint stands after the last event: a restart publishes nothing again.
	again := &recorder{}
	r := start(t, cfg, store, func(c bus.Consumers) { again.processor(c, "test.happened-only", typeHappened) })
	if err := r.b.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if evs, _ := again.snapshot(); len(evs) != 0 {
		t.Fatalf("after a restart the processor got %d events again", len(evs))
	}
}

// In process one message carries a processor's events of a forwarded batch: events of two tenants
// and two types, all in the store before the bus starts (so they are forwarded together), reach
// each processor only when it handles their type, in the store's order, each handled under its
// own tenant (never the tenant of the batch's first event).
func TestInProcessBatchKeepsEachEventsTenantAndOnlyTheProcessorsTypes(t *testing.T) {
	t.Parallel()
	store := eventstoretest.NewMemory()
	var evs []eventstore.Event
	for i := range 4 {
		evs = append(evs, appendN(t, store, acme, "a", typeHappened, 2)...)
		evs = append(evs, appendN(t, store, globex, "g", typeOther, 1)...)
		evs = append(evs, appendN(t, store, globex, "g", typeHappened, i%2)...)
	}
	happened, other := &recorder{}, &recorder{}
	r := start(t, goChannelConfig(t), store, func(reg bus.Consumers) {
		happened.processor(reg, "test.happened", typeHappened)
		other.processor(reg, "test.other", typeOther)
	})
	if err := r.b.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		rec *recorder
		typ string
	}{{happened, typeHappened}, {other, typeOther}} {
		got, tenants := c.rec.snapshot()
		want := wantIDs(evs, c.typ)
		if len(got) != len(want) {
			t.Fatalf("%s processor got %d events, want %d", c.typ, len(got), len(want))
		}
		byID := map[string]eventstore.Event{}
		for _, e := range evs {
			byID[e.ID] = e
		}
		for i, env := range got {
			if env.ID != want[i] {
				t.Fatalf("%s processor: event %d is %s, want %s (order or type)", c.typ, i, env.ID, want[i])
			}
			if e := byID[env.ID]; tenants[i] != e.Tenant || env.Tenant != e.Tenant {
				t.Fatalf("%s processor: event %s of %s handled under tenant %s (envelope %s)", c.typ, env.ID, e.Tenant, tenants[i], env.Tenant)
			}
		}
	}
}

// On a new data folder over a store with history, the processors' cursor (far behind) starts once
// the read models on the shared cursor have caught up, as the own cursors do: they have the cores
// first. Every event still reaches the processor, in order.
func TestFarBehindProcessorsStartAfterTheSharedReadModels(t *testing.T) {
	t.Parallel()
	store := eventstoretest.NewMemory()
	evs := appendN(t, store, acme, "a", typeHappened, 40)
	cfg := projectionConfig(t)
	cfg.CatchUpCommitEvery = 10
	var proj *bus.Projection
	var early atomic.Int64
	var handled []string
	var mu sync.Mutex
	r := start(t, cfg, store, func(reg bus.Consumers) {
		registerTestEvents(reg.Codec().Add)
		proj = reg.Projection("test.slowish", bus.ProjectionOptions{Version: 1})
		bus.Apply(proj, func(context.Context, *readmodel.Tx, bus.Envelope, happenedEvent) error {
			time.Sleep(time.Millisecond) // the processor would be done long before without the wait
			return nil
		})
		q := reg.Processor("test.after")
		bus.Handle(q, func(_ context.Context, env bus.Envelope, _ happenedEvent) error {
			if proj.Ready() != nil {
				early.Add(1)
			}
			mu.Lock()
			handled = append(handled, env.ID)
			mu.Unlock()
			return nil
		})
	})
	if err := r.b.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := early.Load(); n != 0 {
		t.Fatalf("the processor handled %d events before the read model had caught up", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(handled, ids(evs)) {
		t.Fatalf("processor got %v, want %v", handled, ids(evs))
	}
}
