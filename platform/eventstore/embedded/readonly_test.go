package embedded_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/embedded"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// snapshot is everything a read-only open must leave alone: every file of the store's folder with
// its bytes and modification time.
type snapshot map[string]fileState

type fileState struct {
	data  []byte
	mtime time.Time
}

func takeSnapshot(t *testing.T, dir string) snapshot {
	t.Helper()
	s := snapshot{}
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		s[rel] = fileState{data: b, mtime: fi.ModTime()}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (s snapshot) mustEqual(t *testing.T, after snapshot) {
	t.Helper()
	for name, b := range s {
		a, ok := after[name]
		switch {
		case !ok:
			t.Errorf("%s was removed", name)
		case !bytes.Equal(a.data, b.data):
			t.Errorf("%s changed: %d bytes before, %d after", name, len(b.data), len(a.data))
		case !a.mtime.Equal(b.mtime):
			t.Errorf("%s was written: mtime %s before, %s after", name, b.mtime, a.mtime)
		}
	}
	for name := range after {
		if _, ok := s[name]; !ok {
			t.Errorf("%s was created", name)
		}
	}
}

// backdate sets every file's mtime an hour back, so a write in the same clock tick still shows.
func backdate(t *testing.T, dir string) {
	t.Helper()
	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		return os.Chtimes(p, old, old)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// damages are the torn tails a crash (or a bit flip in the last record) leaves; want is how many of
// 10 appended events stay readable.
var damages = map[string]struct {
	damage func(path string, size int64) error
	want   int
}{
	"garbage appended": {func(p string, _ int64) error {
		f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = f.Write([]byte{0x40, 0, 0, 0, 1, 2, 3, 4, 1, 'x', 'y'})
		return err
	}, 10},
	"last record cut short": {func(p string, size int64) error { return os.Truncate(p, size-7) }, 9},
	"last record bit flip": {func(p string, size int64) error {
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		b := make([]byte, 1)
		if _, err := f.ReadAt(b, size-3); err != nil {
			return err
		}
		b[0] ^= 0xff
		_, err = f.WriteAt(b, size-3)
		return err
	}, 9},
}

// tornStore writes 10 events in dir, closes the store and damages the end of its log. It returns
// the log's size before the damage and after.
func tornStore(t *testing.T, dir string, damage func(string, int64) error) (good, damaged int64) {
	t.Helper()
	s := open(t, dir)
	appendN(t, s, tenant.MustStream(acme, "session", "x"), 10)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "events.log")
	fi, _ := os.Stat(path)
	if err := damage(path, fi.Size()); err != nil {
		t.Fatal(err)
	}
	fd, _ := os.Stat(path)
	return fi.Size(), fd.Size()
}

func TestOpenReadOnlyReportsATornTailAndWritesNothing(t *testing.T) {
	t.Parallel()
	for name, c := range damages {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			tornStore(t, dir, c.damage)
			backdate(t, dir)
			before := takeSnapshot(t, dir)

			s, err := embedded.OpenReadOnly(dir, embedded.Options{})
			if err != nil {
				t.Fatal(err)
			}
			evs := verifyAll(t, s, acme)
			if len(evs) != c.want {
				t.Fatalf("read %d events, want %d", len(evs), c.want)
			}
			torn := s.TornTail()
			if torn == nil || s.Live() {
				t.Fatalf("torn tail %v (live %v), want one reported", torn, s.Live())
			}
			size := int64(len(before["events.log"].data))
			if torn.Offset != s.Size() || torn.Offset+torn.Bytes != size || torn.Reason == "" {
				t.Fatalf("torn tail %+v of a %d-byte log with a %d-byte valid prefix", torn, size, s.Size())
			}
			_, err = s.Append(context.Background(), tenant.MustStream(acme, "session", "x"), eventstore.Any, eventstore.EventData{Type: "t.E"})
			if !errors.Is(err, eventstore.ErrReadOnly) {
				t.Fatalf("append to a read-only store: %v", err)
			}
			if err := s.SetStreamMetadata(context.Background(), tenant.MustStream(acme, "session", "x"), eventstore.StreamMetadata{}); !errors.Is(err, eventstore.ErrReadOnly) {
				t.Fatalf("metadata write to a read-only store: %v", err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			before.mustEqual(t, takeSnapshot(t, dir))
		})
	}
}

func TestOpenReadOnlyOfAnIntactLogReportsNothing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := open(t, dir)
	appendN(t, s, tenant.MustStream(acme, "session", "x"), 4)
	s.Close()
	r, err := embedded.OpenReadOnly(dir, embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.TornTail() != nil || r.Live() || len(verifyAll(t, r, acme)) != 4 {
		t.Fatalf("intact log: torn %v live %v", r.TornTail(), r.Live())
	}
}

func TestOpenReadOnlyOfAMissingStoreCreatesNothing(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "nothing-here")
	if _, err := embedded.OpenReadOnly(dir, embedded.Options{}); err == nil || !strings.Contains(err.Error(), "--data-dir") {
		t.Fatalf("read-only open of a missing store: %v, want an error naming --data-dir", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the read-only open created %s", dir)
	}
}

// Verification can run beside a live server: it reads the consistent prefix, and bytes past the last
// whole record are the server's write in flight, not a finding.
func TestOpenReadOnlyBesideALiveWriter(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	w := open(t, dir)
	defer w.Close()
	st := tenant.MustStream(acme, "session", "x")
	appendN(t, w, st, 5)
	lock, _ := os.ReadFile(filepath.Join(dir, "LOCK"))

	r, err := embedded.OpenReadOnly(dir, embedded.Options{})
	if err != nil {
		t.Fatalf("read-only open beside a writer: %v", err)
	}
	if !r.Live() || r.TornTail() != nil || len(verifyAll(t, r, acme)) != 5 {
		t.Fatalf("live: %v torn: %v", r.Live(), r.TornTail())
	}
	r.Close()

	// A write in flight: half a record past the end.
	f, err := os.OpenFile(filepath.Join(dir, "events.log"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte{0x40, 0, 0, 0, 1, 2, 3, 4, 1, 'x'})
	f.Close()
	r, err = embedded.OpenReadOnly(dir, embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if !r.Live() || r.TornTail() != nil || len(verifyAll(t, r, acme)) != 5 {
		t.Fatalf("in-flight bytes: live %v torn %v", r.Live(), r.TornTail())
	}
	if after, _ := os.ReadFile(filepath.Join(dir, "LOCK")); !bytes.Equal(after, lock) {
		t.Fatalf("the lock file was rewritten: %q -> %q", lock, after)
	}
	// The writer is unaffected (it appends at its acknowledged size, over the bytes we added).
	if _, err := w.Append(context.Background(), st, eventstore.Exact(4), eventstore.EventData{Type: "t.E"}); err != nil {
		t.Fatalf("writer after a read-only open: %v", err)
	}
}

func TestRepairCutsATornTailAndKeepsACopy(t *testing.T) {
	t.Parallel()
	for name, c := range damages {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			tornStore(t, dir, c.damage)
			path := filepath.Join(dir, "events.log")
			damaged, _ := os.ReadFile(path)
			// A log copied without its lock file: the dry run must not create one either.
			if err := os.Remove(filepath.Join(dir, "LOCK")); err != nil {
				t.Fatal(err)
			}

			backdate(t, dir)
			before := takeSnapshot(t, dir)
			dry, err := embedded.Repair(dir, embedded.Options{}, true)
			if err != nil || dry.Torn == nil || dry.Cut || dry.Events != c.want {
				t.Fatalf("dry run: %+v %v", dry, err)
			}
			before.mustEqual(t, takeSnapshot(t, dir))

			rep, err := embedded.Repair(dir, embedded.Options{}, false)
			if err != nil || !rep.Cut || rep.Torn == nil || rep.Events != c.want || rep.Size != int64(len(damaged)) {
				t.Fatalf("repair: %+v %v", rep, err)
			}
			kept, err := os.ReadFile(rep.Kept)
			if err != nil || !bytes.Equal(kept, damaged[rep.Torn.Offset:]) {
				t.Fatalf("kept copy %s: %v, %d bytes, want the %d cut bytes", rep.Kept, err, len(kept), rep.Torn.Bytes)
			}
			after, _ := os.ReadFile(path)
			if !bytes.Equal(after, damaged[:rep.Torn.Offset]) {
				t.Fatalf("repaired log is %d bytes, want the %d-byte valid prefix unchanged", len(after), rep.Torn.Offset)
			}
			r, err := embedded.OpenReadOnly(dir, embedded.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if r.TornTail() != nil || len(verifyAll(t, r, acme)) != c.want {
				t.Fatalf("after repair: torn %v", r.TornTail())
			}
			again, err := embedded.Repair(dir, embedded.Options{}, false)
			if err != nil || again.Cut || again.Torn != nil {
				t.Fatalf("second repair: %+v %v", again, err)
			}
		})
	}
}

func TestRepairRefusesALiveStoreAndACorruptLog(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	w := open(t, dir)
	appendN(t, w, tenant.MustStream(acme, "session", "x"), 3)
	for _, dry := range []bool{false, true} {
		if _, err := embedded.Repair(dir, embedded.Options{}, dry); !errors.Is(err, embedded.ErrInUse) || !strings.Contains(err.Error(), fmt.Sprint(os.Getpid())) {
			t.Fatalf("repair (dry run %v) of a store in use: %v, want ErrInUse naming the holder's pid", dry, err)
		}
	}
	w.Close()

	path := filepath.Join(dir, "events.log")
	b, _ := os.ReadFile(path)
	b[20] ^= 0xff // inside the first record: corruption, not a torn tail
	os.WriteFile(path, b, 0o640)
	if _, err := embedded.Repair(dir, embedded.Options{}, false); !errors.Is(err, eventstore.ErrCorrupt) {
		t.Fatalf("repair of a corrupt log: %v, want ErrCorrupt", err)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(after, b) {
		t.Fatal("repair changed a corrupt log")
	}
	if _, err := embedded.OpenReadOnly(dir, embedded.Options{}); !errors.Is(err, eventstore.ErrCorrupt) {
		t.Fatalf("read-only open of a corrupt log: %v, want ErrCorrupt", err)
	}
}
