// Package embedded is the default event store: an append-only log file in the data folder, so the
// binary runs with no server. Appends are group-committed (one write and one fsync for every append
// waiting at that moment) and acknowledged only after the fsync.
//
// The log's index lives on disk next to it (index.go): reads by stream, by tenant and by position
// go through it, and memory holds no entry per event, only a bounded cache of streams. Open reads
// the index's checkpoint and indexes only the log written since (its tail), so opening does not grow
// with history. In that tail a torn end (an interrupted last write) is cut off, logged and kept in a
// side file, and a damaged record followed by a valid one refuses to open; a record damaged earlier
// is found when it is read (ErrCorrupt) and by OpenReadOnly, which checks every record. A missing or
// damaged index is rebuilt from the log.
//
// A failed write or fsync (a full disk, an I/O error) does not break the store: the unacknowledged
// bytes are cut off again, writes are refused with eventstore.ErrStorageUnavailable while reads go on,
// and the writer heals the log by itself once a probe write succeeds (faults.go). OpenReadOnly opens
// the log without writing a byte, for verification, even beside a running server; Repair cuts a torn
// tail on an operator's explicit request.
//
// We chose a log of our own over SQLite: the data is append-only with reads by stream and by tenant
// in position order, which a log plus an index answers with sequential I/O, and group commit is a
// few lines here but needs care to reach through database/sql.
package embedded

import (
	"context"
	"encoding/binary"
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
	"github.com/crispy-enigma/crispy/platform/exposition"
	"github.com/crispy-enigma/crispy/platform/tenant"

	"github.com/crispy-enigma/crispy/platform/atomicfile"
)

// Options configures the store.
type Options struct {
	Logger  *slog.Logger
	Now     func() time.Time
	Metrics *metrics.Set
	// MaxBatch bounds how many appends share one fsync (default 512).
	MaxBatch int
	// HealInterval is how often a store whose writes failed tries to heal (default 1s).
	HealInterval time.Duration
	// Faults, when set, makes the log's writes, fsyncs and truncations fail on demand: tests of the
	// fault handling use it. Nil in production.
	Faults *Faults
	// CheckpointInterval is how often the index is checkpointed (default 1s): at most this much of
	// the log is indexed again at the next open after a crash.
	CheckpointInterval time.Duration
	// StreamCache bounds how many streams not changed since the last checkpoint are cached (default
	// 10,000); streams changed since are cached until it.
	StreamCache int
	// TempDir is where OpenReadOnly keeps its private copy of the index (default os.TempDir()).
	TempDir string
}

const logName = "events.log"

// ErrInUse is returned by Open and Repair when another process holds the store.
var ErrInUse = errors.New("event store in use")

// Store is the embedded event store. It is safe for concurrent use.
type Store struct {
	dir  string
	opts Options
	f    logFile
	lock *os.File // nil when opened read-only

	ix    *index
	cache *streamCache
	metas metaCache
	ib    *ixBatch // the writer's index batch, reused

	mu      sync.RWMutex
	last    uint64                 // position of the last acknowledged event
	tenants map[string]*tenantFile // tenant id -> its positions
	size    int64                  // acknowledged size: every byte before it is fsync'd and indexed
	lastRec int64                  // offset of the last record (-1: none), re-checked when healing
	lastCRC uint32                 // its checksum, for the index's checkpoint
	notify  chan struct{}
	closed  bool
	fault   *fault // set while writes are refused after a failed write or fsync

	readOnly bool
	live     bool      // read-only open while a writer held the lock
	torn     *TornTail // read-only open: what a writer's open would cut
	tmpIndex string    // read-only open: the folder of its private copy of the index

	reqs   chan *appendReq
	quit   chan struct{}
	done   chan struct{}
	ckKick chan struct{}
	ckDone chan struct{}

	// crashAt, set by tests, stops a checkpoint at the named step as a crash would.
	crashAt func(step string) bool
	hash    func(name string, salt int) uint64 // hashName; tests make it collide

	appendDur *metrics.PrometheusHistogram
	batchSize *metrics.PrometheusHistogram
	faults    *metrics.Counter // failed writes and fsyncs
	degraded  *metrics.Gauge   // 1 while appends are refused
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
func Open(dir string, opts Options) (*Store, error) { return open(dir, opts, nil) }

// open is Open; tweak, when set, changes the store before it opens its index (tests).
func open(dir string, opts Options, tweak func(*Store)) (*Store, error) {
	opts = opts.withDefaults()
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
		if err := atomicfile.SyncDir(dir); err != nil {
			f.Close()
			lock.Close()
			return nil, err
		}
	}
	s := newStore(dir, opts, f)
	s.lock = lock
	if tweak != nil {
		tweak(s)
	}
	torn, err := s.openIndex(filepath.Join(dir, indexDirName), false)
	if err == nil && torn != nil {
		_, err = s.cutTail(torn, false)
	}
	if err != nil {
		s.closeIndex()
		f.Close()
		lock.Close()
		return nil, err
	}
	go s.writer()
	go s.checkpointer()
	return s, nil
}

// OpenReadOnly opens the store in dir for reading and writes nothing in it: no truncation, no
// lock-file rewrite, no file created. Appends fail with eventstore.ErrReadOnly. Every record of the
// log is read and checked (this is the open that verification uses): a torn tail is not cut but
// reported by TornTail; corruption before the end refuses to open, as Open does.
//
// It reads through a private copy of the index, in a temporary folder removed at Close: the
// store's index is copied while no checkpoint writes it, then brought up to the log's end (or, when
// the store has none, built from the log). So it needs no memory per event, and leaves the
// server's index alone.
//
// It takes the lock shared, and only while it scans the log, and never waits for it. When no writer
// holds the lock, the scan sees a quiescent log, so a bad last record is a torn tail (a finding). When
// a server holds it (Live), the scan reads a consistent prefix: the log is append-only, the server cut
// any torn tail when it opened and cuts a failed write before it appends again, so bytes past the last
// whole record are a write in flight, not a finding, and the acknowledged prefix never changes under
// the reader (bytes past it can: scan reads a damaged record twice before it judges it).
// Holding the lock for the whole verification would buy nothing more and would keep a server from
// starting meanwhile.
func OpenReadOnly(dir string, opts Options) (*Store, error) {
	opts = opts.withDefaults()
	path := filepath.Join(dir, logName)
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no embedded event store in %s (%s not found): check --data-dir", dir, logName)
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	s := newStore(dir, opts, f)
	s.readOnly = true
	close(s.done)   // no writer
	close(s.ckDone) // no checkpoints of its own
	release, live, err := sharedLock(dir)
	if err != nil {
		f.Close()
		return nil, err
	}
	s.live = live
	torn, err := s.openPrivateIndex()
	release()
	if err != nil {
		s.closeIndex()
		f.Close()
		return nil, err
	}
	if !live {
		s.torn = torn
	}
	return s, nil
}

// openPrivateIndex copies the store's index to a temporary folder and opens it there.
func (s *Store) openPrivateIndex() (*TornTail, error) {
	tmp, err := os.MkdirTemp(s.opts.TempDir, "crispy-index-")
	if err != nil {
		return nil, fmt.Errorf("create a folder for a copy of the event store's index: %w", err)
	}
	s.tmpIndex = tmp
	if _, err := copyIndex(filepath.Join(s.dir, indexDirName), tmp); err != nil {
		// The copy is an optimisation: without it the index is built from the log.
		s.opts.Logger.Warn("event store: could not copy the index; building one from the log", "error", err)
		if err := os.RemoveAll(tmp); err == nil {
			err = os.Mkdir(tmp, 0o700)
		}
	}
	return s.openIndex(tmp, true)
}

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 512
	}
	if o.HealInterval <= 0 {
		o.HealInterval = time.Second
	}
	if o.CheckpointInterval <= 0 {
		o.CheckpointInterval = time.Second
	}
	if o.StreamCache <= 0 {
		o.StreamCache = 10_000
	}
	return o
}

func newStore(dir string, opts Options, f *os.File) *Store {
	s := &Store{
		dir: dir, opts: opts, f: opts.Faults.wrap(f), lastRec: -1,
		cache: newStreamCache(max(opts.StreamCache, 2*opts.MaxBatch)), ib: &ixBatch{}, tenants: map[string]*tenantFile{},
		notify: make(chan struct{}), reqs: make(chan *appendReq), quit: make(chan struct{}), done: make(chan struct{}),
		ckKick: make(chan struct{}, 1), ckDone: make(chan struct{}), hash: hashName,
	}
	if opts.Metrics != nil {
		s.appendDur = opts.Metrics.GetOrCreatePrometheusHistogramExt("crispy_eventstore_append_duration_seconds", exposition.LatencyBuckets)
		s.batchSize = opts.Metrics.GetOrCreatePrometheusHistogramExt("crispy_eventstore_commit_batch_size", exposition.SizeBuckets)
		s.faults = opts.Metrics.GetOrCreateCounter("crispy_eventstore_write_faults_total")
		// Set, not computed from s: a gauge outlives the store that registered it in the Set.
		s.degraded = opts.Metrics.GetOrCreateGauge("crispy_eventstore_degraded", nil)
		s.degraded.Set(0)
	}
	return s
}

// Live reports whether a writer held the store while OpenReadOnly scanned it.
func (s *Store) Live() bool { return s.live }

// TornTail reports the torn tail that OpenReadOnly found and left in place (nil: none, or Live).
func (s *Store) TornTail() *TornTail { return s.torn }

// Size is the size of the log's valid prefix: every record before it was read back intact.
func (s *Store) Size() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.size
}

// Path is the log file's path.
func (s *Store) Path() string { return filepath.Join(s.dir, logName) }

// lockDir takes dir's lock exclusively without waiting and records this process's pid in the lock
// file, for the message another process gets.
func lockDir(dir string) (*os.File, error) {
	p := filepath.Join(dir, "LOCK")
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", p, err)
	}
	if err := flockBriefly(f, syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, lockError(dir, err)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(fmt.Sprint(os.Getpid())), 0)
	return f, nil
}

// lockError is why dir's lock could not be taken: ErrInUse, naming the holder's pid, when another
// process holds it; else the lock call's own error (a file system without locks is not "in use").
func lockError(dir string, err error) error {
	p := filepath.Join(dir, "LOCK")
	if !errors.Is(err, syscall.EWOULDBLOCK) {
		return fmt.Errorf("lock %s: %w", p, err)
	}
	pid, _ := os.ReadFile(p)
	return fmt.Errorf("%w: event store %s is in use by another process (pid %s, or a 'crispy verify' reading it)", ErrInUse, dir, pid)
}

// flockBriefly takes a lock without blocking, retrying for up to a second: a process that forks (to
// start a plugin, a test's child) lends a just-closed lock's descriptor to the child until it execs,
// so a lock released a moment ago can still look held; on a loaded machine that window passed the
// 100 ms this waited before (a test reopening a store it had just closed, while a parallel test
// forked, failed as "in use" by its own pid). A real holder keeps it far longer.
func flockBriefly(f *os.File, how int) error {
	for i := 0; ; i++ {
		err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		if !errors.Is(err, syscall.EWOULDBLOCK) || i == 50 {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sharedLock takes dir's lock shared without waiting and returns its release. live is true when a
// writer holds it (then nothing is held). A missing lock file (a copied log) means no writer.
func sharedLock(dir string) (release func(), live bool, err error) {
	p := filepath.Join(dir, "LOCK")
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return func() {}, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("open lock %s: %w", p, err)
	}
	if err := flockBriefly(f, syscall.LOCK_SH); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return func() {}, true, nil
		}
		return nil, false, lockError(dir, err)
	}
	return func() { f.Close() }, false, nil
}

// Append implements eventstore.Store.
func (s *Store) Append(ctx context.Context, stream tenant.Stream, expected eventstore.ExpectedRevision, data ...eventstore.EventData) (eventstore.AppendResult, error) {
	if stream.IsZero() {
		return eventstore.AppendResult{}, fmt.Errorf("%w: stream without tenant", eventstore.ErrInvalid)
	}
	if len(data) == 0 {
		return eventstore.AppendResult{}, fmt.Errorf("%w: append to %s with no events", eventstore.ErrInvalid, stream)
	}
	if s.readOnly {
		return eventstore.AppendResult{}, eventstore.ErrReadOnly
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

// writer is the only goroutine that writes the log. While the store is faulted it also heals it,
// every HealInterval, so healing never races an append.
func (s *Store) writer() {
	defer close(s.done)
	batch := make([]*appendReq, 0, s.opts.MaxBatch)
	var buf []byte
	var healTick *time.Ticker
	var healC <-chan time.Time
	defer func() {
		if healTick != nil {
			healTick.Stop()
		}
	}()
	for {
		if s.faultState() != nil && healTick == nil {
			healTick = time.NewTicker(s.opts.HealInterval)
			healC = healTick.C
		}
		batch = batch[:0]
		select {
		case r := <-s.reqs:
			batch = append(batch, r)
		case <-healC:
			if s.heal() {
				healTick.Stop()
				healTick, healC = nil, nil
			}
			continue
		case <-s.quit:
			if s.faultState() != nil {
				// Leave no unacknowledged bytes behind if the storage allows it now.
				_ = s.rollback(s.size)
			}
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

// pending is a stream's state within a batch.
type pending struct {
	e       streamEntry
	changed bool
}

// commit validates, encodes, writes and fsyncs one batch, indexes it, then publishes it to readers.
// A request that fails validation fails alone; a failed write, fsync or index write fails the batch
// and faults the store until it heals (faults.go).
func (s *Store) commit(batch []*appendReq, buf []byte) []byte {
	if s.batchSize != nil {
		s.batchSize.Update(float64(len(batch)))
	}
	s.mu.RLock()
	fault, base, nextPos := s.fault, s.size, s.last+1
	s.mu.RUnlock()
	if fault != nil {
		for _, r := range batch {
			r.err = fault.refusal()
			close(r.done)
		}
		return buf
	}
	lastRec := s.lastRec
	over := map[string]*pending{}
	ib := s.ib
	ib.reset(nextPos)
	now := s.opts.Now()
	var payload, ev []byte
	for _, r := range batch {
		name := r.stream.String()
		p := over[name]
		if p == nil {
			e, _, err := s.lookupStream(name, true)
			if err != nil {
				r.err = fmt.Errorf("look up %s: %w", name, err)
				continue
			}
			p = &pending{e: e}
			over[name] = p
		}
		recOff := base + int64(len(buf))
		if r.meta != nil {
			b, err := json.Marshal(r.meta)
			if err != nil {
				r.err = fmt.Errorf("encode metadata of %s: %w", name, err)
				continue
			}
			payload = appendString(payload[:0], name)
			payload = append(payload, b...)
			lastRec = recOff
			buf = frame(buf, kindMetadata, payload)
			p.e.meta, p.e.metaAt, p.changed = *r.meta, recOff+1, true
			continue
		}
		exists := p.e.lastHash != ""
		if !r.expected.Check(p.e.lastRev, exists) {
			r.err = &eventstore.ConflictError{Stream: name, Expected: r.expected, Actual: p.e.lastRev, Exists: exists}
			continue
		}
		first := uint64(0)
		if exists {
			first = p.e.lastRev + 1
		}
		evs, err := eventstore.Prepare(r.ctx, r.stream, first, p.e.lastHash, now, r.data)
		if err != nil {
			r.err = err
			continue
		}
		payload = appendUvarint(payload[:0], uint64(len(evs)))
		mark := len(ib.recs)
		prev, t := p.e.last, tenantOf(name)
		for i := range evs {
			pos := nextPos + uint64(i)
			evs[i].Position = eventstore.Position(pos)
			ev = encodeEvent(ev[:0], &evs[i])
			payload = appendUvarint(payload, uint64(len(ev)))
			ib.add(posRec{recOff: recOff, evOff: uint32(len(payload)), evLen: uint32(len(ev)), h: p.e.h, prev: prev, rev: evs[i].Revision, time: evs[i].Time.UnixNano()}, t)
			prev = pos
			payload = append(payload, ev...)
		}
		if len(payload) > maxRecord {
			ib.truncate(mark)
			r.err = fmt.Errorf("%w: append to %s is %d bytes, over the %d-byte limit", eventstore.ErrInvalid, name, len(payload), maxRecord)
			continue
		}
		ib.setRecLen(mark, uint32(len(payload)))
		nextPos += uint64(len(evs))
		lastRec = recOff
		buf = frame(buf, kindEvents, payload)
		last := evs[len(evs)-1]
		p.e.last, p.e.lastRev, p.e.lastHash, p.changed = uint64(last.Position), last.Revision, last.Hash, true
		r.res = eventstore.AppendResult{NextExpected: last.Revision, Position: last.Position, Events: evs}
	}
	lastCRC := s.lastCRC
	if len(buf) > 0 {
		// The file's errors name the operation and the path already ("write …/events.log: no space …").
		if _, err := s.f.WriteAt(buf, base); err != nil {
			s.fail(batch, base, err)
			return buf
		}
		if err := s.f.Sync(); err != nil {
			s.fail(batch, base, err)
			return buf
		}
		lastCRC = binary.LittleEndian.Uint32(buf[lastRec-base+4:])
		// Indexed before it is acknowledged, so that every acknowledged event can be read. A
		// failed index write fails the batch like a failed log write: nothing is acknowledged.
		if err := s.writeIndex(ib); err != nil {
			s.fail(batch, base, err)
			return buf
		}
	}
	s.mu.Lock()
	s.publishIndex(ib)
	for _, p := range over {
		if p.changed {
			s.cache.publish(p.e)
		}
		if p.e.metaAt > base { // its metadata changed in this batch
			s.metas.forget(p.e.h)
		}
	}
	s.last = nextPos - 1
	s.size = base + int64(len(buf))
	s.lastRec, s.lastCRC = lastRec, lastCRC
	if len(ib.recs) > 0 {
		close(s.notify)
		s.notify = make(chan struct{})
	}
	kick := s.last-s.ix.coveredPos() >= checkpointEvery || s.cache.dirtyCount() >= checkpointEvery
	s.mu.Unlock()
	if kick {
		select {
		case s.ckKick <- struct{}{}:
		default:
		}
	}
	for _, r := range batch {
		close(r.done)
	}
	return buf
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
