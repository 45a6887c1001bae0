package app_test

import (
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/modules/retrieval/internal/app"
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
