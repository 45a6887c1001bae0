package auditlog

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/platform/bus/bustest"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// blockingReads holds ReadTenant (what a verification reads) while armed, until released.
type blockingReads struct {
	eventstore.Store
	mu      sync.Mutex
	armed   bool
	entered chan struct{}
	release chan struct{}
}

func (b *blockingReads) ReadTenant(ctx context.Context, t tenant.ID, from eventstore.Position, max int) ([]eventstore.Event, error) {
	b.mu.Lock()
	armed := b.armed
	b.armed = false // only the first read of the armed verification waits
	b.mu.Unlock()
	if armed {
		close(b.entered)
		select {
		case <-b.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return b.Store.ReadTenant(ctx, t, from, max)
}

// Verifications are bounded: a second one of the same tenant is refused while one runs, and
// beyond MaxVerifications another tenant's is refused too; both succeed once the first is done.
func TestVerificationsAreBounded(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mem := eventstoretest.NewMemory()
	for _, tid := range []tenant.ID{acme, beta} {
		ed, _ := eventstore.NewEventData("test.Happened", map[string]int{"i": 1})
		if _, err := mem.Append(ctx, tenant.MustStream(tid, "session", "s"), eventstore.Any, ed); err != nil {
			t.Fatal(err)
		}
	}
	store := &blockingReads{Store: mem, entered: make(chan struct{}), release: make(chan struct{})}
	l, err := New(Deps{Key: newKey(t), Store: store, Dir: filepath.Join(t.TempDir(), "cp"), Interval: time.Hour, MaxVerifications: 1})
	if err != nil {
		t.Fatal(err)
	}
	b := bustest.NewBus(t, mem)
	l.Register(b)
	bustest.Start(t, b)
	if err := b.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	cps := map[tenant.ID]Checkpoint{}
	for _, tid := range []tenant.ID{acme, beta} {
		if cps[tid], err = l.Checkpoint(ctx, tid); err != nil {
			t.Fatal(err)
		}
	}
	store.mu.Lock()
	store.armed = true
	store.mu.Unlock()
	first := make(chan error, 1)
	go func() {
		rep, err := l.Verify(ctx, acme, cps[acme], nil)
		if err == nil && !rep.OK {
			err = errors.New("not ok")
		}
		first <- err
	}()
	<-store.entered // acme's verification is running
	if _, err := l.Verify(ctx, acme, cps[acme], nil); !errors.Is(err, ErrVerifyRunning) {
		t.Fatalf("a second verification of acme while one runs: %v, want ErrVerifyRunning", err)
	}
	if _, err := l.Verify(ctx, beta, cps[beta], nil); !errors.Is(err, ErrVerifyBusy) {
		t.Fatalf("beta's verification beyond the limit of 1: %v, want ErrVerifyBusy", err)
	}
	close(store.release)
	if err := <-first; err != nil {
		t.Fatalf("the running verification: %v", err)
	}
	for _, tid := range []tenant.ID{acme, beta} {
		if rep, err := l.Verify(ctx, tid, cps[tid], nil); err != nil || !rep.OK {
			t.Fatalf("%s after the first finished: %+v %v", tid, rep, err)
		}
	}
}
