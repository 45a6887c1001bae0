package adapters_test

import (
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/modules/tooling/internal/adapters"
	"github.com/crispy-enigma/crispy/modules/tooling/internal/domain"
	"github.com/crispy-enigma/crispy/platform/readmodel"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

func TestStatsByTenantAndPeriod(t *testing.T) {
	t.Parallel()
	s, err := readmodel.Open(filepath.Join(t.TempDir(), "stats.db"), readmodel.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	acme, bravo := tenant.MustParse("acme"), tenant.MustParse("bravo")
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	err = s.Update(func(tx *readmodel.Tx) error {
		for _, c := range []struct {
			t    tenant.ID
			tool string
			at   time.Time
			ok   adapters.Outcome
			ms   float64
		}{
			{acme, "summarize", now, adapters.Succeeded, 10},
			{acme, "summarize", now, adapters.Failed, 30},
			{acme, "summarize", now, adapters.Refused, 20}, // the caller's fault: a call, not an error
			{acme, "classify", now.Add(-30 * time.Minute), adapters.Succeeded, 7},
			{acme, "summarize", now.Add(-2 * time.Hour), adapters.Succeeded, 100},
			{acme, "summarize", now.Add(time.Hour), adapters.Succeeded, 1000}, // after the period
			{bravo, "summarize", now, adapters.Succeeded, 5},
		} {
			if err := adapters.RecordExecution(tx.Bucket(), c.t, c.tool, c.at, c.ok, c.ms); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	query := func(tn tenant.ID, since time.Time) (out []domain.ToolStats) {
		if err := s.View(func(tx *readmodel.Tx) error {
			out = adapters.QueryExecutions(tx.Bucket(), tn, since, now)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	want := []domain.ToolStats{
		{Tool: "classify", Executions: 1, Successes: 1, MeanDurationMs: 7},
		{Tool: "summarize", Executions: 3, Successes: 1, Errors: 1, MeanDurationMs: 20},
	}
	if got := query(acme, now.Add(-time.Hour)); !reflect.DeepEqual(got, want) {
		t.Fatalf("1h: %+v", got)
	}
	if got := query(acme, now.Add(-24*time.Hour)); got[1].Executions != 4 {
		t.Fatalf("24h: %+v", got)
	}
	if got := query(bravo, now.Add(-time.Hour)); len(got) != 1 || got[0].Executions != 1 {
		t.Fatalf("bravo: %+v", got)
	}
	if got := query(tenant.MustParse("nobody"), now.Add(-time.Hour)); len(got) != 0 {
		t.Fatalf("unknown tenant: %+v", got)
	}
}
