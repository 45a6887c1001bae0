package adapters_test

import (
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/crispy-enigma/crispy/modules/observability/internal/adapters"
	"github.com/crispy-enigma/crispy/modules/observability/internal/domain"
	"github.com/crispy-enigma/crispy/platform/readmodel"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

func openModel(t testing.TB) *readmodel.Store {
	t.Helper()
	s, err := readmodel.Open(filepath.Join(t.TempDir(), "usage.db"), readmodel.Options{Version: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func update(t testing.TB, s *readmodel.Store, fn func(b *bolt.Bucket) error) {
	t.Helper()
	if err := s.Update(func(tx *readmodel.Tx) error { return fn(tx.Bucket()) }); err != nil {
		t.Fatal(err)
	}
}

// record runs fn in one write transaction, committed: the usage handlers take the transaction.
func record(t testing.TB, s *readmodel.Store, fn func(tx *readmodel.Tx) error) {
	t.Helper()
	if err := s.Update(fn); err != nil {
		t.Fatal(err)
	}
}

func view(t testing.TB, s *readmodel.Store, fn func(b *bolt.Bucket)) {
	t.Helper()
	if err := s.View(func(tx *readmodel.Tx) error { fn(tx.Bucket()); return nil }); err != nil {
		t.Fatal(err)
	}
}

func TestUsageWindowsSeriesIsolationAndRetention(t *testing.T) {
	t.Parallel()
	s := openModel(t)
	a, b, ab := tenant.MustParse("a"), tenant.MustParse("b"), tenant.MustParse("a-b")
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	record(t, s, func(tx *readmodel.Tx) error {
		for _, err := range []error{
			adapters.RecordTurn(tx, a, t0, domain.ChatTurn{Model: "m", Completed: true, Tokens: domain.Tokens{Input: 10}}),
			adapters.RecordTurn(tx, b, t0, domain.ChatTurn{Model: "m", Completed: true, Tokens: domain.Tokens{Input: 99}}),
			adapters.RecordTurn(tx, ab, t0, domain.ChatTurn{Model: "m", Completed: true, Tokens: domain.Tokens{Input: 7}}),
			adapters.RecordTool(tx, a, t0.Add(time.Hour), domain.ToolCall{Tool: "x", Succeeded: false, DurationMs: 5}),
		} {
			if err != nil {
				return err
			}
		}
		return nil
	})
	view(t, s, func(bk *bolt.Bucket) {
		if got := adapters.QueryWindow(bk, a, t0, t0).Total(); got.Requests != 1 || got.Input != 10 {
			t.Errorf("a at t0: %+v", got)
		}
		if got := adapters.QueryWindow(bk, a, t0.Add(time.Minute), t0.Add(2*time.Hour)); got.Total().Requests != 1 || got.ToolTotal().Failures != 1 {
			t.Errorf("a's window rounds its start down to the bucket: %+v", got.Total())
		}
		if got := adapters.QueryWindow(bk, a, t0.Add(5*time.Minute), t0.Add(2*time.Hour)); got.Total().Requests != 0 {
			t.Errorf("next bucket: %+v", got.Total())
		}
		var sum int64
		for _, sm := range adapters.QuerySeries(bk, a, t0.Add(time.Hour), 30*time.Minute, 3) {
			sum += sm.Total().Requests + sm.ToolTotal().Calls
		}
		if sum != 2 {
			t.Errorf("series counts %d events, want each once", sum)
		}
		// Tenant "a" is a prefix of tenant "a-b": neither sees the other.
		if got := adapters.QueryWindow(bk, b, t0, t0).Total().Input; got != 99 {
			t.Errorf("b: %d", got)
		}
		if got := adapters.QueryWindow(bk, ab, t0, t0.Add(2*time.Hour)); got.Total().Input != 7 || got.ToolTotal().Calls != 0 {
			t.Errorf("a-b: %+v", got.Total())
		}
	})
	// Retention: buckets far older than the tenant's newest are dropped, the other tenants' kept.
	record(t, s, func(tx *readmodel.Tx) error {
		return adapters.RecordTurn(tx, a, t0.Add(40*24*time.Hour), domain.ChatTurn{Model: "m", Completed: true})
	})
	view(t, s, func(bk *bolt.Bucket) {
		if got := adapters.QueryWindow(bk, a, t0, t0.Add(2*time.Hour)); got.Total().Requests != 0 || got.ToolTotal().Calls != 0 {
			t.Errorf("old buckets kept: %+v", got)
		}
		if got := adapters.QueryWindow(bk, b, t0, t0).Total().Input; got != 99 {
			t.Errorf("b lost its bucket to a's retention: %d", got)
		}
		if got := adapters.QueryWindow(bk, a, t0, t0.Add(41*24*time.Hour)).Total().Requests; got != 1 {
			t.Errorf("a's newest: %d", got)
		}
	})
}

// TestUsageOfOneTransactionIsWrittenAtItsCommit: a batch's turns add up in memory and are written
// when it commits (nothing before, nothing after a rollback), and retention within the batch drops
// what the batch itself had added to the buckets it passes.
func TestUsageOfOneTransactionIsWrittenAtItsCommit(t *testing.T) {
	t.Parallel()
	s := openModel(t)
	a := tenant.MustParse("a")
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	turn := domain.ChatTurn{Model: "m", Completed: true, Tokens: domain.Tokens{Input: 10}, Key: "k1", User: "u1"}
	requests := func(since, until time.Time) (n int64) {
		view(t, s, func(bk *bolt.Bucket) { n = adapters.QueryWindow(bk, a, since, until).Total().Requests })
		return n
	}

	tx, err := s.Begin()
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := adapters.RecordTurn(tx, a, t0, turn); err != nil {
			t.Fatal(err)
		}
	}
	if err := adapters.RecordTool(tx, a, t0, domain.ToolCall{Tool: "x", Succeeded: true}); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if n := requests(t0, t0); n != 0 {
		t.Fatalf("after a rollback: %d requests", n)
	}

	record(t, s, func(tx *readmodel.Tx) error {
		for range 3 {
			if err := adapters.RecordTurn(tx, a, t0, turn); err != nil {
				return err
			}
		}
		return nil
	})
	if n := requests(t0, t0); n != 3 {
		t.Fatalf("after a commit of 3 turns: %d requests", n)
	}
	var byKey map[string]int64
	view(t, s, func(bk *bolt.Bucket) {
		byKey = map[string]int64{}
		for key, models := range adapters.QueryWindow(bk, a, t0, t0).ByKey {
			for _, m := range models {
				byKey[key] += m.Requests
			}
		}
	})
	if byKey["k1"] != 3 {
		t.Fatalf("by key after the commit: %v", byKey)
	}

	// One batch: two turns in a bucket, then one 40 days later: retention drops the first bucket,
	// with what the batch had added to it.
	later := t0.Add(40 * 24 * time.Hour)
	record(t, s, func(tx *readmodel.Tx) error {
		for _, at := range []time.Time{t0.Add(time.Minute), t0.Add(2 * time.Minute), later} {
			if err := adapters.RecordTurn(tx, a, at, turn); err != nil {
				return err
			}
		}
		return nil
	})
	if n := requests(t0, t0.Add(time.Hour)); n != 0 {
		t.Fatalf("the old bucket after retention in the same batch: %d requests, want 0", n)
	}
	if n := requests(later, later); n != 1 {
		t.Fatalf("the newest bucket: %d requests, want 1", n)
	}
}

// BenchmarkRecordTurn is the per-event cost of the usage projection's handler in one batch
// transaction (the bus commits every few thousand events while catching up).
func BenchmarkRecordTurn(b *testing.B) {
	s := openModel(b)
	tx, err := s.Begin()
	if err != nil {
		b.Fatal(err)
	}
	defer tx.Rollback()
	acme := tenant.MustParse("acme")
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	turn := domain.ChatTurn{Model: "openai:gpt-4o-mini", Completed: true, Tokens: domain.Tokens{Input: 120, Output: 40}, LatencyMs: 812}
	i := 0
	for b.Loop() {
		i++
		if err := adapters.RecordTurn(tx, acme, t0.Add(time.Duration(i)*time.Second), turn); err != nil {
			b.Fatal(err)
		}
	}
}
