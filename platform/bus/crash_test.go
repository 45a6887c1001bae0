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

// runCrash: a child process runs the bus on the embedded store, appends four events, handles the
// first two, hangs inside the third, appends the fourth and is killed with SIGKILL (no drain, no
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
	r := start(t, cfg, store, func(reg bus.Registry) {
		reg.On("test.crash", nil, logHandler(spec.Log, nil))
	})
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
	b.On("test.crash", nil, logHandler(spec.Log, blocking))
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

// logHandler appends each event id to path (fsync'd, so the record survives SIGKILL). With blocking
// set it hangs inside a typeBlocked event, after closing blocking.
func logHandler(path string, blocking chan struct{}) bus.Handler {
	return func(ctx context.Context, e eventstore.Event) error {
		if blocking != nil && e.Type == typeBlocked {
			close(blocking)
			time.Sleep(time.Hour)
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
		if err != nil {
			return err
		}
		defer f.Close()
		if _, err := f.WriteString(e.ID + "\n"); err != nil {
			return err
		}
		return f.Sync()
	}
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
