package bus_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/platform/bus"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/embedded"
	"github.com/crispy-enigma/crispy/platform/readmodel"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// crashSpec tells the child process what to run.
type crashSpec struct {
	StoreDir      string
	CheckpointDir string
	Transport     string
	Prefix        string
	AckWait       time.Duration
	Log           string // handled event ids, one a line, fsync'd by the handler
}

const crashEnv = "CRISPY_BUS_CRASH_CHILD"

func TestCrashRecoveryGoChannel(t *testing.T) {
	t.Parallel()
	runCrash(t, goChannelConfig(t))
}

func TestIntegrationNATSCrashRecovery(t *testing.T) {
	t.Parallel()
	runCrash(t, natsConfig(t))
}

// runCrash: a child process runs the bus on the embedded store with one processor, appends four
// events, handles the first two, hangs inside the third, appends the fourth and is killed with SIGKILL (no drain, no
// checkpoint write: its interval is an hour). Restarted here on the same folders, the bus must
// deliver the third and fourth (appended before the crash) and not handle the first two again.
func runCrash(t *testing.T, cfg bus.Config) {
	spec := crashSpec{StoreDir: t.TempDir(), CheckpointDir: cfg.CheckpointDir, Transport: cfg.Transport, Prefix: cfg.Prefix,
		AckWait: cfg.AckWait, Log: filepath.Join(t.TempDir(), "handled.log")}
	b, _ := json.Marshal(spec)
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashEnv+"="+string(b))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var appended []string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "READY "); ok {
			if err := json.Unmarshal([]byte(rest), &appended); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	if len(appended) != 4 {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("child did not get ready (scan: %v)", sc.Err())
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if got := readLog(t, spec.Log); strings.Join(got, ",") != strings.Join(appended[:2], ",") {
		t.Fatalf("before the crash the child handled %v, want the first two of %v", got, appended)
	}

	store, err := embedded.Open(spec.StoreDir, embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	r := start(t, cfg, store, func(reg bus.Consumers) { logProcessor(reg, spec.Log, nil) })
	deadlineWait(t, func() bool { return len(readLog(t, spec.Log)) >= 4 })
	deadlineWait(t, func() bool { return r.b.Lag() == 0 })
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, id := range readLog(t, spec.Log) {
		count[id]++
	}
	for i, id := range appended {
		if count[id] != 1 {
			t.Errorf("event %d (%s) handled %d times across the crash, want once", i+1, id, count[id])
		}
	}
}

// TestCrashChild is the child process of runCrash.
func TestCrashChild(t *testing.T) {
	raw := os.Getenv(crashEnv)
	if raw == "" {
		t.Skip("helper process of TestCrashRecovery*: runs only as their child")
	}
	var spec crashSpec
	if err := json.Unmarshal([]byte(raw), &spec); err != nil {
		t.Fatal(err)
	}
	store, err := embedded.Open(spec.StoreDir, embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := bus.Config{Transport: spec.Transport, Prefix: spec.Prefix, CheckpointDir: spec.CheckpointDir,
		CheckpointInterval: time.Hour, AckWait: spec.AckWait}
	b, err := bus.New(cfg, bus.Deps{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	blocking := make(chan struct{})
	logProcessor(b, spec.Log, blocking)
	go func() { _ = b.Run(context.Background()) }()
	if err := b.WaitCaughtUp(context.Background()); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, typ := range []string{typeHappened, typeHappened, typeBlocked} {
		ids = append(ids, appendN(t, store, acme, "c", typ, 1)[0].ID)
	}
	<-blocking
	ids = append(ids, appendN(t, store, acme, "c", typeHappened, 1)[0].ID)
	line, _ := json.Marshal(ids)
	fmt.Printf("READY %s\n", line)
	time.Sleep(time.Hour) // until killed
}

// logProcessor registers the processor "test.crash": it appends each event id to path (fsync'd,
// so the record survives SIGKILL). With blocking set it hangs inside a typeBlocked event, after
// closing blocking.
func logProcessor(c bus.Consumers, path string, blocking chan struct{}) {
	registerTestEvents(c.Codec().Add)
	q := c.Processor("test.crash")
	log := func(env bus.Envelope) error {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
		if err != nil {
			return err
		}
		defer f.Close()
		if _, err := f.WriteString(env.ID + "\n"); err != nil {
			return err
		}
		return f.Sync()
	}
	bus.Handle(q, func(_ context.Context, env bus.Envelope, _ happenedEvent) error { return log(env) })
	bus.Handle(q, func(_ context.Context, env bus.Envelope, _ blockedEvent) error {
		if blocking != nil {
			close(blocking)
			time.Sleep(time.Hour)
		}
		return log(env)
	})
}

func readLog(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(b))
}

const projectionCrashEnv = "CRISPY_BUS_PROJECTION_CRASH_CHILD"

// projectionCrashSpec tells the child what to run.
type projectionCrashSpec struct {
	StoreDir, CheckpointDir, ReadModelDir string
	HangAt                                int // the handler hangs on the event with this N
}

// A kill -9 in the middle of a catch-up loses nothing and applies nothing twice: the child catches
// up a projection over 20,000 events, committing every 1,000, and is killed while its handler hangs
// inside event 12,345 (its transaction holds the uncommitted events since the last commit). The
// restart resumes from the checkpoint, not from zero, and ends with every event applied once.
func TestProjectionCrashMidCatchUp(t *testing.T) {
	t.Parallel()
	spec := projectionCrashSpec{StoreDir: t.TempDir(), CheckpointDir: t.TempDir(), ReadModelDir: t.TempDir(), HangAt: 12_345}
	store, err := embedded.Open(spec.StoreDir, embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	const n = 20_000
	var evs []eventstore.Event
	for i := 0; i < n; i += 500 {
		tid := acme
		if i%1000 == 0 {
			tid = globex
		}
		batch := make([]eventstore.EventData, 500)
		for j := range batch {
			batch[j] = eventstore.EventData{Type: typeHappened, Data: []byte(fmt.Sprintf(`{"n":%d,"tenant":%q}`, i+j, tid))}
		}
		res, err := store.Append(context.Background(), tenant.MustStream(tid, "thing", "c"), eventstore.Any, batch...)
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, res.Events...)
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}

	b, _ := json.Marshal(spec)
	cmd := exec.Command(os.Args[0], "-test.run=^TestProjectionCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), projectionCrashEnv+"="+string(b))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	hanging := false
	for sc.Scan() {
		if sc.Text() == "HANGING" {
			hanging = true
			break
		}
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if !hanging {
		t.Fatalf("the child never reached event %d (scan: %v)", spec.HangAt, sc.Err())
	}

	// What the kill left: a checkpoint part way, below the hanging event.
	rm, err := readmodel.Open(filepath.Join(spec.ReadModelDir, "test.crash-counts.db"), readmodel.Options{Version: 1})
	if err != nil {
		t.Fatal(err)
	}
	left := rm.Position()
	rm.Close()
	if left == 0 || left >= evs[spec.HangAt].Position {
		t.Fatalf("checkpoint after the kill at %d; want one part way, below %d", left, evs[spec.HangAt].Position)
	}

	store, err = embedded.Open(spec.StoreDir, embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	cfg := goChannelConfig(t)
	cfg.CheckpointDir, cfg.ReadModelDir = spec.CheckpointDir, spec.ReadModelDir
	again := &counting{}
	var p *bus.Projection
	start(t, cfg, store, func(reg bus.Consumers) { p = again.register(reg, "test.crash-counts") })
	wantCounts(t, readCounts(t, p), evs)
	if got, want := again.calls.Load(), int64(n)-int64(left); got != want {
		t.Fatalf("the restart applied %d events, want the %d after the checkpoint", got, want)
	}
	t.Logf("killed with the checkpoint at %d of %d; the restart applied %d", left, n, again.calls.Load())
}

// TestProjectionCrashChild is the child process of TestProjectionCrashMidCatchUp.
func TestProjectionCrashChild(t *testing.T) {
	raw := os.Getenv(projectionCrashEnv)
	if raw == "" {
		t.Skip("helper process of TestProjectionCrashMidCatchUp: runs only as its child")
	}
	var spec projectionCrashSpec
	if err := json.Unmarshal([]byte(raw), &spec); err != nil {
		t.Fatal(err)
	}
	store, err := embedded.Open(spec.StoreDir, embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := bus.New(bus.Config{CheckpointDir: spec.CheckpointDir, ReadModelDir: spec.ReadModelDir, CatchUpCommitEvery: 1000},
		bus.Deps{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	c := &counting{}
	registerTestEvents(b.Codec().Add)
	p := b.Projection("test.crash-counts", bus.ProjectionOptions{Version: 1})
	bus.Apply(p, func(ctx context.Context, tx *readmodel.Tx, env bus.Envelope, ev happenedEvent) error {
		if ev.N == spec.HangAt {
			fmt.Println("HANGING")
			time.Sleep(time.Hour) // until killed
		}
		return c.apply(ctx, tx, env, ev.N)
	})
	_ = b.Run(context.Background())
}
