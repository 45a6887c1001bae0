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
)

func TestAcceptanceGoChannel(t *testing.T) {
	t.Parallel()
	runAcceptance(t, goChannelConfig(t))
}

func TestIntegrationNATSAcceptance(t *testing.T) {
	t.Parallel()
	runAcceptance(t, natsConfig(t))
}

// runAcceptance is the one body every transport runs: order, filtering by type, tenant isolation,
// and a restart that lost the forwarder's checkpoint without handling or applying anything twice.
func runAcceptance(t *testing.T, cfg bus.Config) {
	cfg.ReadModelDir = t.TempDir()
	store, err := embedded.Open(t.TempDir(), embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()

	// Some history before the bus ever runs, so projections catch up on start.
	var appended []eventstore.Event
	appended = append(appended, appendN(t, store, acme, "a", typeHappened, 5)...)
	appended = append(appended, appendN(t, store, globex, "g", typeOther, 5)...)

	all, happened, proj := &recorder{}, &recorder{}, &counting{}
	var p *bus.Projection
	r := start(t, cfg, store, func(c bus.Consumers) {
		all.processor(c, "test.all")
		happened.processor(c, "test.happened-only", typeHappened)
		p = proj.register(c, "test.per-tenant")
	})
	// Projections are warm when WaitCaughtUp returns.
	wantCounts(t, readCounts(t, p), appended)
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
		if !slices.Equal(envIDs(got), ids(appended)) {
			t.Fatalf("forwarded out of order or incomplete:\n got %v\nwant %v", envIDs(got), ids(appended))
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
		if !slices.Equal(envIDs(got), ids(want)) {
			t.Fatalf("got %v, want %v", envIDs(got), ids(want))
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
	t.Run("projection keyed by tenant applies each event once, in order, never mixing tenants", func(t *testing.T) {
		if err := r.b.Sync(context.Background()); err != nil {
			t.Fatal(err)
		}
		wantCounts(t, readCounts(t, p), appended) // counting refuses an event out of order
	})

	if err := r.stop(); err != nil {
		t.Fatalf("clean stop: %v", err)
	}
	// As if the process had crashed before its last forwarder checkpoint: everything is forwarded
	// again, and no processor may handle any of it twice.
	if err := os.Remove(filepath.Join(cfg.CheckpointDir, "forwarder.json")); err != nil {
		t.Fatal(err)
	}

	all2, proj2 := &recorder{}, &counting{}
	r2 := start(t, cfg, store, func(c bus.Consumers) {
		all2.processor(c, "test.all")
		p = proj2.register(c, "test.per-tenant")
	})
	t.Run("projection resumes on restart with the same state, applying nothing again", func(t *testing.T) {
		wantCounts(t, readCounts(t, p), appended)
		if n := proj2.calls.Load(); n != 0 {
			t.Fatalf("after the restart the projection applied %d events it had", n)
		}
	})
	fresh := appendN(t, store, globex, "after", typeHappened, 3)
	t.Run("after restart only new events are handled", func(t *testing.T) {
		// Republished old events would arrive before these, so the first three tell.
		got := all2.waitFor(t, len(fresh))
		if !slices.Equal(envIDs(got[:len(fresh)]), ids(fresh)) {
			t.Fatalf("after restart got %v, want only %v", envIDs(got), ids(fresh))
		}
		if err := r2.b.Sync(context.Background()); err != nil {
			t.Fatal(err)
		}
		wantCounts(t, readCounts(t, p), append(slices.Clone(appended), fresh...))
	})
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
	registerTestEvents(b.Codec().Add)
	bus.Handle(b.Processor("test.flaky"), func(ctx context.Context, env bus.Envelope, ev happenedEvent) error {
		mu.Lock()
		attempts[env.ID]++
		mu.Unlock()
		switch ev.N {
		case 0:
			return errors.New("always fails")
		case 1:
			panic("handler bug")
		}
		return after.handle(ctx, env)
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
		t.Fatalf("the event after two failing ones was not handled: %v", envIDs(got))
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
	seen.processor(b, "test.lag")
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
		"duplicate name":        func(b *bus.Bus) { (&recorder{}).processor(b, "x"); (&recorder{}).processor(b, "x") },
		"empty name":            func(b *bus.Bus) { (&recorder{}).processor(b, "") },
		"empty projection name": func(b *bus.Bus) { (&counting{}).register(b, "") },
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

func TestRunFailsWhenTheBrokerIsUnreachable(t *testing.T) {
	t.Parallel()
	cfg := goChannelConfig(t)
	cfg.Transport = "nats://127.0.0.1:1"
	b, err := bus.New(cfg, bus.Deps{Store: eventstoretest.NewMemory()})
	if err != nil {
		t.Fatal(err)
	}
	(&recorder{}).processor(b, "test.unreachable")
	if err := b.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "connect to NATS") {
		t.Fatalf("Run = %v, want a connection error", err)
	}
	if err := b.Check(context.Background()); err == nil {
		t.Fatal("Check must fail when the bus never ran")
	}
}
