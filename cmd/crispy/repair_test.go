package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/embedded"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// seedStore writes n events of tenant demo into the embedded store of dataDir and returns the log's
// path.
func seedStore(t *testing.T, dataDir string, n int) string {
	t.Helper()
	dir := filepath.Join(dataDir, "events")
	s, err := embedded.Open(dir, embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	st := tenant.MustStream(tenant.MustParse("demo"), "session", "x")
	for i := 0; i < n; i++ {
		if _, err := s.Append(context.Background(), st, eventstore.Any, eventstore.EventData{Type: "t.E", Data: []byte(fmt.Sprintf(`{"i":%d}`, i))}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "events.log")
}

// tearTail appends half a record to the log, as a crash in the middle of a write leaves it.
func tearTail(t *testing.T, log string) {
	t.Helper()
	f, err := os.OpenFile(log, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write([]byte{0x40, 0, 0, 0, 1, 2, 3, 4, 1, 'x', 'y'}); err != nil {
		t.Fatal(err)
	}
}

type dirState map[string]struct {
	data  []byte
	mtime time.Time
}

// stateOf reads every file under dir with its modification time, and the modification time of
// every folder (a file created and removed again shows there), after moving the times an hour back
// so that a write within the same clock tick still shows.
func stateOf(t *testing.T, dir string, backdate bool) dirState {
	t.Helper()
	st := dirState{}
	var dirs []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, p)
			return nil
		}
		if backdate {
			old := time.Now().Add(-time.Hour).Truncate(time.Second)
			if err := os.Chtimes(p, old, old); err != nil {
				return err
			}
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		st[p] = struct {
			data  []byte
			mtime time.Time
		}{b, fi.ModTime()}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		if backdate {
			old := time.Now().Add(-time.Hour).Truncate(time.Second)
			if err := os.Chtimes(d, old, old); err != nil {
				t.Fatal(err)
			}
		}
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		st[d+string(filepath.Separator)] = struct {
			data  []byte
			mtime time.Time
		}{nil, fi.ModTime()}
	}
	return st
}

func (before dirState) unchanged(t *testing.T, after dirState) {
	t.Helper()
	for p, b := range before {
		a, ok := after[p]
		switch {
		case !ok:
			t.Errorf("%s was removed", p)
		case !bytes.Equal(a.data, b.data):
			t.Errorf("%s changed: %d bytes before, %d after", p, len(b.data), len(a.data))
		case !a.mtime.Equal(b.mtime):
			t.Errorf("%s was written (mtime %s, was %s)", p, a.mtime, b.mtime)
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("%s was created", p)
		}
	}
}

func runCmd(args ...string) (stdout, stderr string, err error) {
	var out, errb bytes.Buffer
	err = run(context.Background(), args, stdio{in: strings.NewReader(""), out: &out, err: &errb}, envOf(nil))
	return out.String(), errb.String(), err
}

func exitCode(err error) int {
	var ex exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ex):
		return ex.code
	default:
		return 1
	}
}

// crispy verify on a log with a torn tail changes no byte and no mtime in the data folder, and says
// so with its own exit code (4), distinct from a broken chain (2) and a corrupt log (3).
func TestVerifyOfATornLogWritesNothingAndReportsIt(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	log := seedStore(t, data, 3)
	tearTail(t, log)
	before := stateOf(t, data, true)

	out, _, err := runCmd("verify", "--tenant", "demo", "--data-dir", data)
	before.unchanged(t, stateOf(t, data, false))
	if code := exitCode(err); code != exitTornTail || !strings.Contains(out, "TORN TAIL") || !strings.Contains(err.Error(), "crispy repair") {
		t.Fatalf("verify of a torn log: exit %d, %v\n%s", code, err, out)
	}
	if !strings.Contains(out, "ok: 3 events of tenant demo verified") {
		t.Fatalf("verify did not check the events before the torn tail:\n%s", out)
	}

	// Replay only reads too: the events before the tail, a note about it, and the log untouched.
	out, errOut, err := runCmd("replay", "--tenant", "demo", "--data-dir", data)
	before.unchanged(t, stateOf(t, data, false))
	if err != nil || strings.Count(out, "\n") != 3 || !strings.Contains(errOut, "torn tail of 11 bytes") {
		t.Fatalf("replay of a torn log: %v\n%s\n%s", err, out, errOut)
	}
}

func TestVerifyFindingsHaveTheirOwnExitCodes(t *testing.T) {
	t.Parallel()
	// Intact: exit 0.
	data := t.TempDir()
	log := seedStore(t, data, 3)
	if out, _, err := runCmd("verify", "--tenant", "demo", "--data-dir", data); err != nil || !strings.Contains(out, "ok: 3 events") {
		t.Fatalf("verify of an intact log: %v\n%s", err, out)
	}
	// Damaged before its end: corrupt, exit 3, and nothing written.
	b, _ := os.ReadFile(log)
	b[20] ^= 0xff
	os.WriteFile(log, b, 0o640)
	before := stateOf(t, data, true)
	_, _, err := runCmd("verify", "--tenant", "demo", "--data-dir", data)
	before.unchanged(t, stateOf(t, data, false))
	if code := exitCode(err); code != exitCorrupt || !strings.Contains(err.Error(), "backup") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("verify of a corrupt log: exit %d, %v", code, err)
	}
	// A missing store: an error naming --data-dir, and nothing created.
	missing := filepath.Join(t.TempDir(), "nothing")
	if _, _, err := runCmd("verify", "--tenant", "demo", "--data-dir", missing); exitCode(err) != 1 || !strings.Contains(err.Error(), "--data-dir") {
		t.Fatalf("verify of a missing store: %v", err)
	}
	if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("verify created %s", missing)
	}
}

// Verify may run beside a live server: it reads the consistent prefix and writes nothing.
func TestVerifyBesideALiveServer(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	seedStore(t, data, 2)
	w, err := embedded.Open(filepath.Join(data, "events"), embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	out, _, err := runCmd("verify", "--tenant", "demo", "--data-dir", data)
	if err != nil || !strings.Contains(out, "ok: 2 events") || !strings.Contains(out, "a server is writing") {
		t.Fatalf("verify beside a live writer: %v\n%s", err, out)
	}
	// So does replay: an analyst need not stop the server to read a tenant's history.
	if out, _, err := runCmd("replay", "--tenant", "demo", "--data-dir", data); err != nil || strings.Count(out, "\n") != 2 {
		t.Fatalf("replay beside a live writer: %v\n%s", err, out)
	}
}

func TestRepairCutsTheTornTailKeepsACopyAndRefusesALiveStore(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	log := seedStore(t, data, 3)
	good, _ := os.ReadFile(log)
	tearTail(t, log)
	torn, _ := os.ReadFile(log)

	// Refused while a server holds the store (its lock; opening the store would cut the tail).
	live := holdLock(t, filepath.Join(data, "events", "LOCK"))
	before := stateOf(t, data, true)
	if _, _, err := runCmd("repair", "--data-dir", data); err == nil || !strings.Contains(err.Error(), "in use") || !strings.Contains(err.Error(), "stop the server") {
		t.Fatalf("repair of a store in use: %v", err)
	}
	before.unchanged(t, stateOf(t, data, false))
	live()

	out, _, err := runCmd("repair", "--dry-run", "--data-dir", data)
	if err != nil || !strings.Contains(out, "would cut 11 bytes") {
		t.Fatalf("repair --dry-run: %v\n%s", err, out)
	}
	if b, _ := os.ReadFile(log); !bytes.Equal(b, torn) {
		t.Fatal("repair --dry-run changed the log")
	}

	out, _, err = runCmd("repair", "--data-dir", data)
	if err != nil || !strings.Contains(out, "cut 11 bytes from offset") {
		t.Fatalf("repair: %v\n%s", err, out)
	}
	if b, _ := os.ReadFile(log); !bytes.Equal(b, good) {
		t.Fatalf("repaired log is %d bytes, want the %d bytes before the tear", len(b), len(good))
	}
	kept, _ := filepath.Glob(log + ".torn-*")
	if len(kept) != 1 {
		t.Fatalf("kept copies: %v", kept)
	}
	if b, _ := os.ReadFile(kept[0]); !bytes.Equal(b, torn[len(good):]) || !strings.Contains(out, kept[0]) {
		t.Fatalf("the kept copy %s holds %q, want the cut bytes, and the output names it:\n%s", kept[0], b, out)
	}
	if out, _, err := runCmd("verify", "--tenant", "demo", "--data-dir", data); err != nil || !strings.Contains(out, "ok: 3 events") {
		t.Fatalf("verify after repair: %v\n%s", err, out)
	}
	if out, _, err := runCmd("repair", "--data-dir", data); err != nil || !strings.Contains(out, "nothing to repair") {
		t.Fatalf("second repair: %v\n%s", err, out)
	}
}

// holdLock takes the store's lock as a running server holds it, and returns its release.
func holdLock(t *testing.T, path string) func() {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	return func() { f.Close() }
}
