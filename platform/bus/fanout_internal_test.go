package bus

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/readmodel"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

func cursorNames(b *Bus) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]string, len(b.cursors))
	for i, c := range b.cursors {
		out[i] = c.name
	}
	return out
}

// A projection stuck waiting for its dependency is detached onto a cursor of its own, and only until
// it has caught up again: it then rejoins the main cursor, so that a bus at rest reads the store
// once for its read models. Every event reaches each projection once, in order, across the moves.
func TestADetachedProjectionRejoinsTheMainCursor(t *testing.T) {
	t.Parallel()
	store := eventstoretest.NewMemory()
	stream := tenant.MustStream(tenant.MustParse("acme"), "thing", "1")
	appendEvents := func(n int) {
		for i := 0; i < n; {
			batch := make([]eventstore.EventData, 0, 500)
			for ; i < n && len(batch) < cap(batch); i++ {
				batch = append(batch, eventstore.EventData{Type: "test.Happened", Data: []byte(`{}`)})
			}
			if _, err := store.Append(context.Background(), stream, eventstore.Any, batch...); err != nil {
				t.Fatal(err)
			}
		}
	}
	appendEvents(20_000)
	b, err := New(Config{CheckpointDir: t.TempDir(), ReadModelDir: t.TempDir(), RetryInitial: time.Millisecond, RetryMax: 5 * time.Millisecond},
		Deps{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	b.codec.Add("test.Happened", rawHappened{})
	// Each records the positions it was given: in order, none twice.
	type seen struct {
		mu   sync.Mutex
		last eventstore.Position
		n    int
		bad  atomic.Bool
	}
	record := func(s *seen, pos eventstore.Position) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if pos <= s.last {
			s.bad.Store(true)
		}
		s.last = pos
		s.n++
	}
	var fastSeen, slowSeen seen
	fast := b.Projection("test.fast", ProjectionOptions{})
	Apply(fast, func(_ context.Context, _ *readmodel.Tx, env Envelope, _ rawHappened) error {
		record(&fastSeen, env.Position)
		return nil
	})
	var down atomic.Bool
	down.Store(true)
	slow := b.Projection("test.slow", ProjectionOptions{})
	Apply(slow, func(_ context.Context, _ *readmodel.Tx, env Envelope, _ rawHappened) error {
		if down.Load() {
			return apperr.Wrap(errors.New("connection refused"), apperr.KindUnavailable, "test.down", "the dependency is down")
		}
		record(&slowSeen, env.Position)
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	wctx, wcancel := context.WithTimeout(ctx, time.Minute)
	defer wcancel()
	if err := fast.WaitCaughtUp(wctx); err != nil {
		t.Fatal(err)
	}
	if got := cursorNames(b); !slices.Equal(got, []string{"projections", "projection test.slow"}) {
		t.Fatalf("cursors while test.slow is stuck: %v, want the main one and test.slow's own", got)
	}
	if b.mainGroup.c.pos.Load() != 20_000 {
		t.Fatalf("the main cursor is at %d while test.slow is stuck, want 20000", b.mainGroup.c.pos.Load())
	}
	down.Store(false)
	if err := b.WaitCaughtUp(wctx); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); !slices.Equal(cursorNames(b), []string{"projections"}); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("test.slow never rejoined the main cursor: cursors %v", cursorNames(b))
		}
	}
	if slow.grp.Load() != b.mainGroup {
		t.Fatal("test.slow is not a member of the main group after the rejoin")
	}
	appendEvents(1_000)
	if err := b.Sync(wctx); err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]*seen{"fast": &fastSeen, "slow": &slowSeen} {
		s.mu.Lock()
		n, bad := s.n, s.bad.Load()
		s.mu.Unlock()
		if n != 21_000 || bad {
			t.Fatalf("%s projection applied %d events (out of order or twice: %v), want 21000 once each in order", name, n, bad)
		}
	}
}
