package auditlog

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/platform/bus/bustest"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// failingAppends fails the first n appends to any audit-key stream (a store briefly unavailable).
type failingAppends struct {
	eventstore.Store
	mu sync.Mutex
	n  int
}

func (f *failingAppends) Append(ctx context.Context, s tenant.Stream, exp eventstore.ExpectedRevision, evs ...eventstore.EventData) (eventstore.AppendResult, error) {
	if s.Category() == "audit-key" {
		f.mu.Lock()
		fail := f.n > 0
		if fail {
			f.n--
		}
		f.mu.Unlock()
		if fail {
			return eventstore.AppendResult{}, errors.New("store unavailable")
		}
	}
	return f.Store.Append(ctx, s, exp, evs...)
}

// A new key whose recording fails is recorded by a later try (not only logged), once per tenant,
// and only then is NewKeyRecorded called (so the pending marker outlives a failure).
func TestNewKeyIsRecordedInEveryTenantDespiteFailedAppends(t *testing.T) {
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
	store := &failingAppends{Store: mem, n: 3}
	var recorded atomic.Int32
	l, err := New(Deps{Key: newKey(t), Store: store, Dir: filepath.Join(t.TempDir(), "cp"), Interval: time.Hour, WitnessRetry: time.Millisecond,
		NewKey: true, NewKeyRecorded: func() error { recorded.Add(1); return nil }})
	if err != nil {
		t.Fatal(err)
	}
	b := bustest.NewBus(t, mem)
	l.Register(b)
	bustest.Start(t, b)
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	waitFor(t, "the pending key reported recorded", func() bool { return recorded.Load() == 1 })
	want := Describe(l.PublicKey()).KeyID
	for _, tid := range []tenant.ID{acme, beta} {
		evs, err := mem.ReadStream(ctx, tenant.MustStream(tid, "audit-key", ""), 0, 0)
		if err != nil || len(evs) != 1 || evs[0].Type != TypeSigningKeyCreated {
			t.Fatalf("%s's audit-key stream: %d events %v, want one SigningKeyCreated", tid, len(evs), err)
		}
		var got SigningKeyCreated
		if err := evs[0].Decode(&got); err != nil || got.KeyID != want {
			t.Fatalf("%s recorded key %q (%v), want %s", tid, got.KeyID, err, want)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if recorded.Load() != 1 {
		t.Fatalf("NewKeyRecorded called %d times, want once", recorded.Load())
	}
}
