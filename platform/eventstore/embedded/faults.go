package embedded

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/health"
)

// Storage faults, and how the store heals from them.
//
// A batch is acknowledged only after its write and its fsync both succeed, so at any moment the log
// is: an acknowledged prefix of s.size bytes, fsync'd, then possibly bytes of the batch in flight.
// When a write or an fsync fails (ENOSPC, EIO, …) the batch is refused and the store is faulted:
//
//   - Nothing past s.size can be trusted. A failed write may have left part of the batch (a full disk
//     writes what fits); a failed fsync leaves the whole batch in the page cache with its fate on disk
//     unknown, and on Linux a later fsync may even report success for pages whose writeback failed
//     (the error is reported once, then the pages are clean). So the store never builds on those
//     bytes: before it appends again it cuts the file back to s.size and fsyncs the cut. It does so
//     at once when the fault happens (rollback, so the refused batch does not resurface after a
//     crash as an event nobody acknowledged), and again in every healing attempt.
//   - Acknowledged data is safe. It was fsync'd before the failing batch was written; a failed fsync
//     concerns only pages dirtied since the last good one. The one page both may share (the last
//     acknowledged record's end and the batch's start) held the acknowledged bytes when they were
//     fsync'd; whether the kernel now keeps its newer copy or drops it and rereads the disk, the
//     acknowledged bytes in it are the same, and the cut to s.size zeroes the rest. Healing still
//     reads the last acknowledged record back and checks its checksum, so a device that lost data it
//     had acknowledged keeps the store faulted instead of appending after a hole.
//   - When that cut fails too, the batch may still be in the file, whole, and a crash before a heal
//     would bring it back at the next open: its appends get eventstore.ErrStorageOutcomeUnknown (503
//     as well) instead of a refusal that says nothing was recorded.
//   - While faulted, appends are refused at once with eventstore.ErrStorageUnavailable (503
//     storage_unavailable with retry-after) and Health reports degraded; reads go on, since they
//     touch only the acknowledged prefix.
//   - Every HealInterval the writer tries to heal: cut back to s.size and fsync, re-check the last
//     acknowledged record, then prove that the storage takes a write and an fsync again with a probe
//     block written past the end and cut off again. Only then are appends accepted, so a store on a
//     still-full disk stays degraded instead of failing the next client's append. No restart needed.
//
// A probe or a failed batch cut short by a crash is a torn tail at the next open, cut there.

// probeSize is how much the healer writes to prove the storage takes writes again: one page.
const probeSize = 4096

// fault is why appends are refused.
type fault struct {
	err   error
	since time.Time
}

// refusal is the error an append gets while the store is faulted.
func (f *fault) refusal() error {
	return fmt.Errorf("%w: %w", eventstore.ErrStorageUnavailable, f.err)
}

func (s *Store) faultState() *fault {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.fault
}

// fail refuses batch after its write or fsync at base failed, cuts the log back to base and faults
// the store until heal succeeds.
func (s *Store) fail(batch []*appendReq, base int64, err error) {
	if s.faults != nil {
		s.faults.Inc()
		s.degraded.Set(1)
	}
	rerr := s.rollback(base)
	s.opts.Logger.Error("event store write failed; refusing appends until the storage recovers (reads go on)",
		"error", err, "rollbackError", rerr, "healEvery", s.opts.HealInterval.String())
	f := &fault{err: err, since: s.opts.Now()}
	s.mu.Lock()
	s.fault = f
	s.mu.Unlock()
	refusal := f.refusal()
	if rerr != nil {
		// The batch's bytes may still be in the file, whole, until the healer manages the cut: a
		// crash before that would bring them back at the next open. "Nothing was recorded" would
		// be a lie, and a module that believes it would never look for the write again.
		refusal = fmt.Errorf("%w: %w", eventstore.ErrStorageOutcomeUnknown, err)
	}
	for _, r := range batch {
		if r.err == nil {
			r.err = refusal
			r.res = eventstore.AppendResult{}
		}
		close(r.done)
	}
}

// rollback cuts the log back to size and makes the cut durable.
func (s *Store) rollback(size int64) error {
	if err := s.f.Truncate(size); err != nil {
		return fmt.Errorf("truncate %s to %d: %w", s.f.Name(), size, err)
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", s.f.Name(), err)
	}
	return nil
}

// heal tries once to make the log writable again (see the comment at the top of this file). It runs
// on the writer goroutine and reports whether appends may resume.
func (s *Store) heal() bool {
	size := s.size // only the writer changes s.size
	err := s.rollback(size)
	if err == nil {
		err = s.checkLastRecord()
	}
	if err == nil {
		err = s.probe(size)
	}
	if err != nil {
		s.opts.Logger.Warn("event store still cannot write", "error", err)
		s.mu.Lock()
		if s.fault != nil {
			s.fault = &fault{err: err, since: s.fault.since} // a new value: Health reads the old one unlocked
		}
		s.mu.Unlock()
		return false
	}
	s.mu.Lock()
	since := s.fault.since
	s.fault = nil
	s.mu.Unlock()
	if s.degraded != nil {
		s.degraded.Set(0)
	}
	s.opts.Logger.Info("event store recovered: appends resume", "faultedFor", s.opts.Now().Sub(since).Round(time.Millisecond).String(), "size", size)
	return true
}

// checkLastRecord reads the last acknowledged record back and checks its checksum.
func (s *Store) checkLastRecord() error {
	if s.lastRec < 0 {
		return nil
	}
	var hdr [headerSize]byte
	if _, err := s.f.ReadAt(hdr[:], s.lastRec); err != nil {
		return fmt.Errorf("read back the last record of %s at %d: %w", s.f.Name(), s.lastRec, err)
	}
	n := int64(binary.LittleEndian.Uint32(hdr[0:4]))
	if s.lastRec+headerSize+n != s.size {
		return fmt.Errorf("%w: the last record of %s at %d does not end at the acknowledged size %d", eventstore.ErrCorrupt, s.f.Name(), s.lastRec, s.size)
	}
	payload := make([]byte, n)
	if _, err := s.f.ReadAt(payload, s.lastRec+headerSize); err != nil {
		return fmt.Errorf("read back the last record of %s at %d: %w", s.f.Name(), s.lastRec, err)
	}
	c := crc32.Update(0, crcTable, hdr[8:9])
	if crc32.Update(c, crcTable, payload) != binary.LittleEndian.Uint32(hdr[4:8]) {
		return fmt.Errorf("%w: the last acknowledged record of %s at %d no longer reads back as written (restore the data folder from a backup)", eventstore.ErrCorrupt, s.f.Name(), s.lastRec)
	}
	return nil
}

// probe writes a block past the end, fsyncs it and cuts it off again: proof that the storage takes
// writes once more. A crash in between leaves a torn tail of zeros, cut at the next open.
func (s *Store) probe(size int64) error {
	_, werr := s.f.WriteAt(make([]byte, probeSize), size)
	if werr == nil {
		werr = s.f.Sync()
	}
	if err := s.rollback(size); err != nil {
		return errors.Join(werr, err)
	}
	if werr != nil {
		return fmt.Errorf("probe write to %s: %w", s.f.Name(), werr)
	}
	return nil
}

// Health implements eventstore.HealthChecker: nil when appends are accepted, degraded while a
// storage fault refuses them (reads work), eventstore.ErrClosed after Close.
func (s *Store) Health(ctx context.Context) error {
	s.mu.RLock()
	closed, f := s.closed, s.fault
	s.mu.RUnlock()
	if closed {
		return eventstore.ErrClosed
	}
	if why := s.ix.damaged.Load(); why != nil && f == nil {
		return health.DegradedState("the event store index is damaged: some reads fail until a restart rebuilds it from the log (the log is intact)")
	}
	if f == nil {
		return nil
	}
	// The reason reaches tenants through /health: the cause's errno, never a path.
	cause := "write failed"
	var errno syscall.Errno
	if errors.As(f.err, &errno) {
		cause = errno.Error()
	} else if errors.Is(f.err, eventstore.ErrCorrupt) {
		cause = "the last acknowledged record does not read back"
	}
	return health.DegradedState(fmt.Sprintf("writes refused since %s (%s); reads work; retrying every %s",
		f.since.UTC().Format(time.RFC3339), cause, s.opts.HealInterval))
}

// logFile is what the store does to its log. *os.File is one; Faults wraps it.
type logFile interface {
	io.ReaderAt
	io.WriterAt
	Sync() error
	Truncate(size int64) error
	Stat() (os.FileInfo, error)
	Name() string
	Close() error
}

// Faults makes the log's writes, fsyncs and truncations fail on demand, for tests of what the store
// does on a full disk or a failing device. Set it in Options; the zero value injects nothing, and a
// nil *Faults is production.
type Faults struct {
	mu       sync.Mutex
	write    error
	sync     error
	truncate error
	partial  bool
	read     int64 // bytes read from the log
}

// BytesRead is how many bytes have been read from the log (tests of what an open reads).
func (x *Faults) BytesRead() int64 { x.mu.Lock(); defer x.mu.Unlock(); return x.read }

// FailWrites makes every write fail with err (nil: succeed again). With partial, a failed write
// first writes the first half of its bytes, as a write that runs out of space does.
func (x *Faults) FailWrites(err error, partial bool) {
	x.mu.Lock()
	x.write, x.partial = err, partial
	x.mu.Unlock()
}

// FailSyncs makes every fsync fail with err (nil: succeed again).
func (x *Faults) FailSyncs(err error) { x.mu.Lock(); x.sync = err; x.mu.Unlock() }

// FailTruncates makes every truncation fail with err (nil: succeed again).
func (x *Faults) FailTruncates(err error) { x.mu.Lock(); x.truncate = err; x.mu.Unlock() }

// Clear ends every injected fault.
func (x *Faults) Clear() {
	x.mu.Lock()
	x.write, x.sync, x.truncate, x.partial = nil, nil, nil, false
	x.mu.Unlock()
}

func (x *Faults) wrap(f *os.File) logFile {
	if x == nil {
		return f
	}
	return &faultyFile{File: f, x: x}
}

type faultyFile struct {
	*os.File
	x *Faults
}

func (f *faultyFile) WriteAt(b []byte, off int64) (int, error) {
	f.x.mu.Lock()
	err, partial := f.x.write, f.x.partial
	f.x.mu.Unlock()
	if err == nil {
		return f.File.WriteAt(b, off)
	}
	n := 0
	if partial {
		n, _ = f.File.WriteAt(b[:len(b)/2], off)
	}
	return n, &os.PathError{Op: "write", Path: f.Name(), Err: err}
}

func (f *faultyFile) ReadAt(b []byte, off int64) (int, error) {
	n, err := f.File.ReadAt(b, off)
	f.x.mu.Lock()
	f.x.read += int64(n)
	f.x.mu.Unlock()
	return n, err
}

func (f *faultyFile) Sync() error {
	f.x.mu.Lock()
	err := f.x.sync
	f.x.mu.Unlock()
	if err != nil {
		return &os.PathError{Op: "sync", Path: f.Name(), Err: err}
	}
	return f.File.Sync()
}

func (f *faultyFile) Truncate(size int64) error {
	f.x.mu.Lock()
	err := f.x.truncate
	f.x.mu.Unlock()
	if err != nil {
		return &os.PathError{Op: "truncate", Path: f.Name(), Err: err}
	}
	return f.File.Truncate(size)
}
