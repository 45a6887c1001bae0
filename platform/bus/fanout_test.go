package bus_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/bus"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/readmodel"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// appendBatches appends n typeHappened events to one stream of tid, 500 an append.
func appendBatches(t testing.TB, store eventstore.Store, tid tenant.ID, entity string, n int) []eventstore.Event {
	t.Helper()
	var out []eventstore.Event
	for i := 0; i < n; {
		batch := make([]eventstore.EventData, 0, 500)
		for ; i < n && len(batch) < cap(batch); i++ {
			batch = append(batch, eventstore.EventData{Type: typeHappened, Data: []byte(fmt.Sprintf(`{"n":%d,"tenant":%q}`, i, tid))})
		}
		res, err := store.Append(context.Background(), tenant.MustStream(tid, "thing", entity), eventstore.Any, batch...)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, res.Events...)
	}
	return out
}

// gate is a projection stuck on its first event until released: a read model that is very slow
// (re-embedding documents: its handler blocks, and it has its own cursor) or one whose dependency is
// down (its handler fails with an unavailable error, on the shared cursor).
type gate struct {
	counting
	ownCursor bool
	once      sync.Once
	reached   chan struct{} // closed when it is stuck
	release   chan struct{}
	released  sync.Once
	dep       dependency
}

func newGate(ownCursor bool) *gate {
	g := &gate{ownCursor: ownCursor, reached: make(chan struct{}), release: make(chan struct{})}
	g.dep.down.Store(!ownCursor)
	return g
}

func (g *gate) open() {
	g.released.Do(func() {
		g.dep.down.Store(false)
		close(g.release)
	})
}

func (g *gate) register(reg bus.Consumers, name string) *bus.Projection {
	registerTestEvents(reg.Codec().Add)
	p := reg.Projection(name, bus.ProjectionOptions{What: "gated counts", Version: 1, OwnCursor: g.ownCursor})
	bus.Apply(p, func(ctx context.Context, tx *readmodel.Tx, env bus.Envelope, ev happenedEvent) error {
		if g.ownCursor {
			g.once.Do(func() { close(g.reached); <-g.release })
		} else if err := g.dep.call(); err != nil {
			g.once.Do(func() { close(g.reached) })
			return err
		}
		return g.apply(ctx, tx, env, ev.N)
	})
	return p
}

// runBus runs b until the test ends (after the cleanups registered later, which release gates).
func runBus(t *testing.T, b *bus.Bus) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() { cancel(); err = <-done })
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// A projection stuck on an event does not hold the others: they catch up with the store, answer
// and follow live events while it is stuck (it alone answers catching_up, or degraded while it
// waits for its dependency); once it goes on it catches up too, and each projection applied every
// event once, in order. With one cursor pacing every projection, the fast one never caught up while
// the slow one was stuck.
func TestASlowProjectionDoesNotHoldTheOthers(t *testing.T) {
	t.Parallel()
	for name, ownCursor := range map[string]bool{"slow by nature, on its own cursor": true, "waiting for its dependency": false} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			store := eventstoretest.NewMemory()
			evs := appendBatches(t, store, acme, "a", 20_000) // many forwarded batches: more than a projection's inbox holds
			b, err := bus.New(projectionConfig(t), bus.Deps{Store: store})
			if err != nil {
				t.Fatal(err)
			}
			fast, slow := &counting{}, newGate(ownCursor)
			pf := fast.register(b, "test.fast")
			ps := slow.register(b, "test.slow")
			stop := runBus(t, b)
			t.Cleanup(slow.open) // before the bus stops: the stop waits for a blocked handler

			ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
			defer cancel()
			if err := pf.WaitCaughtUp(ctx); err != nil {
				t.Fatalf("the fast projection did not catch up while the slow one was stuck: %v", err)
			}
			<-slow.reached
			wantCounts(t, readCounts(t, pf), evs)
			if err := ps.Ready(); apperr.CodeOf(err) != "catching_up" {
				t.Fatalf("the stuck projection's Ready: %v, want catching_up", err)
			}
			if err := b.Check(ctx); err == nil || !strings.Contains(err.Error(), "test.slow") || strings.Contains(err.Error(), "test.fast") {
				t.Fatalf("bus Check while one projection is stuck: %v, want it naming test.slow only", err)
			}
			if err := ps.Check(ctx); err == nil {
				t.Fatalf("the stuck projection's Check: %v, want not ok", err)
			}

			// Live events reach the fast projection while the slow one is still stuck.
			live := appendBatches(t, store, globex, "live", 700)
			evs = append(evs, live...)
			deadlineWait(t, func() bool {
				st, err := viewCounts(pf)
				return err == nil && len(st.applied) == len(evs)
			})
			wantCounts(t, readCounts(t, pf), evs)
			if err := pf.Check(ctx); err != nil {
				t.Fatalf("the fast projection's Check while the slow one is stuck: %v", err)
			}

			slow.open()
			if err := b.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			wantCounts(t, readCounts(t, ps), evs)
			wantCounts(t, readCounts(t, pf), evs)
			if err := b.Check(ctx); err != nil {
				t.Fatalf("bus Check once both caught up: %v", err)
			}
			// Live again, a new event reaches both, once.
			evs = append(evs, appendBatches(t, store, acme, "after", 3)...)
			if err := b.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			wantCounts(t, readCounts(t, ps), evs)
			wantCounts(t, readCounts(t, pf), evs)
			if err := stop(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// A read model rebuilt from the start of the store (new, or its version bumped) does not hold the
// others at a restart: those resume from their checkpoints and are caught up at once, applying
// nothing again, while it rebuilds.
func TestARebuildingProjectionDoesNotHoldTheOthersAtARestart(t *testing.T) {
	t.Parallel()
	store := eventstoretest.NewMemory()
	evs := appendBatches(t, store, acme, "a", 3_000)
	cfg := projectionConfig(t)
	cfg.CatchUpCommitEvery = 100
	first := &counting{}
	var p *bus.Projection
	r := start(t, cfg, store, func(reg bus.Consumers) { p = first.register(reg, "test.kept") })
	wantCounts(t, readCounts(t, p), evs)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}

	b, err := bus.New(cfg, bus.Deps{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	kept, fresh := &counting{}, newGate(false)
	pk := kept.register(b, "test.kept")
	pn := fresh.register(b, "test.new")
	stop := runBus(t, b)
	t.Cleanup(fresh.open)
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := pk.WaitCaughtUp(ctx); err != nil {
		t.Fatalf("the resumed projection did not catch up while a new one rebuilds: %v", err)
	}
	<-fresh.reached
	if n := kept.calls.Load(); n != 0 {
		t.Fatalf("the resumed projection applied %d events again", n)
	}
	if err := pn.Ready(); apperr.CodeOf(err) != "catching_up" {
		t.Fatalf("the rebuilding projection's Ready: %v, want catching_up", err)
	}
	fresh.open()
	if err := b.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	wantCounts(t, readCounts(t, pn), evs)
	wantCounts(t, readCounts(t, pk), evs)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// A projection on a cursor of its own (the search index) starts reading once the shared read models
// have caught up: on a first start they get the cores first. While a shared one is still busy (its
// handler slow, not failing) the own-cursor projection has applied nothing; then it catches up, and
// both hold every event once.
func TestOwnCursorsStartOnceTheSharedReadModelsCaughtUp(t *testing.T) {
	t.Parallel()
	store := eventstoretest.NewMemory()
	evs := appendBatches(t, store, acme, "a", 2_000)
	b, err := bus.New(projectionConfig(t), bus.Deps{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	registerTestEvents(b.Codec().Add)
	shared, own := &counting{}, &counting{}
	reached, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	ps := b.Projection("test.shared", bus.ProjectionOptions{Version: 1})
	bus.Apply(ps, func(ctx context.Context, tx *readmodel.Tx, env bus.Envelope, ev happenedEvent) error {
		once.Do(func() { close(reached); <-release })
		return shared.apply(ctx, tx, env, ev.N)
	})
	po := b.Projection("test.own", bus.ProjectionOptions{Version: 1, OwnCursor: true})
	bus.Apply(po, func(ctx context.Context, tx *readmodel.Tx, env bus.Envelope, ev happenedEvent) error {
		return own.apply(ctx, tx, env, ev.N)
	})
	stop := runBus(t, b)
	var released sync.Once
	open := func() { released.Do(func() { close(release) }) }
	t.Cleanup(open)
	<-reached
	time.Sleep(300 * time.Millisecond) // time enough for an own cursor that did not wait to apply
	if n := own.calls.Load(); n != 0 {
		t.Fatalf("the own-cursor projection applied %d events while a shared read model was still catching up", n)
	}
	open()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := b.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	wantCounts(t, readCounts(t, ps), evs)
	wantCounts(t, readCounts(t, po), evs)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}
