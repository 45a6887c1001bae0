package auditlog

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/platform/bus/bustest"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// The running log: its projection's tree agrees with the store, Run signs the tenants whose log
// grew and pushes the checkpoints to the witnesses, and it refuses to sign a log that does not
// extend the checkpoint it signed last.
func TestLogSignsPushesAndRefusesAnInconsistentLog(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	store := eventstoretest.NewMemory()
	app := func(tid tenant.ID, n int) {
		for i := range n {
			ed, _ := eventstore.NewEventData("test.Happened", map[string]int{"i": i})
			if _, err := store.Append(ctx, tenant.MustStream(tid, "session", "s"), eventstore.Any, ed); err != nil {
				t.Fatal(err)
			}
		}
	}
	app(acme, 5)
	app(beta, 2)
	key := newKey(t)
	dir := t.TempDir()
	witness := &FileSink{Path: filepath.Join(dir, "witness.jsonl")}
	l, err := New(Deps{Key: key, Store: store, Dir: filepath.Join(dir, "checkpoints"), Interval: time.Hour, Sinks: []Sink{witness}})
	if err != nil {
		t.Fatal(err)
	}
	b := bustest.NewBus(t, store)
	l.Register(b)
	bustest.Start(t, b)
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	if err := l.Projection().WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	// Run signs every tenant once caught up, and pushes to the witness.
	var lines []Checkpoint
	for range 400 {
		lines = readLines(t, witness.Path)
		if len(lines) == 2 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(lines) != 2 {
		t.Fatalf("the witness got %d checkpoints, want 2 (one per tenant)", len(lines))
	}
	size, root, _ := Compute(ctx, store, acme)
	c, err := l.Checkpoint(ctx, acme)
	if err != nil || c.Size != size || c.RootHash != b64(root) {
		t.Fatalf("checkpoint %+v %v, want size %d root %s", c, err, size, b64(root))
	}

	// A kept checkpoint the log does not extend (as after a roll-back): nothing is signed.
	forged := Sign(key, acme, 3, bytes.Repeat([]byte{9}, 32), time.Now())
	bs, _ := json.Marshal(forged)
	if err := os.WriteFile(filepath.Join(dir, "checkpoints", "acme.json"), bs, 0o640); err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	delete(l.latest, acme)
	l.mu.Unlock()
	app(acme, 1)
	if err := b.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Checkpoint(ctx, acme); !errors.Is(err, ErrInconsistent) {
		t.Fatalf("signing a log that does not extend the last checkpoint: %v", err)
	}
	// Beta is unaffected.
	if c, err := l.Checkpoint(ctx, beta); err != nil || c.Size != 2 {
		t.Fatalf("beta: %+v %v", c, err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func readLines(t *testing.T, path string) []Checkpoint {
	fh, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer fh.Close()
	var out []Checkpoint
	for sc := bufio.NewScanner(fh); sc.Scan(); {
		var c Checkpoint
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}
