package app_test

import (
	"context"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/modules/retrieval/internal/app"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

func TestStatsWindowIsPerTenantAndBounded(t *testing.T) {
	t.Parallel()
	acme, beta := tenant.MustParse("acme"), tenant.MustParse("beta")
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	s := app.NewStats()
	s.Record(acme, now.Add(-3*time.Hour), false, 10*time.Millisecond)
	s.Record(acme, now.Add(-30*time.Minute), true, 2*time.Millisecond)
	s.Record(acme, now.Add(-10*time.Minute), false, 4*time.Millisecond)
	s.Record(beta, now.Add(-5*time.Minute), true, time.Millisecond)

	got, _ := s.Window(acme, now.Add(-time.Hour), now)
	if got.Hits != 1 || got.Misses != 1 || got.TotalChecks != 2 || got.HitRate != 0.5 || got.AvgLatencyMs != 3 {
		t.Fatalf("acme last hour = %+v", got)
	}
	if got, _ := s.Window(acme, now.Add(-4*time.Hour), now.Add(-2*time.Hour)); got.TotalChecks != 1 || got.Misses != 1 {
		t.Fatalf("acme 4h..2h ago = %+v", got)
	}
	if got, _ := s.Cache(acme, now, 24*time.Hour); got.TotalChecks != 3 {
		t.Fatalf("acme 24h = %+v", got)
	}
	if got, _ := s.Window(beta, now.Add(-time.Hour), now); got.TotalChecks != 1 || got.Hits != 1 {
		t.Fatalf("beta = %+v (acme's checks must not count)", got)
	}
}

// With a durable read model, what Flush recorded is kept in memory only until the read model
// reflects it, also when nobody reads the statistics (GET /metrics/search-cache is optional): a
// replica flushing every minute must not grow for ever.
func TestStatsFlushedAndProjectedAreNotKeptWithoutReads(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := eventstoretest.NewMemory()
	s := app.NewStats()
	var projected eventstore.Position // the read model applies everything at once
	s.Durable = func(tenant.ID, int64, int64) (int64, int64, float64, eventstore.Position, error) {
		return 0, 0, 0, projected, nil
	}
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	for i := range 100 {
		s.Record(acme, now.Add(time.Duration(i)*time.Minute), true, time.Millisecond)
		if err := s.Flush(ctx, store); err != nil {
			t.Fatal(err)
		}
		last, err := store.LastPosition(ctx)
		if err != nil {
			t.Fatal(err)
		}
		projected = last
	}
	if n := s.Unprojected(); n > 1 {
		t.Fatalf("%d recorded appends kept in memory after 100 flushes the read model reflected", n)
	}
}
