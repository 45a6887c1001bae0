package alerts_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/modules/observability/events"
	"github.com/crispy-enigma/crispy/modules/observability/internal/alerts"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// TestRuleWriteLocksAreReleased: the per-stream write locks are dropped once no write holds them, so
// a tenant saving and deleting rules under ever new ids does not grow the process's memory.
func TestRuleWriteLocksAreReleased(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	g := alerts.NewEngine(eventstoretest.NewMemory(), eventCodec(), nil, nil, slog.New(slog.DiscardHandler), time.Now)
	acme := tenant.MustParse("acme")
	for i := 0; i < 50; i++ {
		id := fmt.Sprintf("r%d", i)
		if _, err := g.Save(ctx, acme, events.AlertRule{ID: id, Name: "n", Metric: "requests", Comparator: "gt", Threshold: 1, Period: "1h", Enabled: true}); err != nil {
			t.Fatal(err)
		}
		if err := g.Delete(ctx, acme, id); err != nil {
			t.Fatal(err)
		}
	}
	if n := g.LockedStreams(); n != 0 {
		t.Fatalf("%d rule stream locks kept after every write finished", n)
	}
}
