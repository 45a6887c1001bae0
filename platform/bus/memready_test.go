package bus_test

import (
	"context"
	"errors"
	"testing"

	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/bus"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/embedded"
	"github.com/crispy-enigma/crispy/platform/health"
)

// A server answers before its read models have caught up. The older in-memory read models (Project)
// are read by their modules without asking the bus, so MemoryReady refuses (503 catching_up) until
// every one has caught up, and /health (Check) says catching_up with progress meanwhile.
func TestMemoryReadyRefusesUntilTheInMemoryReadModelsCaughtUp(t *testing.T) {
	store, err := embedded.Open(t.TempDir(), embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	appendN(t, store, acme, "a", typeHappened, 3)

	b, err := bus.New(goChannelConfig(t), bus.Deps{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	b.Project("test.held", nil, func(ctx context.Context, _ eventstore.Event) error {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	})
	catchingUp := func(what string) {
		t.Helper()
		err := b.MemoryReady()
		e, ok := apperr.As(err)
		if !ok || e.Code != "catching_up" || e.Kind != apperr.KindUnavailable || e.RetryAfterSec < 1 {
			t.Fatalf("%s: MemoryReady = %v, want a 503 catching_up with retry-after", what, err)
		}
	}
	catchingUp("before Run")

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	wctx, wcancel := context.WithTimeout(context.Background(), waitLimit)
	defer wcancel()
	if err := b.WaitRunning(wctx); err != nil {
		t.Fatal(err)
	}
	catchingUp("while its handler holds the first event")
	var st *health.State
	if err := b.Check(wctx); !errors.As(err, &st) || st.Status != health.CatchingUp || st.Total != 3 || st.Done >= 3 {
		t.Fatalf("Check = %v (%+v), want catching_up with progress below 3 of 3", err, st)
	}

	close(release)
	if err := b.WaitCaughtUp(wctx); err != nil {
		t.Fatal(err)
	}
	if err := b.MemoryReady(); err != nil {
		t.Fatalf("MemoryReady after catching up = %v", err)
	}
	if err := b.Check(wctx); err != nil {
		t.Fatalf("Check after catching up = %v", err)
	}
}

// Without in-memory read models there is nothing to wait for.
func TestMemoryReadyWithoutInMemoryReadModels(t *testing.T) {
	store, err := embedded.Open(t.TempDir(), embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	b, err := bus.New(goChannelConfig(t), bus.Deps{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.MemoryReady(); err != nil {
		t.Fatalf("MemoryReady = %v, want nil", err)
	}
}
