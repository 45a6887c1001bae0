package domain_test

import (
	"reflect"
	"testing"
	"time"

	tenancyevents "github.com/crispy-enigma/crispy/modules/tenancy/events"
	"github.com/crispy-enigma/crispy/modules/tooling/internal/domain"
)

func TestGrants(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name             string
		features         map[string]bool
		granted, revoked []string
	}{
		{"default grants all", nil, []string{"model:complete", "index:write"}, nil},
		{"false revokes", map[string]bool{"tool.index.write": false}, []string{"model:complete"}, []string{"index:write"}},
		{"true keeps", map[string]bool{"tool.index.write": true}, []string{"model:complete", "index:write"}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			g, r := domain.Grants(tenancyevents.TenantConfig{Features: c.features}, []string{"model:complete", "index:write"})
			if !reflect.DeepEqual(g, c.granted) || !reflect.DeepEqual(r, c.revoked) {
				t.Fatalf("granted %v revoked %v", g, r)
			}
		})
	}
}

func TestStatsByTenantAndPeriod(t *testing.T) {
	t.Parallel()
	s := domain.NewStats()
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	s.Record(1, "acme", "summarize", now, true, 10)
	s.Record(2, "acme", "summarize", now, false, 30)
	s.Record(2, "acme", "summarize", now, false, 30) // redelivery
	s.Record(3, "acme", "summarize", now.Add(-2*time.Hour), true, 100)
	s.Record(4, "bravo", "summarize", now, true, 5)
	got := s.Query("acme", now.Add(-time.Hour), now)
	want := []domain.ToolStats{{Tool: "summarize", Executions: 2, Successes: 1, Errors: 1, MeanDurationMs: 20}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v", got)
	}
	if got := s.Query("acme", now.Add(-24*time.Hour), now); got[0].Executions != 3 {
		t.Fatalf("24h: %+v", got)
	}
	if got := s.Query("nobody", now.Add(-time.Hour), now); len(got) != 0 {
		t.Fatalf("unknown tenant: %+v", got)
	}
}
