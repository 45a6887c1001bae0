// Package bustest helps modules' component tests run their consumers: NewBus and Start run a real
// bus (GoChannel, checkpoints and read models in the test's temporary folders) for the module's
// projections and processors; the bus's Sync waits until they have every event in the store.
package bustest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/platform/bus"
	"github.com/crispy-enigma/crispy/platform/eventstore"
)

// NewBus returns a real bus for a module's component test: GoChannel, checkpoints and read models
// in the test's temporary folders, quick retries. Register the module on it, then Start it.
func NewBus(t testing.TB, store eventstore.Store) *bus.Bus {
	t.Helper()
	return NewBusIn(t, store, t.TempDir())
}

// NewBusIn is NewBus with its checkpoints and read models under dir, so a second bus on the same
// dir resumes from the first one's checkpoints (a restart).
func NewBusIn(t testing.TB, store eventstore.Store, dir string) *bus.Bus {
	t.Helper()
	b, err := bus.New(bus.Config{CheckpointDir: dir + "/bus", ReadModelDir: dir + "/readmodels",
		RetryInitial: time.Millisecond, RetryMax: 10 * time.Millisecond, MaxRetries: 2, CheckpointInterval: 50 * time.Millisecond},
		bus.Deps{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Start runs b until the test ends (or stop is called) and waits until its projections have caught
// up. stop returns Run's error.
func Start(t testing.TB, b *bus.Bus) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	stopped := false
	var runErr error
	stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			runErr = <-done
		}
		return runErr
	}
	t.Cleanup(func() {
		if err := stop(); err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("bus: %v", err)
		}
	})
	wctx, wcancel := context.WithTimeout(ctx, time.Minute)
	defer wcancel()
	if err := b.WaitCaughtUp(wctx); err != nil {
		t.Fatalf("bus did not catch up: %v (run: %v)", err, stop())
	}
	return stop
}
