package embedded

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// changingFile runs change once, after the first read: what a live writer does between two reads
// of a scan.
type changingFile struct {
	logFile
	once   sync.Once
	change func()
}

func (f *changingFile) ReadAt(b []byte, off int64) (int, error) {
	n, err := f.logFile.ReadAt(b, off)
	f.once.Do(f.change)
	return n, err
}

// A verification beside a live server reads a record whose first half it buffered before the
// server cut a failed write at that offset and, healed, appended other records there: the bytes it
// put together are no record, and a valid one follows. That is a torn read, not corruption: the scan
// reads the record again and ends with the log as it now stands.
func TestLiveScanRereadsARecordRewrittenUnderIt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := tenant.MustStream(tenant.MustParse("acme"), "session", "x")
	pad := strings.Repeat("p", 1000)
	// The acknowledged prefix ends a few KB before the scan's first 1 MiB read ends.
	dirA := t.TempDir()
	a, err := Open(dirA, Options{})
	if err != nil {
		t.Fatal(err)
	}
	acked := 0
	for a.Size() < 1<<20-6000 {
		if _, err := a.Append(ctx, st, eventstore.Any, eventstore.EventData{Type: "t.E", Data: []byte(`{"p":"` + pad + `"}`)}); err != nil {
			t.Fatal(err)
		}
		acked++
	}
	base := a.Size()
	prefix, err := os.ReadFile(a.Path())
	if err != nil {
		t.Fatal(err)
	}
	// The failed write: one record across the 1 MiB mark.
	if _, err := a.Append(ctx, st, eventstore.Any, eventstore.EventData{Type: "t.E", Data: []byte(`{"p":"` + strings.Repeat("f", 20000) + `"}`)}); err != nil {
		t.Fatal(err)
	}
	a.Close()
	failed, _ := os.ReadFile(a.Path())
	// What the writer appends at the same offset once healed: two other records.
	dirB := t.TempDir()
	if err := os.WriteFile(filepath.Join(dirB, logName), prefix, 0o640); err != nil {
		t.Fatal(err)
	}
	b, err := Open(dirB, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if _, err := b.Append(ctx, st, eventstore.Any, eventstore.EventData{Type: "t.E", Data: []byte(`{"p":"` + strings.Repeat("h", 3000) + `"}`)}); err != nil {
			t.Fatal(err)
		}
	}
	b.Close()
	healed, _ := os.ReadFile(b.Path())

	dir := t.TempDir()
	path := filepath.Join(dir, logName)
	if err := os.WriteFile(path, failed, 0o640); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := newStore(dir, Options{}.withDefaults(), f)
	s.live = true
	s.f = &changingFile{logFile: s.f, change: func() {
		if err := os.WriteFile(path, healed, 0o640); err != nil {
			t.Error(err)
		}
	}}
	res, err := s.scan(0, 1<<62, -1, 0, nil)
	if err != nil {
		t.Fatalf("live scan of a log rewritten past offset %d while it read: %v", base, err)
	}
	if res.torn != nil || res.end != int64(len(healed)) || res.events != acked+2 {
		t.Fatalf("live scan: torn %v, prefix %d bytes with %d events; want the healed log, %d bytes with %d events", res.torn, res.end, res.events, len(healed), acked+2)
	}
}
