package bus_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/platform/bus"
	"github.com/crispy-enigma/crispy/platform/bus/bustest"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

const (
	typeHappened = "test.Happened"
	typeOther    = "test.OtherHappened"
	typeBlocked  = "test.BlockingHappened"
	// waitLimit only bounds a wait that would otherwise hang a broken test; nothing asserts speed.
	waitLimit = 60 * time.Second
)

var (
	acme   = tenant.MustParse("acme")
	globex = tenant.MustParse("globex")
)

// goChannelConfig is the default transport.
func goChannelConfig(t *testing.T) bus.Config {
	return bus.Config{CheckpointDir: t.TempDir(), RetryInitial: time.Millisecond, RetryMax: 5 * time.Millisecond, MaxRetries: 2,
		CheckpointInterval: 20 * time.Millisecond}
}

// natsConfig is the JetStream transport against a real server, with a stream of its own that is
// deleted after the test.
func natsConfig(t *testing.T) bus.Config {
	url, prefix := bustest.NATS(t, "bus")
	cfg := goChannelConfig(t)
	cfg.Transport, cfg.Prefix, cfg.AckWait = url, prefix, 2*time.Second
	return cfg
}

// running is a bus started by start.
type running struct {
	b    *bus.Bus
	stop func() error
}

// start builds a bus, lets register add its consumers, runs it, and waits until projections are warm.
func start(t *testing.T, cfg bus.Config, store eventstore.Store, register func(bus.Consumers)) running {
	t.Helper()
	b, err := bus.New(cfg, bus.Deps{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	register(b)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	wctx, wcancel := context.WithTimeout(context.Background(), waitLimit)
	defer wcancel()
	if err := b.WaitCaughtUp(wctx); err != nil {
		cancel()
		t.Fatalf("wait caught up: %v (run: %v)", err, <-done)
	}
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() { cancel(); runErr = <-done })
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	return running{b: b, stop: stop}
}

// recorder is a processor's handler that remembers what it was given and under which tenant.
type recorder struct {
	mu      sync.Mutex
	events  []bus.Envelope
	tenants []tenant.ID
}

// processor registers a processor named name that records every event of the given types
// (typeHappened and typeOther when none are given).
func (r *recorder) processor(c bus.Consumers, name string, types ...string) {
	registerTestEvents(c.Codec().Add)
	q := c.Processor(name)
	if len(types) == 0 {
		types = []string{typeHappened, typeOther}
	}
	for _, typ := range types {
		switch typ {
		case typeHappened:
			bus.Handle(q, func(ctx context.Context, env bus.Envelope, _ happenedEvent) error { return r.handle(ctx, env) })
		case typeOther:
			bus.Handle(q, func(ctx context.Context, env bus.Envelope, _ otherEvent) error { return r.handle(ctx, env) })
		case typeBlocked:
			bus.Handle(q, func(ctx context.Context, env bus.Envelope, _ blockedEvent) error { return r.handle(ctx, env) })
		}
	}
}

func (r *recorder) handle(ctx context.Context, env bus.Envelope) error {
	t, _ := tenant.FromContext(ctx)
	r.mu.Lock()
	r.events = append(r.events, env)
	r.tenants = append(r.tenants, t)
	r.mu.Unlock()
	return nil
}

func (r *recorder) snapshot() ([]bus.Envelope, []tenant.ID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]bus.Envelope(nil), r.events...), append([]tenant.ID(nil), r.tenants...)
}

// waitFor waits until the recorder holds n events and returns them.
func (r *recorder) waitFor(t *testing.T, n int) []bus.Envelope {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		evs, _ := r.snapshot()
		if len(evs) >= n {
			return evs
		}
		if time.Now().After(deadline) {
			t.Fatalf("handler got %d events, want %d", len(evs), n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// appendN appends n events of typ to one stream of tenant tid and returns the recorded events.
func appendN(t *testing.T, store eventstore.Store, tid tenant.ID, entity, typ string, n int) []eventstore.Event {
	t.Helper()
	var out []eventstore.Event
	for i := range n {
		d, err := eventstore.NewEventData(typ, map[string]any{"n": i, "tenant": tid.String()})
		if err != nil {
			t.Fatal(err)
		}
		res, err := store.Append(context.Background(), tenant.MustStream(tid, "thing", entity), eventstore.Any, d)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, res.Events...)
	}
	return out
}

func ids(evs []eventstore.Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.ID
	}
	return out
}

func envIDs(envs []bus.Envelope) []string {
	out := make([]string, len(envs))
	for i, e := range envs {
		out[i] = e.ID
	}
	return out
}

// deadlineWait polls cond until it holds (or fails the test after waitLimit).
func deadlineWait(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(2 * time.Millisecond)
	}
}
