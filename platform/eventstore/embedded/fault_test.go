package embedded_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/embedded"
	"github.com/crispy-enigma/crispy/platform/health"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// logCounter counts log messages, so a test can wait for the healer's attempts instead of sleeping.
type logCounter struct {
	mu   sync.Mutex
	msgs map[string]int
}

func (c *logCounter) Enabled(context.Context, slog.Level) bool { return true }
func (c *logCounter) Handle(_ context.Context, r slog.Record) error {
	c.mu.Lock()
	c.msgs[r.Message]++
	c.mu.Unlock()
	return nil
}
func (c *logCounter) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c *logCounter) WithGroup(string) slog.Handler      { return c }
func (c *logCounter) count(prefix string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for m, k := range c.msgs {
		if strings.HasPrefix(m, prefix) {
			n += k
		}
	}
	return n
}

// eventually polls cond for up to a generous minute: waiting, never a speed assertion.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func wantStorageRefusal(t *testing.T, err error, cause error) {
	t.Helper()
	if !errors.Is(err, eventstore.ErrStorageUnavailable) {
		t.Fatalf("append during a storage fault: %v, want ErrStorageUnavailable", err)
	}
	if e, ok := apperr.As(fmt.Errorf("wrapped by a module: %w", err)); !ok || e.Kind != apperr.KindUnavailable || e.Code != "storage_unavailable" || e.RetryAfterSec <= 0 {
		t.Fatalf("the refusal as an apperr: %+v", e)
	}
	if cause != nil && !errors.Is(err, cause) {
		t.Fatalf("the refusal %v does not keep its cause %v", err, cause)
	}
}

// wantUncertainRefusal checks the refusal of an append whose cut back is not durable: 503
// storage_unavailable as well, but ErrStorageOutcomeUnknown, never "nothing was recorded".
func wantUncertainRefusal(t *testing.T, err error, cause error) {
	t.Helper()
	if errors.Is(err, eventstore.ErrStorageUnavailable) || !errors.Is(err, eventstore.ErrStorageOutcomeUnknown) || !errors.Is(err, cause) {
		t.Fatalf("append whose cut back failed: %v, want ErrStorageOutcomeUnknown (not 'nothing was recorded') with cause %v", err, cause)
	}
	if e, ok := apperr.As(fmt.Errorf("wrapped by a module: %w", err)); !ok || e.Kind != apperr.KindUnavailable || e.Code != "storage_unavailable" || e.RetryAfterSec <= 0 {
		t.Fatalf("the uncertain refusal as an apperr: %+v", e)
	}
}

func wantDegraded(t *testing.T, s *embedded.Store) {
	t.Helper()
	status, st := health.Classify(eventstore.CheckHealth(context.Background(), s))
	if status != health.Degraded || st == nil || strings.Contains(st.Reason, "events.log") {
		t.Fatalf("health during a storage fault: %s %+v, want degraded with a reason that names no path", status, st)
	}
}

func ev(i int) eventstore.EventData {
	return eventstore.EventData{Type: "t.E", Data: []byte(fmt.Sprintf(`{"n":%d,"pad":%q}`, i, strings.Repeat("p", 300)))}
}

// appender appends numbered events to one of acme's streams and remembers the acknowledged ones.
type appender struct {
	s     *embedded.Store
	st    tenant.Stream
	acked map[string]bool
}

func newAppender(s *embedded.Store, stream string) *appender {
	return &appender{s: s, st: tenant.MustStream(acme, "session", stream), acked: map[string]bool{}}
}

func (a *appender) add(i int) error {
	r, err := a.s.Append(context.Background(), a.st, eventstore.Any, ev(i))
	if err == nil {
		a.acked[r.Events[0].ID] = true
	}
	return err
}

// reopenWantAcked opens the closed store in dir again and checks that its log holds exactly the
// acknowledged events: none lost, none refused.
func (a *appender) reopenWantAcked(t *testing.T, dir string) {
	t.Helper()
	s := open(t, dir)
	defer s.Close()
	evs := verifyAll(t, s, acme)
	if len(evs) != len(a.acked) {
		t.Fatalf("after reopen %d events, want the %d acknowledged", len(evs), len(a.acked))
	}
	for _, e := range evs {
		if !a.acked[e.ID] {
			t.Fatalf("event %s was refused but is in the log", e.ID)
		}
	}
}

// TestStorageFaultsRefuseWritesThenHealWithoutRestart injects the faults of a full disk and of a
// failing device: the store refuses appends with storage_unavailable, reports degraded, serves
// reads, leaves nothing of a refused append in the log, and resumes by itself once the fault clears.
// After a reopen every acknowledged event is there and no refused one is.
func TestStorageFaultsRefuseWritesThenHealWithoutRestart(t *testing.T) {
	t.Parallel()
	enospc, eio := syscall.ENOSPC, syscall.EIO
	for name, c := range map[string]struct {
		inject    func(*embedded.Faults)
		cause     error
		truncFail bool // the cut back fails too until the fault clears
		// uncertain: the cut of the refused append is not durable (its truncation or its fsync
		// fails), so a crash could keep it: it is refused as maybe recorded
		uncertain bool
	}{
		"ENOSPC on write, half written": {inject: func(f *embedded.Faults) { f.FailWrites(enospc, true) }, cause: enospc},
		"EIO on fsync":                  {inject: func(f *embedded.Faults) { f.FailSyncs(eio) }, cause: eio, uncertain: true},
		"EIO on fsync and truncate": {inject: func(f *embedded.Faults) { f.FailSyncs(eio); f.FailTruncates(eio) },
			cause: eio, truncFail: true, uncertain: true},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			faults := &embedded.Faults{}
			logs := &logCounter{msgs: map[string]int{}}
			set := metrics.NewSet()
			s, err := embedded.Open(dir, embedded.Options{Faults: faults, HealInterval: 5 * time.Millisecond, Logger: slog.New(logs), Metrics: set})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			w := newAppender(s, "x")
			for i := 0; i < 3; i++ {
				if err := w.add(i); err != nil {
					t.Fatal(err)
				}
			}
			goodSize := s.Size()

			c.inject(faults)
			if err := w.add(100); c.uncertain {
				wantUncertainRefusal(t, err, c.cause)
			} else {
				wantStorageRefusal(t, err, c.cause)
			}
			wantDegraded(t, s)
			// Reads keep working.
			if evs := verifyAll(t, s, acme); len(evs) != 3 {
				t.Fatalf("reads during the fault: %d events, want 3", len(evs))
			}
			// The healer tries and fails while the fault lasts; appends are refused meanwhile.
			eventually(t, "two failed healing attempts", func() bool { return logs.count("event store still cannot write") >= 2 })
			wantStorageRefusal(t, w.add(101), nil)
			wantDegraded(t, s)
			wantMetric(t, set, "crispy_eventstore_degraded 1")
			wantMetric(t, set, "crispy_eventstore_write_faults_total 1")
			if fi, _ := os.Stat(filepath.Join(dir, "events.log")); !c.truncFail && fi.Size() != goodSize {
				t.Fatalf("the log is %d bytes during the fault, want the acknowledged %d (the refused append cut off)", fi.Size(), goodSize)
			}

			faults.Clear()
			eventually(t, "the store to heal", func() bool { return s.Health(ctx) == nil })
			wantMetric(t, set, "crispy_eventstore_degraded 0")
			if fi, _ := os.Stat(filepath.Join(dir, "events.log")); fi.Size() != goodSize {
				t.Fatalf("healed log is %d bytes, want the acknowledged %d", fi.Size(), goodSize)
			}
			for i := 3; i < 6; i++ {
				if err := w.add(i); err != nil {
					t.Fatalf("append after healing: %v", err)
				}
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}

			w.reopenWantAcked(t, dir)
			if kept, _ := filepath.Glob(filepath.Join(dir, "events.log.torn-*")); len(kept) != 0 {
				t.Fatalf("the reopen found a torn tail (%v): the heal left garbage", kept)
			}
		})
	}
}

// A batch whose fsync fails while its cut back fails too stays in the file, whole, until the healer
// manages the cut: a crash meanwhile (here: the log copied as it stands, which is what the next open
// after a kill -9 reads) brings it back. Its append must not be told that nothing was recorded
// (ErrStorageUnavailable, which a module takes at its word); an append refused afterwards wrote
// nothing and is. Once the fault clears, the heal cuts the batch for good.
func TestAFailedBatchThatCannotBeCutIsNotCalledUnrecorded(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	faults := &embedded.Faults{}
	s, err := embedded.Open(dir, embedded.Options{Faults: faults, HealInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	st := tenant.MustStream(acme, "session", "x")
	appendN(t, s, st, 2)
	faults.FailSyncs(syscall.EIO)
	faults.FailTruncates(syscall.EIO)
	_, uncut := s.Append(context.Background(), st, eventstore.Any, ev(9))
	_, later := s.Append(context.Background(), st, eventstore.Any, ev(10))

	crashed := t.TempDir()
	b, err := os.ReadFile(filepath.Join(dir, "events.log"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(crashed, "events.log"), b, 0o640); err != nil {
		t.Fatal(err)
	}
	c := open(t, crashed)
	n := len(verifyAll(t, c, acme))
	c.Close()
	if n != 3 {
		t.Fatalf("after a crash during the fault the log holds %d events, want the 2 acknowledged and the uncut one", n)
	}
	wantUncertainRefusal(t, uncut, syscall.EIO)
	wantStorageRefusal(t, later, nil)

	faults.Clear()
	eventually(t, "the store to heal", func() bool { return s.Health(context.Background()) == nil })
	if fi, _ := os.Stat(filepath.Join(dir, "events.log")); fi.Size() != s.Size() {
		t.Fatalf("healed log is %d bytes, want the acknowledged %d (the uncut batch cut now)", fi.Size(), s.Size())
	}
}

func wantMetric(t *testing.T, set *metrics.Set, line string) {
	t.Helper()
	var b bytes.Buffer
	set.WritePrometheus(&b)
	if !strings.Contains(b.String(), line+"\n") {
		t.Fatalf("metrics lack %q:\n%s", line, b.String())
	}
}

// A healing store on a failing device whose acknowledged data no longer reads back stays degraded.
func TestHealRefusesWhenTheLastAcknowledgedRecordIsDamaged(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	faults := &embedded.Faults{}
	logs := &logCounter{msgs: map[string]int{}}
	s, err := embedded.Open(dir, embedded.Options{Faults: faults, HealInterval: 5 * time.Millisecond, Logger: slog.New(logs)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	st := tenant.MustStream(acme, "session", "x")
	appendN(t, s, st, 2)
	faults.FailSyncs(syscall.EIO)
	_, err = s.Append(context.Background(), st, eventstore.Any, ev(9))
	wantUncertainRefusal(t, err, syscall.EIO) // every fsync fails, the cut's too
	// The device "loses" a byte of acknowledged data.
	f, _ := os.OpenFile(filepath.Join(dir, "events.log"), os.O_RDWR, 0)
	b := []byte{0}
	f.ReadAt(b, s.Size()-2)
	b[0] ^= 0xff
	f.WriteAt(b, s.Size()-2)
	f.Close()
	faults.Clear()
	n := logs.count("event store still cannot write")
	eventually(t, "healing attempts after the fault cleared", func() bool { return logs.count("event store still cannot write") >= n+2 })
	wantDegraded(t, s)
	if err := s.Health(context.Background()); !strings.Contains(err.Error(), "does not read back") {
		t.Fatalf("health: %v", err)
	}
}

// TestFullDiskOnTmpfs fills a real, small tmpfs: appends are refused with ENOSPC as the cause, the
// store reports degraded and serves reads, and once space is freed it resumes without a restart.
// Every acknowledged event survives a reopen. Needs root to mount.
func TestFullDiskOnTmpfs(t *testing.T) {
	t.Parallel()
	mnt := mountTmpfs(t, "size=1m")
	dir := filepath.Join(mnt, "events")
	s, err := embedded.Open(dir, embedded.Options{HealInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	w := newAppender(s, "full")
	for i := 0; i < 10; i++ {
		if err := w.add(i); err != nil {
			t.Fatal(err)
		}
	}
	filler := filepath.Join(mnt, "filler")
	fill(t, filler)

	var refusal error
	for i := 10; i < 10000 && refusal == nil; i++ {
		refusal = w.add(i)
	}
	if refusal == nil {
		t.Fatal("10,000 appends fitted on a full 1 MiB tmpfs")
	}
	wantStorageRefusal(t, refusal, syscall.ENOSPC)
	wantDegraded(t, s)
	n := len(w.acked)
	if evs := verifyAll(t, s, acme); len(evs) != n {
		t.Fatalf("reads on a full disk: %d events, want %d", len(evs), n)
	}
	wantStorageRefusal(t, w.add(-1), nil)

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the store to heal after space was freed", func() bool { return s.Health(ctx) == nil })
	for i := 0; i < 20; i++ {
		if err := w.add(20000 + i); err != nil {
			t.Fatalf("append after space was freed: %v", err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	w.reopenWantAcked(t, dir)
	t.Logf("%d events acknowledged before the disk filled, %d after it was freed", n, len(w.acked)-n)
}

// mountTmpfs mounts a tmpfs with opts on a fresh folder and unmounts it at cleanup, or skips.
func mountTmpfs(t *testing.T, opts string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	mnt := filepath.Join(t.TempDir(), "fs")
	if err := os.Mkdir(mnt, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, opts); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(mnt, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", mnt, err)
		}
	})
	return mnt
}

// fill writes path until the file system is full.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := bytes.Repeat([]byte{'f'}, 4096)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			return
		}
	}
}
