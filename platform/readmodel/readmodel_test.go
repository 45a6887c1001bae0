package readmodel_test

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/readmodel"
)

func open(t *testing.T, path string, version uint64, log *bytes.Buffer) *readmodel.Store {
	t.Helper()
	o := readmodel.Options{Version: version}
	if log != nil {
		o.Log = slog.New(slog.NewTextHandler(log, nil))
	}
	s, err := readmodel.Open(path, o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func put(t *testing.T, s *readmodel.Store, key, val string, pos uint64) {
	t.Helper()
	err := s.Update(func(tx *readmodel.Tx) error {
		if err := tx.Bucket().Put([]byte(key), []byte(val)); err != nil {
			return err
		}
		return tx.SetPosition(eventPos(pos))
	})
	if err != nil {
		t.Fatal(err)
	}
}

func get(t *testing.T, s *readmodel.Store, key string) (string, uint64) {
	t.Helper()
	var val string
	var pos uint64
	err := s.View(func(tx *readmodel.Tx) error {
		val = string(tx.Bucket().Get([]byte(key)))
		pos = uint64(tx.Position())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return val, pos
}

func TestStateAndPositionSurviveAReopen(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "m.db")
	s := open(t, path, 1, nil)
	if s.Rebuilt() != "new file" || s.Position() != 0 {
		t.Fatalf("new file: rebuilt %q, position %d", s.Rebuilt(), s.Position())
	}
	put(t, s, "a", "1", 7)
	if s.Position() != 7 {
		t.Fatalf("position after commit %d, want 7", s.Position())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, path, 1, nil)
	defer s.Close()
	if s.Rebuilt() != "" || s.Position() != 7 {
		t.Fatalf("reopen: rebuilt %q, position %d; want a resume at 7", s.Rebuilt(), s.Position())
	}
	if v, pos := get(t, s, "a"); v != "1" || pos != 7 {
		t.Fatalf("reopen read %q at %d", v, pos)
	}
}

func TestARolledBackTransactionLeavesNoTrace(t *testing.T) {
	t.Parallel()
	s := open(t, filepath.Join(t.TempDir(), "m.db"), 1, nil)
	defer s.Close()
	put(t, s, "a", "1", 3)
	tx, err := s.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Bucket().Put([]byte("a"), []byte("2")); err != nil {
		t.Fatal(err)
	}
	if err := tx.SetPosition(9); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if v, pos := get(t, s, "a"); v != "1" || pos != 3 || s.Position() != 3 {
		t.Fatalf("after rollback: %q at %d (store says %d)", v, pos, s.Position())
	}
	if err := s.Update(func(tx *readmodel.Tx) error { return tx.SetPosition(2) }); err == nil {
		t.Fatal("the position moved back")
	}
	if err := s.Update(func(tx *readmodel.Tx) error { panic("handler bug") }); err == nil || !strings.Contains(err.Error(), "handler bug") {
		t.Fatalf("a panicking update: %v", err)
	}
	if v, pos := get(t, s, "a"); v != "1" || pos != 3 {
		t.Fatalf("after a failed update: %q at %d", v, pos)
	}
}

func TestACorruptFileIsMovedAsideAndStartsEmpty(t *testing.T) {
	t.Parallel()
	for name, damage := range map[string]func(path string) error{
		"overwritten": func(path string) error {
			f, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.WriteAt(bytes.Repeat([]byte{0xA5}, 16<<10), 0)
			return err
		},
		"truncated to a few bytes": func(path string) error { return os.Truncate(path, 100) },
		"not a database": func(path string) error {
			return os.WriteFile(path, bytes.Repeat([]byte("{\"json\":true}\n"), 1000), 0o640)
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			path := filepath.Join(dir, "m.db")
			s := open(t, path, 1, nil)
			put(t, s, "a", "1", 5)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if err := damage(path); err != nil {
				t.Fatal(err)
			}
			var log bytes.Buffer
			s = open(t, path, 1, &log)
			defer s.Close()
			if s.Position() != 0 || s.Rebuilt() == "" {
				t.Fatalf("damaged file: position %d, rebuilt %q; want an empty model", s.Position(), s.Rebuilt())
			}
			if v, _ := get(t, s, "a"); v != "" {
				t.Fatalf("state survived the damage: %q", v)
			}
			if !strings.Contains(log.String(), "moved aside") {
				t.Fatalf("no log line about the rebuild: %s", log.String())
			}
			aside, _ := filepath.Glob(path + ".corrupt-*")
			if len(aside) != 1 {
				t.Fatalf("the damaged file was not kept aside: %v", aside)
			}
			put(t, s, "b", "2", 1)
		})
	}
}

func TestAnotherVersionEmptiesTheState(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "m.db")
	s := open(t, path, 1, nil)
	put(t, s, "a", "1", 5)
	s.Close()
	var log bytes.Buffer
	s = open(t, path, 2, &log)
	defer s.Close()
	if s.Position() != 0 || !strings.Contains(s.Rebuilt(), "format changed") || !strings.Contains(log.String(), "format changed") {
		t.Fatalf("version 2 over 1: position %d, rebuilt %q, log %s", s.Position(), s.Rebuilt(), log.String())
	}
	if v, _ := get(t, s, "a"); v != "" {
		t.Fatalf("old state kept: %q", v)
	}
}

func TestResetEmptiesTheState(t *testing.T) {
	t.Parallel()
	s := open(t, filepath.Join(t.TempDir(), "m.db"), 1, nil)
	defer s.Close()
	put(t, s, "a", "1", 5)
	if err := s.Reset(1); err != nil {
		t.Fatal(err)
	}
	if v, pos := get(t, s, "a"); v != "" || pos != 0 || s.Position() != 0 {
		t.Fatalf("after reset: %q at %d", v, pos)
	}
}

func TestAFileInUseIsRefused(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "m.db")
	s := open(t, path, 1, nil)
	defer s.Close()
	_, err := readmodel.Open(path, readmodel.Options{Version: 1})
	if err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second open: %v", err)
	}
	if aside, _ := filepath.Glob(path + ".corrupt-*"); len(aside) != 0 {
		t.Fatalf("a file in use was taken for corrupt: %v", aside)
	}
}

func TestAnUnusableFolderIsAnErrorNotARebuild(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o640); err != nil {
		t.Fatal(err)
	}
	_, err := readmodel.Open(filepath.Join(file, "m.db"), readmodel.Options{})
	if err == nil || errors.Is(err, readmodel.ErrCorrupt) {
		t.Fatalf("open under a file: %v", err)
	}
}

func eventPos(p uint64) eventstore.Position { return eventstore.Position(p) }

// counter is a Deferred: a count kept in memory through a transaction, written once at its commit.
type counter struct {
	key     string
	n       int
	flushes *int
	fail    error
}

func (c *counter) Flush(tx *readmodel.Tx) error {
	*c.flushes++
	if c.fail != nil {
		return c.fail
	}
	return tx.Bucket().Put([]byte(c.key), []byte(strings.Repeat("x", c.n)))
}

type counterKey struct{}

func TestDeferredStateIsWrittenOnceAtCommitAndDroppedWithARollback(t *testing.T) {
	t.Parallel()
	s := open(t, filepath.Join(t.TempDir(), "m.db"), 1, nil)
	defer s.Close()
	flushes := 0
	add := func(tx *readmodel.Tx, fail error) {
		c := tx.Deferred(counterKey{}, func() readmodel.Deferred { return &counter{key: "n", flushes: &flushes, fail: fail} }).(*counter)
		c.n++
	}

	// Three events in one transaction: one write, at the commit, with the newest count.
	err := s.Update(func(tx *readmodel.Tx) error {
		for range 3 {
			add(tx, nil)
		}
		if v := tx.Bucket().Get([]byte("n")); v != nil {
			t.Errorf("written before the commit: %q", v)
		}
		return tx.SetPosition(3)
	})
	if err != nil {
		t.Fatal(err)
	}
	if v, pos := get(t, s, "n"); v != "xxx" || pos != 3 || flushes != 1 {
		t.Fatalf("after commit: %q at %d, %d flushes; want xxx at 3, 1 flush", v, pos, flushes)
	}

	// Rolled back: never flushed, nothing written.
	tx, err := s.Begin()
	if err != nil {
		t.Fatal(err)
	}
	add(tx, nil)
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if v, _ := get(t, s, "n"); v != "xxx" || flushes != 1 {
		t.Fatalf("after rollback: %q, %d flushes", v, flushes)
	}

	// A failing flush fails the commit, and nothing of the transaction is written; the file takes
	// the next transaction (the failed one does not hold its lock).
	boom := errors.New("boom")
	tx, err = s.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Bucket().Put([]byte("other"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	add(tx, boom)
	if err := tx.SetPosition(5); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); !errors.Is(err, boom) {
		t.Fatalf("commit with a failing flush: %v, want %v", err, boom)
	}
	_ = tx.Rollback()
	if v, pos := get(t, s, "other"); v != "" || pos != 3 || s.Position() != 3 {
		t.Fatalf("after a failed flush: other=%q at %d (store says %d)", v, pos, s.Position())
	}
	put(t, s, "after", "1", 6)
	if v, pos := get(t, s, "after"); v != "1" || pos != 6 {
		t.Fatalf("next transaction: %q at %d", v, pos)
	}
}
