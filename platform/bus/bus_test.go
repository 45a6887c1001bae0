package bus_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/VictoriaMetrics/metrics"

	"github.com/crispy-enigma/crispy/platform/bus"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/embedded"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

func TestAcceptanceGoChannel(t *testing.T) {
	t.Parallel()
	runAcceptance(t, goChannelConfig(t))
}

func TestIntegrationNATSAcceptance(t *testing.T) {
	t.Parallel()
	runAcceptance(t, natsConfig(t))
}

// perTenant is a projection keyed by tenant, as modules' read models are.
type perTenant struct {
	mu  sync.Mutex
	ids map[tenant.ID][]string
	pos []eventstore.Position
}

func (p *perTenant) handle(ctx context.Context, e eventstore.Event) error {
	t, ok := tenant.FromContext(ctx)
	if !ok {
		return errors.New("no tenant in context")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ids == nil {
		p.ids = map[tenant.ID][]string{}
	}
	p.ids[t] = append(p.ids[t], e.ID)
	p.pos = append(p.pos, e.Position)
	return nil
}

func (p *perTenant) state() (map[tenant.ID][]string, []eventstore.Position) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[tenant.ID][]string{}
	for k, v := range p.ids {
		out[k] = slices.Clone(v)
	}
	return out, slices.Clone(p.pos)
}

// runAcceptance is the one body every transport runs: order, filtering, tenant isolation, restart
// without re-handling, and projections rebuilt to the same state.
func runAcceptance(t *testing.T, cfg bus.Config) {
	store, err := embedded.Open(t.TempDir(), embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()

	// Some history before the bus ever runs, so projections catch up on start.
	var appended []eventstore.Event
	appended = append(appended, appendN(t, store, acme, "a", typeHappened, 5)...)
	appended = append(appended, appendN(t, store, globex, "g", typeOther, 5)...)

	all, happened, proj := &recorder{}, &recorder{}, &perTenant{}
	r := start(t, cfg, store, func(reg bus.Registry) {
		reg.On("test.all", nil, all.handle)
		reg.On("test.happened-only", []string{typeHappened}, happened.handle)
		reg.Project("test.per-tenant", nil, proj.handle)
	})
	// Projections are warm when WaitCaughtUp returns.
	if state, _ := proj.state(); len(state[acme]) != 5 || len(state[globex]) != 5 {
		t.Fatalf("projection not caught up at WaitCaughtUp: %d acme, %d globex", len(state[acme]), len(state[globex]))
	}
	for i := range 10 {
		tid, typ := acme, typeHappened
		if i%2 == 1 {
			tid, typ = globex, typeOther
		}
		if i%3 == 0 {
			typ = typeOther
		}
		appended = append(appended, appendN(t, store, tid, "x", typ, 2)...)
	}

	t.Run("every event forwarded in order", func(t *testing.T) {
		got := all.waitFor(t, len(appended))
		if !slices.Equal(ids(got), ids(appended)) {
			t.Fatalf("forwarded out of order or incomplete:\n got %v\nwant %v", ids(got), ids(appended))
		}
	})
	t.Run("handler sees only its types", func(t *testing.T) {
		var want []eventstore.Event
		for _, e := range appended {
			if e.Type == typeHappened {
				want = append(want, e)
			}
		}
		got := happened.waitFor(t, len(want))
		if !slices.Equal(ids(got), ids(want)) {
			t.Fatalf("got %v, want %v", ids(got), ids(want))
		}
	})
	t.Run("handler context carries the event's tenant", func(t *testing.T) {
		evs, tenants := all.snapshot()
		for i, e := range evs {
			if tenants[i] != e.Tenant || !strings.HasPrefix(e.Stream, e.Tenant.StreamPrefix()) {
				t.Fatalf("event %s of %s in %s delivered under tenant %q", e.ID, e.Tenant, e.Stream, tenants[i])
			}
		}
	})
	want := map[tenant.ID][]string{}
	for _, e := range appended {
		want[e.Tenant] = append(want[e.Tenant], e.ID)
	}
	t.Run("projection keyed by tenant never mixes them", func(t *testing.T) {
		waitState(t, proj, len(appended))
		state, pos := proj.state()
		if !slices.Equal(state[acme], want[acme]) || !slices.Equal(state[globex], want[globex]) || len(state) != 2 {
			t.Fatalf("projection state %v, want %v", state, want)
		}
		if !slices.IsSorted(pos) || len(slices.Compact(slices.Clone(pos))) != len(pos) {
			t.Fatalf("projection saw positions out of order or twice: %v", pos)
		}
	})

	if err := r.stop(); err != nil {
		t.Fatalf("clean stop: %v", err)
	}
	// As if the process had crashed before its last forwarder checkpoint: everything is forwarded
	// again, and no handler may handle any of it twice.
	if err := os.Remove(filepath.Join(cfg.CheckpointDir, "forwarder.json")); err != nil {
		t.Fatal(err)
	}

	all2, proj2 := &recorder{}, &perTenant{}
	start(t, cfg, store, func(reg bus.Registry) {
		reg.On("test.all", nil, all2.handle)
		reg.Project("test.per-tenant", nil, proj2.handle)
	})
	t.Run("projection rebuilt on restart gives the same state", func(t *testing.T) {
		state, _ := proj2.state()
		if !slices.Equal(state[acme], want[acme]) || !slices.Equal(state[globex], want[globex]) || len(state) != 2 {
			t.Fatalf("rebuilt %v, want %v", state, want)
		}
	})
	fresh := appendN(t, store, globex, "after", typeHappened, 3)
	t.Run("after restart only new events are handled", func(t *testing.T) {
		// Republished old events would arrive before these, so the first three tell.
		got := all2.waitFor(t, len(fresh))
		if !slices.Equal(ids(got[:len(fresh)]), ids(fresh)) {
			t.Fatalf("after restart got %v, want only %v", ids(got), ids(fresh))
		}
	})
}

func waitState(t *testing.T, p *perTenant, n int) {
	t.Helper()
	deadlineWait(t, func() bool { _, pos := p.state(); return len(pos) >= n })
}

func TestFailingHandlerIsRetriedThenPassedAndCounted(t *testing.T) {
	t.Parallel()
	store := eventstoretest.NewMemory()
	set := metrics.NewSet()
	cfg := goChannelConfig(t)
	b, err := bus.New(cfg, bus.Deps{Store: store, Metrics: set})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	attempts := map[string]int{}
	after := &recorder{}
	b.On("test.flaky", nil, func(ctx context.Context, e eventstore.Event) error {
		mu.Lock()
		attempts[e.ID]++
		mu.Unlock()
		var d struct{ N int }
		if err := e.Decode(&d); err != nil {
			return err
		}
		switch d.N {
		case 0:
			return errors.New("always fails")
		case 1:
			panic("handler bug")
		}
		return after.handle(ctx, e)
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	evs := appendN(t, store, acme, "f", typeHappened, 3)
	got := after.waitFor(t, 1)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got[0].ID != evs[2].ID {
		t.Fatalf("the event after two failing ones was not handled: %v", ids(got))
	}
	// 1 try + MaxRetries retries each, then passed on.
	if attempts[evs[0].ID] != cfg.MaxRetries+1 || attempts[evs[1].ID] != cfg.MaxRetries+1 {
		t.Fatalf("attempts %v, want %d for each failing event", attempts, cfg.MaxRetries+1)
	}
	var sb strings.Builder
	set.WritePrometheus(&sb)
	for _, line := range []string{
		`crispy_bus_failed_events_total{consumer="test.flaky"} 2`,
		`crispy_bus_handled_events_total{consumer="test.flaky"} 1`,
		`crispy_bus_published_events_total 3`,
		`crispy_bus_lag_events 0`,
	} {
		if !strings.Contains(sb.String(), line) {
			t.Errorf("metrics lack %q:\n%s", line, sb.String())
		}
	}
}

func TestCheckAndLag(t *testing.T) {
	t.Parallel()
	store := eventstoretest.NewMemory()
	appendN(t, store, acme, "l", typeHappened, 4)
	b, err := bus.New(goChannelConfig(t), bus.Deps{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Check(context.Background()); err == nil {
		t.Fatal("Check before Run must fail")
	}
	if got := b.Lag(); got != 4 {
		t.Fatalf("lag before forwarding = %d, want 4", got)
	}
	seen := &recorder{}
	b.On("test.lag", nil, seen.handle)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	if err := b.WaitCaughtUp(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := b.Check(context.Background()); err != nil {
		t.Fatalf("Check while running: %v", err)
	}
	seen.waitFor(t, 4)
	deadlineWait(t, func() bool { return b.Lag() == 0 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := b.Check(context.Background()); err == nil {
		t.Fatal("Check after stop must fail")
	}
	if err := b.Run(context.Background()); err == nil {
		t.Fatal("a second Run must fail")
	}
}

func TestRegistrationErrors(t *testing.T) {
	t.Parallel()
	for name, reg := range map[string]func(*bus.Bus){
		"duplicate name": func(b *bus.Bus) {
			b.On("x", nil, func(context.Context, eventstore.Event) error { return nil })
			b.Project("x", nil, func(context.Context, eventstore.Event) error { return nil })
		},
		"empty name": func(b *bus.Bus) { b.On("", nil, func(context.Context, eventstore.Event) error { return nil }) },
	} {
		t.Run(name, func(t *testing.T) {
			b, err := bus.New(goChannelConfig(t), bus.Deps{Store: eventstoretest.NewMemory()})
			if err != nil {
				t.Fatal(err)
			}
			reg(b)
			if err := b.Run(context.Background()); err == nil {
				t.Fatal("Run must refuse a bad registration")
			}
			ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
			defer cancel()
			if err := b.WaitCaughtUp(ctx); err == nil || errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("WaitCaughtUp after a failed Run = %v, want its own error", err)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  bus.Config
		ok   bool
	}{
		{"defaults", bus.Config{}, true},
		{"nats url", bus.Config{Transport: "nats://127.0.0.1:4222"}, true},
		{"unknown transport", bus.Config{Transport: "kafka"}, false},
		{"http url", bus.Config{Transport: "http://127.0.0.1:4222"}, false},
		{"prefix with a dot", bus.Config{Prefix: "a.b"}, false},
		{"negative retries", bus.Config{MaxRetries: -1}, false},
		{"window above max age", bus.Config{DuplicateWindow: 2 * 3600e9, MaxAge: 3600e9}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.WithDefaults().Validate()
			if (err == nil) != tc.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tc.ok)
			}
			_, err = bus.New(tc.cfg, bus.Deps{Store: eventstoretest.NewMemory()})
			if (err == nil) != tc.ok {
				t.Fatalf("New() = %v, want ok=%v", err, tc.ok)
			}
		})
	}
	if _, err := bus.New(bus.Config{}, bus.Deps{}); err == nil {
		t.Fatal("New without a store must fail")
	}
	if err := (bus.Config{Transport: "http://bus:s3cret@127.0.0.1:4222"}).WithDefaults().Validate(); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("a bad transport must be refused without its password: %v", err)
	}
}

// The store's last event at start may be unreadable (a truncated stream): no subscription ever
// delivers it, and WaitCaughtUp must still return once the projection has everything readable.
func TestWaitCaughtUpWhenTheLastEventIsUnreadable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := eventstoretest.NewMemory()
	readable := appendN(t, store, acme, "kept", typeHappened, 3)
	appendN(t, store, acme, "gone", typeHappened, 1)
	one := uint64(1)
	if err := store.SetStreamMetadata(ctx, tenant.MustStream(acme, "thing", "gone"), eventstore.StreamMetadata{TruncateBefore: &one}); err != nil {
		t.Fatal(err)
	}
	proj := &recorder{}
	cfg := goChannelConfig(t)
	start(t, cfg, store, func(reg bus.Registry) { reg.Project("test.kept", nil, proj.handle) })
	got, _ := proj.snapshot()
	if !slices.Equal(ids(got), ids(readable)) {
		t.Fatalf("caught up with %v, want %v", ids(got), ids(readable))
	}
}

// Two replicas over one store (as with EventStoreDB) both forward every event and both run the
// same durable handler: the broker drops the second copy of each event and gives each event to one
// replica, so it is handled once in all.
func TestIntegrationNATSReplicasShareAHandler(t *testing.T) {
	t.Parallel()
	cfg := natsConfig(t)
	store := eventstoretest.NewMemory()
	one, two := &recorder{}, &recorder{}
	cfg2 := cfg
	cfg2.CheckpointDir = t.TempDir()
	start(t, cfg, store, func(reg bus.Registry) { reg.On("test.shared", nil, one.handle) })
	start(t, cfg2, store, func(reg bus.Registry) { reg.On("test.shared", nil, two.handle) })
	const n = 60
	var want []eventstore.Event
	for range n / 2 {
		want = append(want, appendN(t, store, acme, "r", typeHappened, 1)...)
		want = append(want, appendN(t, store, globex, "r", typeOther, 1)...)
	}
	deadlineWait(t, func() bool {
		a, _ := one.snapshot()
		b, _ := two.snapshot()
		return len(a)+len(b) >= n
	})
	a, _ := one.snapshot()
	b, _ := two.snapshot()
	count := map[string]int{}
	for _, e := range append(a, b...) {
		count[e.ID]++
	}
	for _, e := range want {
		if count[e.ID] != 1 {
			t.Errorf("event %s handled %d times across replicas, want once", e.ID, count[e.ID])
		}
	}
	t.Logf("replica one handled %d, replica two %d", len(a), len(b))
}

func TestRunFailsWhenTheBrokerIsUnreachable(t *testing.T) {
	t.Parallel()
	cfg := goChannelConfig(t)
	cfg.Transport = "nats://127.0.0.1:1"
	b, err := bus.New(cfg, bus.Deps{Store: eventstoretest.NewMemory()})
	if err != nil {
		t.Fatal(err)
	}
	b.On("test.unreachable", nil, func(context.Context, eventstore.Event) error { return nil })
	if err := b.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "connect to NATS") {
		t.Fatalf("Run = %v, want a connection error", err)
	}
	if err := b.Check(context.Background()); err == nil {
		t.Fatal("Check must fail when the bus never ran")
	}
}
