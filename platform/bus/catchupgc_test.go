package bus_test

import (
	"context"
	"runtime/metrics"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/platform/bus"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/readmodel"
)

// gogc reads the collector's GOGC without changing it.
func gogc() int64 {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int64(s[0].Value.Uint64())
}

// TestCatchUpGCPercentHoldsOnlyWhileTheReadModelsCatchUp: a first start far behind the store runs
// its read models' handlers under CatchUpGCPercent, and the collector's setting is back once they
// caught up; a start from checkpoints close to the store's end leaves the collector alone. (Not
// parallel: GOGC is the process's.)
func TestCatchUpGCPercentHoldsOnlyWhileTheReadModelsCatchUp(t *testing.T) {
	store := eventstoretest.NewMemory()
	appendN(t, store, acme, "a", typeHappened, 40)
	before := gogc()
	cfg := projectionConfig(t)
	cfg.CatchUpCommitEvery = 10 // 40 events: far behind
	cfg.CatchUpGCPercent = int(before) + 300
	var during atomic.Int64
	register := func(reg bus.Consumers) {
		registerTestEvents(reg.Codec().Add)
		bus.Apply(reg.Projection("test.gc", bus.ProjectionOptions{}), func(_ context.Context, _ *readmodel.Tx, _ bus.Envelope, _ happenedEvent) error {
			during.Store(gogc())
			return nil
		})
	}
	r := start(t, cfg, store, register)
	if got := during.Load(); got != before+300 {
		t.Fatalf("GOGC while catching up from far behind: %d, want %d", got, before+300)
	}
	waitGOGC(t, before)
	// Live events are applied under the usual setting.
	appendN(t, store, acme, "a", typeHappened, 1)
	if err := r.b.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := during.Load(); got != before {
		t.Fatalf("GOGC for a live event: %d, want %d", got, before)
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}

	// A restart from the checkpoint (a few events behind): the collector is left alone.
	appendN(t, store, acme, "a", typeHappened, 3)
	start(t, cfg, store, register)
	if got := during.Load(); got != before {
		t.Fatalf("GOGC while catching up 3 events: %d, want %d", got, before)
	}
}

// waitGOGC waits for the collector's setting to be want (the bus restores it once it sees the read
// models caught up, within a few milliseconds).
func waitGOGC(t *testing.T, want int64) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for gogc() != want {
		if time.Now().After(deadline) {
			t.Fatalf("GOGC %d, want %d back", gogc(), want)
		}
		time.Sleep(time.Millisecond)
	}
}
