// Package embedded is the default event store: an append-only log file in the data folder, so the
// binary runs with no server. Appends are group-committed (one write and one fsync for every append
// waiting at that moment) and acknowledged only after the fsync. On open the log is scanned, a torn
// tail is cut off (and logged), and corruption anywhere else refuses to open.
//
// We chose a log of our own over SQLite: the data is append-only with reads by stream and by tenant
// in position order, which a log plus a small in-memory index answers with sequential I/O, and group
// commit is a few lines here but needs care to reach through database/sql.
package embedded

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// Options configures the store.
type Options struct {
	Logger  *slog.Logger
	Now     func() time.Time
	Metrics *metrics.Set
	// MaxBatch bounds how many appends share one fsync (default 512).
	MaxBatch int
}

const logName = "events.log"

// entry locates one event in the log and carries what filters need without reading it.
type entry struct {
	off    int64
	n      uint32
	stream int32
	rev    uint64
	time   int64
}

type streamState struct {
	name     string
	pos      []uint64 // global positions of its events, ascending
	lastRev  uint64
	lastHash string
	meta     eventstore.StreamMetadata
}

// Store is the embedded event store. It is safe for concurrent use.
type Store struct {
	dir  string
	opts Options
	f    *os.File
	lock *os.File

	mu      sync.RWMutex
	entries []entry // entries[position-1]
	streams []*streamState
	byName  map[string]int32
	tenants map[string][]uint64 // tenant id -> positions
	size    int64
	notify  chan struct{}
	closed  bool
	broken  error

	reqs chan *appendReq
	quit chan struct{}
	done chan struct{}

	appendDur *metrics.Histogram
	batchSize *metrics.Histogram
}

type appendReq struct {
	ctx      context.Context
	stream   tenant.Stream
	expected eventstore.ExpectedRevision
	data     []eventstore.EventData
	meta     *eventstore.StreamMetadata // a metadata write instead of events
	res      eventstore.AppendResult
	err      error
	done     chan struct{}
}

// Open opens (creating if needed) the store in dir and takes an exclusive lock on it.
func Open(dir string, opts Options) (*Store, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 512
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("create event store dir %s: %w", dir, err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, logName)
	_, statErr := os.Stat(path)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if errors.Is(statErr, os.ErrNotExist) {
		if err := syncDir(dir); err != nil {
			f.Close()
			lock.Close()
			return nil, err
		}
	}
	s := &Store{
		dir: dir, opts: opts, f: f, lock: lock,
		byName: map[string]int32{}, tenants: map[string][]uint64{},
		notify: make(chan struct{}), reqs: make(chan *appendReq), quit: make(chan struct{}), done: make(chan struct{}),
	}
	if opts.Metrics != nil {
		s.appendDur = opts.Metrics.GetOrCreateHistogram("crispy_eventstore_append_duration_seconds")
		s.batchSize = opts.Metrics.GetOrCreateHistogram("crispy_eventstore_commit_batch_size")
	}
	if err := s.load(); err != nil {
		f.Close()
		lock.Close()
		return nil, err
	}
	go s.writer()
	return s, nil
}

func lockDir(dir string) (*os.File, error) {
	p := filepath.Join(dir, "LOCK")
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", p, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		owner, _ := os.ReadFile(p)
		f.Close()
		return nil, fmt.Errorf("event store %s is in use by another process (pid %s): %w", dir, string(owner), err)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(fmt.Sprint(os.Getpid())), 0)
	return f, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open dir %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync dir %s: %w", dir, err)
	}
	return nil
}

// Append implements eventstore.Store.
func (s *Store) Append(ctx context.Context, stream tenant.Stream, expected eventstore.ExpectedRevision, data ...eventstore.EventData) (eventstore.AppendResult, error) {
	if stream.IsZero() {
		return eventstore.AppendResult{}, fmt.Errorf("%w: stream without tenant", eventstore.ErrInvalid)
	}
	if len(data) == 0 {
		return eventstore.AppendResult{}, fmt.Errorf("%w: append to %s with no events", eventstore.ErrInvalid, stream)
	}
	start := time.Now()
	r := &appendReq{ctx: ctx, stream: stream, expected: expected, data: data, done: make(chan struct{})}
	if err := s.submit(ctx, r); err != nil {
		return eventstore.AppendResult{}, err
	}
	if s.appendDur != nil && r.err == nil {
		s.appendDur.UpdateDuration(start)
	}
	return r.res, r.err
}

// submit hands r to the writer and waits for its fsync. Once the writer has taken r, the caller
// waits even if ctx ends: the append may already be durable, and the answer must say so.
func (s *Store) submit(ctx context.Context, r *appendReq) error {
	select {
	case s.reqs <- r:
	case <-s.quit:
		return eventstore.ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	<-r.done
	return nil
}

// writer is the only goroutine that writes the log.
func (s *Store) writer() {
	defer close(s.done)
	batch := make([]*appendReq, 0, s.opts.MaxBatch)
	var buf []byte
	for {
		batch = batch[:0]
		select {
		case r := <-s.reqs:
			batch = append(batch, r)
		case <-s.quit:
			return
		}
	drain:
		for len(batch) < s.opts.MaxBatch {
			select {
			case r := <-s.reqs:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		buf = s.commit(batch, buf[:0])
		if cap(buf) > 4<<20 {
			buf = nil
		}
	}
}

type pending struct {
	lastRev  uint64
	lastHash string
	exists   bool
	meta     *eventstore.StreamMetadata
}

// newEntry is an entry whose stream may not have an index yet.
type newEntry struct {
	entry
	stream string
	pos    uint64
}

// commit validates, encodes, writes and fsyncs one batch, then publishes it to readers. A request
// that fails validation fails alone; a failed write or fsync fails the batch and the store.
func (s *Store) commit(batch []*appendReq, buf []byte) []byte {
	if s.batchSize != nil {
		s.batchSize.Update(float64(len(batch)))
	}
	s.mu.RLock()
	broken, base, nextPos := s.broken, s.size, uint64(len(s.entries)+1)
	s.mu.RUnlock()
	if broken != nil {
		for _, r := range batch {
			r.err = fmt.Errorf("event store unusable after a failed write: %w", broken)
			close(r.done)
		}
		return buf
	}
	over := map[string]*pending{}
	var added []newEntry
	now := s.opts.Now()
	var payload, ev []byte
	for _, r := range batch {
		name := r.stream.String()
		p := over[name]
		if p == nil {
			p = &pending{}
			s.mu.RLock()
			if i, found := s.byName[name]; found {
				st := s.streams[i]
				p.lastRev, p.lastHash, p.exists = st.lastRev, st.lastHash, st.lastHash != ""
			}
			s.mu.RUnlock()
			over[name] = p
		}
		if r.meta != nil {
			b, err := json.Marshal(r.meta)
			if err != nil {
				r.err = fmt.Errorf("encode metadata of %s: %w", name, err)
				continue
			}
			payload = appendString(payload[:0], name)
			payload = append(payload, b...)
			buf = frame(buf, kindMetadata, payload)
			m := *r.meta
			p.meta = &m
			continue
		}
		if !r.expected.Check(p.lastRev, p.exists) {
			r.err = &eventstore.ConflictError{Stream: name, Expected: r.expected, Actual: p.lastRev, Exists: p.exists}
			continue
		}
		first := uint64(0)
		if p.exists {
			first = p.lastRev + 1
		}
		evs, err := eventstore.Prepare(r.ctx, r.stream, first, p.lastHash, now, r.data)
		if err != nil {
			r.err = err
			continue
		}
		payload = appendUvarint(payload[:0], uint64(len(evs)))
		recStart := base + int64(len(buf)) + headerSize
		mark := len(added)
		for i := range evs {
			evs[i].Position = eventstore.Position(nextPos + uint64(i))
			ev = encodeEvent(ev[:0], &evs[i])
			payload = appendUvarint(payload, uint64(len(ev)))
			added = append(added, newEntry{
				entry:  entry{off: recStart + int64(len(payload)), n: uint32(len(ev)), rev: evs[i].Revision, time: evs[i].Time.UnixNano()},
				stream: name, pos: uint64(evs[i].Position),
			})
			payload = append(payload, ev...)
		}
		if len(payload) > maxRecord {
			added = added[:mark]
			r.err = fmt.Errorf("%w: append to %s is %d bytes, over the %d-byte limit", eventstore.ErrInvalid, name, len(payload), maxRecord)
			continue
		}
		nextPos += uint64(len(evs))
		buf = frame(buf, kindEvents, payload)
		last := evs[len(evs)-1]
		p.lastRev, p.lastHash, p.exists = last.Revision, last.Hash, true
		r.res = eventstore.AppendResult{NextExpected: last.Revision, Position: last.Position, Events: evs}
	}
	if len(buf) > 0 {
		if _, err := s.f.WriteAt(buf, base); err != nil {
			s.fail(batch, fmt.Errorf("write %s: %w", s.f.Name(), err))
			return buf
		}
		if err := s.f.Sync(); err != nil {
			s.fail(batch, fmt.Errorf("fsync %s: %w", s.f.Name(), err))
			return buf
		}
	}
	s.mu.Lock()
	for _, a := range added {
		s.addEntry(a.stream, a.entry, a.pos)
	}
	for name, p := range over {
		if p.meta != nil {
			s.stream(name).meta = *p.meta
		}
		if p.exists {
			st := s.stream(name)
			st.lastRev, st.lastHash = p.lastRev, p.lastHash
		}
	}
	s.size = base + int64(len(buf))
	if len(added) > 0 {
		close(s.notify)
		s.notify = make(chan struct{})
	}
	s.mu.Unlock()
	for _, r := range batch {
		close(r.done)
	}
	return buf
}

// fail marks the store unusable: after a failed fsync the kernel may have dropped the dirty pages,
// so nothing written since the last good fsync can be trusted (restart to recover from the log).
func (s *Store) fail(batch []*appendReq, err error) {
	s.opts.Logger.Error("event store write failed; refusing further appends", "error", err)
	s.mu.Lock()
	s.broken = err
	s.mu.Unlock()
	for _, r := range batch {
		if r.err == nil {
			r.err = err
			r.res = eventstore.AppendResult{}
		}
		close(r.done)
	}
}

// stream returns the state of name, creating it. Caller holds mu.
func (s *Store) stream(name string) *streamState {
	if i, ok := s.byName[name]; ok {
		return s.streams[i]
	}
	s.byName[name] = int32(len(s.streams))
	st := &streamState{name: name}
	s.streams = append(s.streams, st)
	return st
}

// addEntry indexes one event. Caller holds mu. pos must be len(entries)+1.
func (s *Store) addEntry(name string, e entry, pos uint64) {
	st := s.stream(name)
	e.stream = s.byName[name]
	s.entries = append(s.entries, e)
	st.pos = append(st.pos, pos)
	st.lastRev = e.rev
	t := tenantOf(name)
	s.tenants[t] = append(s.tenants[t], pos)
}

// tenantOf extracts the tenant id from a stream name built by tenant.NewStream ("t-acme.session-1").
func tenantOf(name string) string {
	for i := 2; i < len(name); i++ {
		if name[i] == '.' {
			return name[2:i]
		}
	}
	return ""
}
