package embedded_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/embedded"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

var acme = tenant.MustParse("acme")

func open(t testing.TB, dir string) *embedded.Store {
	t.Helper()
	s, err := embedded.Open(dir, embedded.Options{})
	if err != nil {
		t.Fatalf("open %s: %v", dir, err)
	}
	return s
}

func TestStore(t *testing.T) {
	t.Parallel()
	eventstoretest.Run(t, func(t *testing.T) eventstore.Store { return open(t, t.TempDir()) })
}

func appendN(t testing.TB, s eventstore.Store, st tenant.Stream, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		if _, err := s.Append(context.Background(), st, eventstore.Any, eventstore.EventData{Type: "t.E", Data: []byte(fmt.Sprintf(`{"n":%d}`, i))}); err != nil {
			t.Fatal(err)
		}
	}
}

func verifyAll(t *testing.T, s eventstore.Store, tid tenant.ID) []eventstore.Event {
	t.Helper()
	evs, err := s.ReadTenant(context.Background(), tid, eventstore.Start, 0)
	if err != nil {
		t.Fatal(err)
	}
	v := eventstore.NewChainVerifier()
	for i := range evs {
		if err := v.Check(&evs[i]); err != nil {
			t.Fatalf("chain: %v", err)
		}
	}
	return evs
}

func TestReopenKeepsEverything(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := open(t, dir)
	a, b := tenant.MustStream(acme, "session", "a"), tenant.MustStream(acme, "session", "b")
	appendN(t, s, a, 5)
	appendN(t, s, b, 3)
	cut := uint64(2)
	if err := s.SetStreamMetadata(context.Background(), b, eventstore.StreamMetadata{TruncateBefore: &cut}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir)
	defer s.Close()
	evs := verifyAll(t, s, acme)
	if len(evs) != 6 {
		t.Fatalf("after reopen read %d events, want 6 (5 + 1 after truncation)", len(evs))
	}
	r, err := s.Append(context.Background(), a, eventstore.Exact(4), eventstore.EventData{Type: "t.E"})
	if err != nil {
		t.Fatalf("append continues after reopen: %v", err)
	}
	if r.NextExpected != 5 || r.Position != 9 {
		t.Fatalf("after reopen next revision %d position %d, want 5 and 9", r.NextExpected, r.Position)
	}
	md, _ := s.StreamMetadata(context.Background(), b)
	if md.TruncateBefore == nil || *md.TruncateBefore != 2 {
		t.Fatalf("metadata lost on reopen: %+v", md)
	}
}

func TestSecondOpenOfSameDirIsRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := open(t, dir)
	defer s.Close()
	if _, err := embedded.Open(dir, embedded.Options{}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second open: %v, want an 'in use' error", err)
	}
}

func TestTornTailIsTruncated(t *testing.T) {
	t.Parallel()
	for name, c := range damages {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			tornStore(t, dir, c.damage)
			s := open(t, dir)
			defer s.Close()
			evs := verifyAll(t, s, acme)
			if len(evs) != c.want { // a damaged last append is dropped, never read
				t.Fatalf("read %d events after repair, want %d", len(evs), c.want)
			}
			st := tenant.MustStream(acme, "session", "x")
			if _, err := s.Append(context.Background(), st, eventstore.Exact(uint64(c.want-1)), eventstore.EventData{Type: "t.E"}); err != nil {
				t.Fatalf("append after repair: %v", err)
			}
		})
	}
}

// A record damaged in the middle of the log is never served and never cut. An open indexes only
// the log's tail, so it is found when it is read (ErrCorrupt naming its offset), by a read-only open
// (verification checks every record), and by an open that rebuilds its index (which reads all).
func TestCorruptionInTheMiddleIsNeverServed(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := open(t, dir)
	st := tenant.MustStream(acme, "session", "x")
	appendN(t, s, st, 10)
	s.Close()
	path := filepath.Join(dir, "events.log")
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	f.ReadAt(b, 30)
	b[0] ^= 0xff
	f.WriteAt(b, 30)
	f.Close()
	wantCorrupt := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, eventstore.ErrCorrupt) || !strings.Contains(err.Error(), "offset 0") {
			t.Fatalf("%s of a log corrupted in the middle: %v, want ErrCorrupt naming offset 0", what, err)
		}
	}

	s = open(t, dir)
	_, err = s.ReadStream(context.Background(), st, 0, 0)
	wantCorrupt("read of the stream", err)
	_, err = s.ReadTenant(context.Background(), acme, eventstore.Start, 0)
	wantCorrupt("read of the tenant", err)
	if evs, err := s.ReadStream(context.Background(), st, 1, 0); err != nil || len(evs) != 9 {
		t.Fatalf("read of the undamaged events: %d, %v", len(evs), err)
	}
	s.Close()

	_, err = embedded.OpenReadOnly(dir, embedded.Options{})
	wantCorrupt("read-only open", err)
	if err := os.RemoveAll(filepath.Join(dir, "index")); err != nil {
		t.Fatal(err)
	}
	_, err = embedded.Open(dir, embedded.Options{})
	wantCorrupt("open that rebuilds the index", err)
	fi, _ := os.Stat(path)
	if fi.Size() == 0 {
		t.Fatal("the corrupt log was truncated")
	}
}

// TestCrashChild is the child side of TestAcknowledgedAppendsSurviveKill: it appends from several
// goroutines and prints the id of every acknowledged event until it is killed.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv("CRISPY_CRASH_CHILD_DIR")
	if dir == "" {
		t.Skip("helper process for TestAcknowledgedAppendsSurviveKill")
	}
	s, err := embedded.Open(dir, embedded.Options{})
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(3)
	}
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			st := tenant.MustStream(acme, "session", fmt.Sprintf("w%d", w))
			for i := 0; ; i++ {
				r, err := s.Append(context.Background(), st, eventstore.Any,
					eventstore.EventData{Type: "t.E", Data: []byte(fmt.Sprintf(`{"w":%d,"i":%d,"pad":"%s"}`, w, i, strings.Repeat("x", 150)))})
				if err != nil {
					return
				}
				mu.Lock()
				fmt.Fprintln(out, "ACK", r.Events[0].ID)
				out.Flush()
				mu.Unlock()
			}
		}(w)
	}
	wg.Wait()
}

func TestAcknowledgedAppendsSurviveKill(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("spawns a child process")
	}
	dir := t.TempDir()
	for round := 0; round < 3; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.v")
		cmd.Env = append(os.Environ(), "CRISPY_CRASH_CHILD_DIR="+dir)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		acked := map[string]bool{}
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			if strings.HasPrefix(line, "ERR") {
				t.Fatalf("child: %s", line)
			}
			if id, ok := strings.CutPrefix(line, "ACK "); ok {
				acked[id] = true
			}
			if len(acked) == 500*(round+1) {
				// Kill while the writers are mid-append.
				_ = cmd.Process.Signal(syscall.SIGKILL)
				break
			}
		}
		// Acks printed before the kill landed are acknowledged too.
		for sc.Scan() {
			if id, ok := strings.CutPrefix(sc.Text(), "ACK "); ok {
				acked[id] = true
			}
		}
		_ = cmd.Wait()
		s := open(t, dir)
		evs := verifyAll(t, s, acme)
		have := make(map[string]bool, len(evs))
		for _, e := range evs {
			have[e.ID] = true
		}
		for id := range acked {
			if !have[id] {
				t.Fatalf("round %d: acknowledged event %s is missing after kill -9 (%d acked, %d on disk)", round, id, len(acked), len(evs))
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		t.Logf("round %d: %d acknowledged, %d on disk after kill -9", round, len(acked), len(evs))
	}
}

func TestSubscribeSeesEventsAfterReopen(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := open(t, dir)
	appendN(t, s, tenant.MustStream(acme, "session", "x"), 3)
	s.Close()
	s = open(t, dir)
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n := 0
	err := s.Subscribe(ctx, eventstore.SubscribeOptions{Tenant: acme}, func(context.Context, eventstore.Event) error {
		n++
		if n == 3 {
			return errStop
		}
		return nil
	})
	if !errors.Is(err, errStop) || n != 3 {
		t.Fatalf("subscribe after reopen: %v, %d events", err, n)
	}
}

var errStop = errors.New("stop")
