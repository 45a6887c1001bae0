package adapters

import (
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/platform/readmodel"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// TestABatchLeavesTheListOneTransactionPerEventLeaves applies the same session events in one
// transaction (a catch-up batch: rows written once, at the commit) and in one transaction each, and
// compares every bucket: the pending rows must end where the event-by-event writes end.
func TestABatchLeavesTheListOneTransactionPerEventLeaves(t *testing.T) {
	acme, other := tenant.MustParse("acme"), tenant.MustParse("other")
	at := func(s int) time.Time { return time.Unix(1_700_000_000+int64(s), 0) }
	steps := []func(tx *readmodel.Tx) error{
		func(tx *readmodel.Tx) error { return SessionStarted(tx, acme, "a", "", "title a", at(1), 1) },
		func(tx *readmodel.Tx) error { return MessageAdded(tx, acme, "a", at(2), 2, true) },
		func(tx *readmodel.Tx) error { return SessionStarted(tx, acme, "b", "u1", "title b", at(3), 1) },
		func(tx *readmodel.Tx) error { return MessageAdded(tx, acme, "a", at(4), 3, false) },
		func(tx *readmodel.Tx) error { return MessageAdded(tx, acme, "b", at(5), 2, true) },
		func(tx *readmodel.Tx) error { return SessionStarted(tx, other, "a", "", "other's a", at(5), 1) },
		func(tx *readmodel.Tx) error { return MessageAdded(tx, other, "a", at(6), 2, true) },
		func(tx *readmodel.Tx) error { return SessionEnded(tx, acme, "a") },
		func(tx *readmodel.Tx) error { return TurnFailed(tx, acme, "a", at(7), 4) },         // gone: no row again
		func(tx *readmodel.Tx) error { return MessageAdded(tx, acme, "c", at(8), 2, true) }, // a message creates its row
		func(tx *readmodel.Tx) error { return SessionStarted(tx, acme, "a", "", "title a2", at(9), 5) },
		func(tx *readmodel.Tx) error { return MessageAdded(tx, acme, "a", at(10), 6, true) },
		func(tx *readmodel.Tx) error { return TurnFailed(tx, acme, "b", at(11), 3) },
		func(tx *readmodel.Tx) error { return SessionEnded(tx, acme, "nobody") },
	}
	dir := t.TempDir()
	open := func(name string) *readmodel.Store {
		s, err := readmodel.Open(filepath.Join(dir, name), readmodel.Options{Version: 1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	batch, each := open("batch.db"), open("each.db")
	// Part of it committed first, so the batch also changes rows it finds stored.
	for _, s := range steps[:3] {
		for _, st := range []*readmodel.Store{batch, each} {
			if err := st.Update(s); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := batch.Update(func(tx *readmodel.Tx) error {
		for _, s := range steps[3:] {
			if err := s(tx); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, s := range steps[3:] {
		if err := each.Update(s); err != nil {
			t.Fatal(err)
		}
	}
	got, want := dump(t, batch), dump(t, each)
	if !slices.Equal(got, want) {
		t.Fatalf("one transaction:\n%q\none per event:\n%q", got, want)
	}
	// And the list is what the events say: a (restarted, a turn open), b (its turn failed), c (a
	// turn open), other's a (a turn open).
	if len(want) != 4+4+3 {
		t.Fatalf("want 4 rows, 4 recent entries and 3 open sessions, got %q", want)
	}
}

func dump(t *testing.T, s *readmodel.Store) []string {
	t.Helper()
	var out []string
	err := s.View(func(tx *readmodel.Tx) error {
		for _, name := range [][]byte{rowsBucket, recentBucket, openBucket} {
			b := tx.Bucket().Bucket(name)
			if b == nil {
				continue
			}
			if err := b.ForEach(func(k, v []byte) error {
				out = append(out, fmt.Sprintf("%s %q=%x", name, k, v))
				return nil
			}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
