package embedded

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// logLines records log messages and their attributes, for tests that expect a line.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) Enabled(context.Context, slog.Level) bool { return true }
func (l *logLines) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	l.mu.Lock()
	l.lines = append(l.lines, b.String())
	l.mu.Unlock()
	return nil
}
func (l *logLines) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logLines) WithGroup(string) slog.Handler      { return l }

// with returns the lines that contain s.
func (l *logLines) with(s string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, x := range l.lines {
		if strings.Contains(x, s) {
			out = append(out, x)
		}
	}
	return out
}

const rebuildLine = "building the index from the log"

// history is what a test wrote: every event of every stream, in order, and the metadata set.
type history struct {
	streams map[string][]eventstore.Event
	meta    map[string]eventstore.StreamMetadata
	order   []string // stream names in first-append order
}

func newHistory() *history {
	return &history{streams: map[string][]eventstore.Event{}, meta: map[string]eventstore.StreamMetadata{}}
}

func (h *history) add(evs []eventstore.Event) {
	for _, e := range evs {
		if _, ok := h.streams[e.Stream]; !ok {
			h.order = append(h.order, e.Stream)
		}
		h.streams[e.Stream] = append(h.streams[e.Stream], e)
	}
}

// write appends n events to each of streams (of tenants acme and beta), interleaved, one append
// of one or two events at a time.
func (h *history) write(t testing.TB, s *Store, prefix string, streams, n int) {
	t.Helper()
	ctx := context.Background()
	for i := 0; i < n; i++ {
		for k := 0; k < streams; k++ {
			tid := tenant.MustParse([]string{"acme", "beta"}[k%2])
			st := tenant.MustStream(tid, "session", fmt.Sprintf("%s%d", prefix, k))
			data := []eventstore.EventData{{Type: "t.E", Data: []byte(fmt.Sprintf(`{"i":%d,"k":%d}`, i, k))}}
			if (i+k)%3 == 0 {
				data = append(data, eventstore.EventData{Type: "t.F", Data: []byte(`{}`)})
			}
			exp := eventstore.NoStream
			if evs := h.streams[st.String()]; len(evs) > 0 {
				exp = eventstore.Exact(evs[len(evs)-1].Revision)
			}
			r, err := s.Append(ctx, st, exp, data...)
			if err != nil {
				t.Fatalf("append to %s: %v", st, err)
			}
			h.add(r.Events)
		}
	}
}

// check reads every stream and both tenants back from s and wants exactly what was written (and
// for a stream with metadata, what it leaves readable), and appends after each stream's last
// revision must be accepted.
func (h *history) check(t testing.TB, s *Store) {
	t.Helper()
	ctx := context.Background()
	now := time.Now()
	byTenant := map[tenant.ID][]eventstore.Event{}
	for _, name := range h.order {
		st, err := tenant.ParseStream(name)
		if err != nil {
			t.Fatal(err)
		}
		md := h.meta[name]
		var want []eventstore.Event
		for _, e := range h.streams[name] {
			if md.Readable(e.Revision, e.Time, now) {
				want = append(want, e)
			}
		}
		got, err := s.ReadStream(ctx, st, 0, 0)
		if err != nil {
			t.Fatalf("read %s: %v", name, err)
		}
		sameEvents(t, "stream "+name, got, want)
		if gotMD, err := s.StreamMetadata(ctx, st); err != nil || !sameMeta(gotMD, md) {
			t.Fatalf("metadata of %s: %+v, %v; want %+v", name, gotMD, err, md)
		}
		byTenant[st.Tenant()] = append(byTenant[st.Tenant()], want...)
	}
	for tid, want := range byTenant {
		slices.SortFunc(want, func(a, b eventstore.Event) int { return int(a.Position) - int(b.Position) })
		got, err := s.ReadTenant(ctx, tid, eventstore.Start, 0)
		if err != nil {
			t.Fatalf("read tenant %s: %v", tid, err)
		}
		sameEvents(t, "tenant "+tid.String(), got, want)
		if len(want) > 2 {
			mid := want[len(want)/2].Position
			got, err := s.ReadTenant(ctx, tid, mid, 3)
			if err != nil {
				t.Fatal(err)
			}
			sameEvents(t, fmt.Sprintf("tenant %s from %d", tid, mid), got, want[len(want)/2:len(want)/2+3])
		}
	}
}

func sameMeta(a, b eventstore.StreamMetadata) bool {
	return a.MaxAge == b.MaxAge && (a.TruncateBefore == nil) == (b.TruncateBefore == nil) &&
		(a.TruncateBefore == nil || *a.TruncateBefore == *b.TruncateBefore)
}

func sameEvents(t testing.TB, what string, got, want []eventstore.Event) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d events, want %d", what, len(got), len(want))
	}
	for i := range got {
		if got[i].ID != want[i].ID || got[i].Hash != want[i].Hash || got[i].Position != want[i].Position || string(got[i].Data) != string(want[i].Data) {
			t.Fatalf("%s: event %d is %s@%d (%s), want %s@%d (%s)", what, i, got[i].Stream, got[i].Revision, got[i].ID, want[i].Stream, want[i].Revision, want[i].ID)
		}
	}
}

func openTest(t testing.TB, dir string, opts Options, tweak func(*Store)) *Store {
	t.Helper()
	s, err := open(dir, opts, tweak)
	if err != nil {
		t.Fatalf("open %s: %v", dir, err)
	}
	return s
}

// copyDir copies a store's folder as a crash would leave it: what its files hold now.
func copyDir(t testing.TB, src string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if e.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o750)
		}
		if e.Name() == "LOCK" {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o640)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// An open reads only the log written since the index's checkpoint: after a clean close, a few
// bytes of a log of 1,000s of events; after a crash, the tail the checkpoint did not cover.
func TestOpenIndexesOnlyTheTail(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	opts := Options{CheckpointInterval: time.Hour}
	h := newHistory()
	s := openTest(t, dir, opts, nil)
	h.write(t, s, "s", 20, 50)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	logSize := fileSize(t, filepath.Join(dir, logName))

	faults := &Faults{}
	opts.Faults = faults
	s = openTest(t, dir, opts, nil)
	if read := faults.BytesRead(); read > 4096 {
		t.Fatalf("open of a closed store read %d bytes of its %d-byte log, want only its last record", read, logSize)
	}
	h.check(t, s)
	before := fileSize(t, filepath.Join(dir, logName))
	h.write(t, s, "t", 10, 5) // not checkpointed: the interval is an hour
	tail := fileSize(t, filepath.Join(dir, logName)) - before
	crashed := copyDir(t, dir)
	s.Close()

	faults = &Faults{}
	opts.Faults = faults
	s = openTest(t, crashed, opts, nil)
	defer s.Close()
	if read := faults.BytesRead(); read < tail || read > tail+8192 {
		t.Fatalf("open after a crash read %d bytes, want the %d-byte tail written since the checkpoint", read, tail)
	}
	h.check(t, s)
}

func fileSize(t testing.TB, p string) int64 {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// A crash in the middle of a checkpoint (after its record is written, or halfway through its slot
// writes) is redone at the next open.
func TestACheckpointCutShortIsRedone(t *testing.T) {
	t.Parallel()
	for _, step := range []string{"checkpoint written", "half the slots written"} {
		t.Run(step, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			var armed atomic.Bool
			s := openTest(t, dir, Options{CheckpointInterval: time.Hour}, func(s *Store) {
				s.crashAt = func(at string) bool { return armed.Load() && at == step }
			})
			h := newHistory()
			h.write(t, s, "a", 30, 2)
			if err := s.checkpoint(); err != nil {
				t.Fatal(err)
			}
			h.write(t, s, "a", 30, 2) // the same streams again: their slots are rewritten
			h.write(t, s, "b", 30, 1) // new streams: new slots
			md := eventstore.StreamMetadata{MaxAge: time.Hour}
			st := tenant.MustStream(tenant.MustParse("acme"), "session", "a0")
			if err := s.SetStreamMetadata(context.Background(), st, md); err != nil {
				t.Fatal(err)
			}
			h.meta[st.String()] = md
			armed.Store(true)
			if err := s.checkpoint(); !errors.Is(err, errCrash) {
				t.Fatalf("checkpoint with a crash at %q: %v", step, err)
			}
			crashed := copyDir(t, dir)
			armed.Store(false)
			s.Close()

			logs := &logLines{}
			r := openTest(t, crashed, Options{Logger: slog.New(logs)}, nil)
			if l := logs.with(rebuildLine); len(l) > 0 {
				t.Fatalf("the index was rebuilt: %q", l)
			}
			h.check(t, r)
			h.write(t, r, "a", 30, 1)
			r.Close()
			r = openTest(t, crashed, Options{}, nil)
			defer r.Close()
			h.check(t, r)
		})
	}
}

// A missing index, or one that is damaged where an open looks or belongs to another log, is
// rebuilt from the log, and the log line says why.
func TestAnIndexThatCannotBeUsedIsRebuilt(t *testing.T) {
	t.Parallel()
	other := t.TempDir()
	o := openTest(t, other, Options{}, nil)
	newHistory().write(t, o, "o", 3, 3)
	o.Close()
	damages := map[string]struct {
		damage func(t *testing.T, ix string)
		reason string
	}{
		"no index": {func(t *testing.T, ix string) { must(t, os.RemoveAll(ix)) }, "no index"},
		"both checkpoints damaged": {func(t *testing.T, ix string) {
			flip(t, filepath.Join(ix, "checkpoint.0"), 20)
			flip(t, filepath.Join(ix, "checkpoint.1"), 20)
		}, "checkpoint is damaged"},
		"positions cut short": {func(t *testing.T, ix string) {
			must(t, os.Truncate(filepath.Join(ix, "positions"), posHeaderSize+10*posRecSize))
		}, "ends before position"},
		"last position damaged": {func(t *testing.T, ix string) {
			p := filepath.Join(ix, "positions")
			flip(t, p, fileSize(t, p)-10)
		}, "damaged"},
		"stream table header damaged": {func(t *testing.T, ix string) { flip(t, filepath.Join(ix, "streams.0"), 3) }, "stream table 0 is damaged"},
		"a tenant file lost":          {func(t *testing.T, ix string) { must(t, os.Remove(filepath.Join(ix, "t-beta"))) }, "tenant files"},
		"a tenant file cut":           {func(t *testing.T, ix string) { must(t, os.Truncate(filepath.Join(ix, "t-acme"), 5*tenantRecSize)) }, "tenant files"},
		"the index of another log": {func(t *testing.T, ix string) {
			must(t, os.RemoveAll(ix))
			must(t, os.CopyFS(ix, os.DirFS(filepath.Join(other, indexDirName))))
		}, "log"},
	}
	for name, d := range damages {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			s := openTest(t, dir, Options{}, nil)
			h := newHistory()
			h.write(t, s, "s", 6, 4)
			s.Close()
			d.damage(t, filepath.Join(dir, indexDirName))

			logs := &logLines{}
			s = openTest(t, dir, Options{Logger: slog.New(logs)}, nil)
			l := logs.with(rebuildLine)
			if len(l) != 1 || !strings.Contains(l[0], d.reason) {
				t.Fatalf("log lines about the rebuild: %q, want one naming %q", l, d.reason)
			}
			h.check(t, s)
			s.Close()
			logs = &logLines{}
			s = openTest(t, dir, Options{Logger: slog.New(logs)}, nil)
			defer s.Close()
			if l := logs.with(rebuildLine); len(l) > 0 {
				t.Fatalf("the rebuilt index was rebuilt again: %q", l)
			}
			h.check(t, s)
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// flip inverts the byte at off of the file at p.
func flip(t testing.TB, p string, off int64) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// Damage where an open does not look is found by the read that meets it: it fails with
// ErrIndexDamaged (never with a wrong event, never ErrCorrupt: the log is fine), the store says
// so in /health, and the next open rebuilds the index.
func TestDamageFoundByAReadIsRebuiltAtTheNextOpen(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openTest(t, dir, Options{}, nil)
	h := newHistory()
	h.write(t, s, "s", 4, 10)
	s.Close()
	flip(t, filepath.Join(dir, indexDirName, "positions"), posHeaderSize+3*posRecSize+5) // position 4

	logs := &logLines{}
	s = openTest(t, dir, Options{Logger: slog.New(logs)}, nil)
	var st tenant.Stream
	for name, evs := range h.streams {
		for _, e := range evs {
			if e.Position == 4 {
				st, _ = tenant.ParseStream(name)
			}
		}
	}
	if _, err := s.ReadStream(context.Background(), st, 0, 0); !errors.Is(err, ErrIndexDamaged) || errors.Is(err, eventstore.ErrCorrupt) {
		t.Fatalf("read through a damaged index record: %v, want ErrIndexDamaged", err)
	}
	if _, err := s.ReadTenant(context.Background(), st.Tenant(), eventstore.Start, 0); !errors.Is(err, ErrIndexDamaged) {
		t.Fatalf("read of the tenant through a damaged index record: %v, want ErrIndexDamaged", err)
	}
	if err := s.Health(context.Background()); err == nil || !strings.Contains(err.Error(), "index") {
		t.Fatalf("health with a damaged index: %v", err)
	}
	if len(logs.with("index damaged")) != 1 {
		t.Fatalf("log lines: %q", logs.lines)
	}
	s.Close()
	logs = &logLines{}
	s = openTest(t, dir, Options{Logger: slog.New(logs)}, nil)
	defer s.Close()
	if len(logs.with(rebuildLine)) != 1 {
		t.Fatalf("the next open did not rebuild the index: %q", logs.lines)
	}
	h.check(t, s)
}

// With a cache of two streams, every stream is looked up from its slot, through checkpoints and a
// reopen, with metadata on some of them.
func TestManyStreamsThroughASmallCache(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	opts := Options{StreamCache: 1, MaxBatch: 1, CheckpointInterval: time.Millisecond}
	s := openTest(t, dir, opts, nil)
	h := newHistory()
	for round := 0; round < 3; round++ {
		h.write(t, s, "s", 150, 1)
		must(t, s.checkpoint())
	}
	ctx := context.Background()
	for i, name := range h.order {
		if i%7 != 0 {
			continue
		}
		st, _ := tenant.ParseStream(name)
		cut := uint64(1)
		md := eventstore.StreamMetadata{TruncateBefore: &cut}
		must(t, s.SetStreamMetadata(ctx, st, md))
		h.meta[name] = md
	}
	// A stream with metadata and no events.
	empty := tenant.MustStream(tenant.MustParse("acme"), "session", "empty")
	must(t, s.SetStreamMetadata(ctx, empty, eventstore.StreamMetadata{MaxAge: time.Minute}))
	h.check(t, s)
	s.Close()
	s = openTest(t, dir, opts, nil)
	defer s.Close()
	h.check(t, s)
	if md, err := s.StreamMetadata(ctx, empty); err != nil || md.MaxAge != time.Minute {
		t.Fatalf("metadata of a stream without events after reopen: %+v %v", md, err)
	}
	h.write(t, s, "s", 150, 1)
	h.check(t, s)
}

// Streams whose names hash alike each get a hash of their own, found again after a reopen.
func TestStreamsWhoseNamesCollide(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// Every name of the same length parity collides at every salt.
	weak := func(s *Store) {
		s.hash = func(name string, salt int) uint64 { return uint64(salt)*2 + 1 + uint64(len(name)%2) }
	}
	opts := Options{StreamCache: 1, MaxBatch: 1}
	s := openTest(t, dir, opts, weak)
	h := newHistory()
	h.write(t, s, "s", 6, 2) // s0…s5: one parity, so six names on one hash
	must(t, s.checkpoint())
	h.write(t, s, "s", 6, 1)
	h.check(t, s)
	s.Close()
	s = openTest(t, dir, opts, weak)
	defer s.Close()
	h.check(t, s)
	h.write(t, s, "s", 6, 1)
	h.check(t, s)
}

// More streams than the first table takes at half load: a second table is added, and streams in
// both are found, before and after a reopen.
func TestStreamTablesGrow(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("appends 33,000 streams")
	}
	dir := t.TempDir()
	s := openTest(t, dir, Options{CheckpointInterval: time.Hour}, nil)
	const n = 1<<firstTableBits/2 + 500
	ctx := context.Background()
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1); i <= n; i = next.Add(1) {
				st := tenant.MustStream(tenant.MustParse("acme"), "session", fmt.Sprint(i))
				if _, err := s.Append(ctx, st, eventstore.NoStream, eventstore.EventData{Type: "t.E"}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	must(t, s.checkpoint())
	if len(s.ix.tables) != 2 {
		t.Fatalf("%d tables for %d streams, want 2", len(s.ix.tables), n)
	}
	check := func(s *Store) {
		for i := 1; i <= n; i += 97 {
			st := tenant.MustStream(tenant.MustParse("acme"), "session", fmt.Sprint(i))
			evs, err := s.ReadStream(ctx, st, 0, 0)
			if err != nil || len(evs) != 1 || evs[0].Stream != st.String() {
				t.Fatalf("read %s: %d events, %v", st, len(evs), err)
			}
			if _, err := s.Append(ctx, st, eventstore.Exact(0), eventstore.EventData{Type: "t.F"}); err != nil {
				t.Fatalf("append to %s: %v", st, err)
			}
		}
	}
	check(s)
	s.Close()
	s = openTest(t, dir, Options{}, nil)
	defer s.Close()
	evs, err := s.ReadTenant(ctx, tenant.MustParse("acme"), eventstore.Start, 0)
	if err != nil || len(evs) != n+(n+96)/97 {
		t.Fatalf("tenant after reopen: %d events, %v", len(evs), err)
	}
}

// A read-only open beside a writer that checkpoints all the time copies a consistent index: what
// it reads is a prefix of what the writer acknowledged, chains intact.
func TestReadOnlyOpensBesideCheckpoints(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	w := openTest(t, dir, Options{CheckpointInterval: time.Millisecond}, nil)
	defer w.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for k := 0; k < 4; k++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				st := tenant.MustStream(tenant.MustParse("acme"), "session", fmt.Sprintf("w%d-%d", k, i/5))
				if _, err := w.Append(ctx, st, eventstore.Any, eventstore.EventData{Type: "t.E"}); err != nil && ctx.Err() == nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	for round := 0; round < 10; round++ {
		r, err := OpenReadOnly(dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		evs, err := r.ReadTenant(ctx, tenant.MustParse("acme"), eventstore.Start, 0)
		if err != nil {
			t.Fatal(err)
		}
		v := eventstore.NewChainVerifier()
		for i := range evs {
			if evs[i].Position != eventstore.Position(i+1) {
				t.Fatalf("round %d: event %d has position %d", round, i, evs[i].Position)
			}
			if err := v.Check(&evs[i]); err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
		last, _ := r.LastPosition(ctx)
		if int(last) != len(evs) {
			t.Fatalf("round %d: last position %d, %d events", round, last, len(evs))
		}
		tmp := r.tmpIndex
		r.Close()
		if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("the private index %s outlived Close: %v", tmp, err)
		}
	}
	cancel()
	wg.Wait()
}
