// Package embedded is the key store of a single server: one file in the data folder made of
// fixed-size records, one per key, each overwritten in place.
//
// Why a file of our own rather than bbolt or the event log: erasure must leave the key's bytes in no
// file. An append-only log keeps old records until a compaction copies the rest away, and bbolt keeps
// freed pages (with the old bytes) until it happens to reuse them. Here every record has a fixed
// place: Destroy writes zeros over the key's 32 bytes in that place and fsyncs before it returns, and
// a free record is reused by the next Create, so the file is its own compaction and never grows with
// deletions of whole tenants.
//
// Layout: a 512-byte header, then 512-byte records:
//
//	[0]      state: 0 free, 1 live, 2 destroyed (a tombstone: tenant and id kept, key zeroed, so
//	         Create under a destroyed id answers keystore.ErrDestroyed instead of a fresh key)
//	[1]      tenant length, [2:65] tenant
//	[65:67]  id length (little endian), [67:467] id
//	[467:499] key
//	[508:512] CRC-32C of [0:508]
//
// Crash safety: Create writes the whole record and fsyncs before it returns, so an acknowledged key
// survives a crash. A record whose checksum fails on open is one whose write a crash cut short (a
// Create that was never acknowledged, or a Destroy under way): it is zeroed and freed, so a torn
// Destroy still ends with the key gone. Records are sector aligned, so a write cannot tear a
// neighbour.
//
// What the medium may still hold: on ext4/xfs an in-place overwrite rewrites the same blocks. A
// copy-on-write file system (btrfs, zfs) or an SSD's flash translation layer may keep the old block
// until it is reused; file system snapshots and backups of the data folder keep what they copied.
// Those are outside what a file can erase: put the data folder on a non-CoW file system (or use
// full-disk encryption) where that matters.
package embedded

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/crispy-enigma/crispy/platform/keystore"
	"github.com/crispy-enigma/crispy/platform/tenant"

	"github.com/crispy-enigma/crispy/platform/atomicfile"
)

const (
	recSize    = 512
	headerSize = 512
	magic      = "crispy-keystore\x00"
	version    = 1

	offState   = 0
	offTLen    = 1
	offTenant  = 2
	maxTenant  = 63
	offIDLen   = 65
	offID      = 67
	offKey     = offID + keystore.MaxIDLen // 467
	offCRC     = recSize - 4
	stateFree  = 0
	stateLive  = 1
	stateDestr = 2
)

var errReadOnly = errors.New("keystore: opened read-only")

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// FileName is the key store's file in the data folder.
const FileName = "keys.db"

type entry struct {
	slot  int64
	state byte
	key   []byte        // nil when destroyed
	ready chan struct{} // statePending: closed once the record is durable (or abandoned)
}

// statePending marks, in memory only, a key whose record is written and not yet fsynced: invisible
// to Key, waited for by a Create or Destroy of the same id.
const statePending = 3

// Store is the embedded key store.
type Store struct {
	mu       sync.RWMutex
	f        storeFile
	keys     map[string]*entry // tenant + "\x00" + id
	free     []int64           // free slots, reused before the file grows
	slots    int64             // slots in the file
	closed   bool
	readOnly bool
	rand     io.Reader
	log      *slog.Logger
	written  uint64 // records written so far (guarded by mu): what a sync covers

	// Group commit: Creates write their record under mu, then one fsync covers every record
	// written before it started, so concurrent Creates share fsyncs instead of queueing one each.
	syncMu sync.Mutex
	synced uint64 // written count the last successful fsync covered (guarded by syncMu)
}

var _ keystore.Store = (*Store)(nil)

// storeFile is what the store needs of its file. It is an interface so that a test can keep the
// bytes written apart from the bytes made durable by Sync and "crash" by reopening only the
// latter: a copy of an open file reads the page cache, so it cannot tell a missing fsync.
type storeFile interface {
	io.ReaderAt
	io.WriterAt
	Sync() error
	Truncate(size int64) error
	Stat() (os.FileInfo, error)
	Close() error
}

// Option configures Open.
type Option func(*Store)

// WithLog is where the store reports what it repaired at open (by default nowhere).
func WithLog(log *slog.Logger) Option {
	return func(s *Store) {
		if log != nil {
			s.log = log
		}
	}
}

// Open opens (creating it when missing) the key store at path, locking it against a second process.
func Open(path string, opts ...Option) (*Store, error) {
	if err := mkdirDurable(filepath.Dir(path)); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("keystore: open %s: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("keystore: %s is in use by another process: %w", path, err)
	}
	s, err := openFile(f, path, opts...)
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	return s, nil
}

// openFile is Open after the file is opened and locked (path names it, for messages and the
// folder's fsync).
func openFile(f storeFile, path string, opts ...Option) (*Store, error) {
	s := &Store{f: f, keys: map[string]*entry{}, rand: rand.Reader, log: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(s)
	}
	if err := s.load(path); err != nil {
		return nil, err
	}
	return s, nil
}

// OpenReadOnly reads the key store at path without locking it, for the operator's commands (replay)
// that run beside a live server: it takes the keys as they are now and never writes (a record the
// server is writing at that moment reads as absent, that is as erased). Create and Destroy fail.
func OpenReadOnly(path string) (*Store, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		// A data folder from before sealing (or with nothing sealed yet): no keys.
		return &Store{keys: map[string]*entry{}, readOnly: true}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("keystore: open %s: %w", path, err)
	}
	defer f.Close()
	s := &Store{f: f, keys: map[string]*entry{}, readOnly: true}
	if err := s.load(path); err != nil {
		return nil, err
	}
	s.f = nil
	return s, nil
}

func (s *Store) load(path string) error {
	st, err := s.f.Stat()
	if err != nil {
		return fmt.Errorf("keystore: %w", err)
	}
	if st.Size() == 0 && s.readOnly {
		return nil
	}
	if st.Size() == 0 {
		var h [headerSize]byte
		copy(h[:], magic)
		binary.LittleEndian.PutUint32(h[16:], version)
		binary.LittleEndian.PutUint32(h[20:], recSize)
		if _, err := s.f.WriteAt(h[:], 0); err != nil {
			return fmt.Errorf("keystore: write header: %w", err)
		}
		if err := s.f.Sync(); err != nil {
			return fmt.Errorf("keystore: sync: %w", err)
		}
		if err := atomicfile.SyncDir(filepath.Dir(path)); err != nil {
			return fmt.Errorf("keystore: %w", err)
		}
		return nil
	}
	var h [headerSize]byte
	if _, err := s.f.ReadAt(h[:], 0); err != nil {
		return fmt.Errorf("keystore: %s: read header: %w", path, err)
	}
	if string(h[:16]) != magic || binary.LittleEndian.Uint32(h[16:]) != version || binary.LittleEndian.Uint32(h[20:]) != recSize {
		return fmt.Errorf("keystore: %s is not a key store of this version", path)
	}
	// A file cut inside a record: the tail is an unacknowledged Create's (the file grows one record
	// at a time, fsynced before the Create returns).
	s.slots = (st.Size() - headerSize) / recSize
	if (st.Size()-headerSize)%recSize != 0 && !s.readOnly {
		if err := s.f.Truncate(headerSize + s.slots*recSize); err != nil {
			return fmt.Errorf("keystore: %s: drop torn tail: %w", path, err)
		}
	}
	buf := make([]byte, 256*recSize)
	var scratch []byte
	var repaired bool
	if len(s.keys) == 0 {
		// One entry per record at most: sized once, the map is not rehashed as it grows (half of
		// the load's time with 30,000 keys, one per session, on a 1M-event history).
		s.keys = make(map[string]*entry, s.slots)
	}
	for first := int64(0); first < s.slots; first += 256 {
		n := min(256, s.slots-first)
		b := buf[:n*recSize]
		if _, err := s.f.ReadAt(b, headerSize+first*recSize); err != nil {
			return fmt.Errorf("keystore: %s: read: %w", path, err)
		}
		for i := int64(0); i < n; i++ {
			rec := b[i*recSize : (i+1)*recSize]
			slot := first + i
			if isZero(rec) {
				s.free = append(s.free, slot)
				continue
			}
			mk, ok := decode(rec, &scratch)
			if !ok && s.readOnly {
				continue
			}
			if !ok {
				// Torn by a crash: zero it, so a cut Destroy leaves no key bytes either. It may
				// also be bit rot in a live key, which erases what was sealed under it: say so.
				t, id := names(rec)
				s.log.Warn("keystore: a damaged key record was zeroed (a write cut by a crash, or a damaged disk: content sealed under this key now reads as erased)",
					"file", path, "slot", slot, "tenant", t, "id", id)
				if err := s.writeSlot(slot, make([]byte, recSize)); err != nil {
					return err
				}
				repaired = true
				s.free = append(s.free, slot)
				continue
			}
			e := &entry{slot: slot, state: rec[offState]}
			if e.state == stateLive {
				e.key = append([]byte(nil), rec[offKey:offKey+keystore.KeySize]...)
			}
			s.keys[mk] = e
		}
	}
	if repaired {
		if err := s.f.Sync(); err != nil {
			return fmt.Errorf("keystore: sync: %w", err)
		}
	}
	// Reuse the lowest slots first, so the live records stay packed at the front.
	for i, j := 0, len(s.free)-1; i < j; i, j = i+1, j-1 {
		s.free[i], s.free[j] = s.free[j], s.free[i]
	}
	return nil
}

// names are a damaged record's tenant and id as far as they can be read (never its key), for the
// log line that reports its repair.
func names(rec []byte) (t, id string) {
	if tl := int(rec[offTLen]); tl <= maxTenant {
		t = strings.ToValidUTF8(string(rec[offTenant:offTenant+tl]), "?")
	}
	if il := int(binary.LittleEndian.Uint16(rec[offIDLen:])); il <= keystore.MaxIDLen {
		id = strings.ToValidUTF8(string(rec[offID:offID+il]), "?")
	}
	return t, id
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// decode checks a record and returns its mapKey (tenant and id), made in one allocation (scratch is
// reused between calls: a key store with a key per session loads one per record).
func decode(rec []byte, scratch *[]byte) (string, bool) {
	if crc32.Checksum(rec[:offCRC], crcTable) != binary.LittleEndian.Uint32(rec[offCRC:]) {
		return "", false
	}
	st, tl, il := rec[offState], int(rec[offTLen]), int(binary.LittleEndian.Uint16(rec[offIDLen:]))
	if (st != stateLive && st != stateDestr) || tl == 0 || tl > maxTenant || il == 0 || il > keystore.MaxIDLen {
		return "", false
	}
	b := append((*scratch)[:0], rec[offTenant:offTenant+tl]...)
	b = append(b, 0)
	b = append(b, rec[offID:offID+il]...)
	*scratch = b
	return string(b), true
}

func encode(state byte, t, id string, key []byte) []byte {
	rec := make([]byte, recSize)
	rec[offState] = state
	rec[offTLen] = byte(len(t))
	copy(rec[offTenant:], t)
	binary.LittleEndian.PutUint16(rec[offIDLen:], uint16(len(id)))
	copy(rec[offID:], id)
	copy(rec[offKey:offKey+keystore.KeySize], key)
	binary.LittleEndian.PutUint32(rec[offCRC:], crc32.Checksum(rec[:offCRC], crcTable))
	return rec
}

func mapKey(t, id string) string { return t + "\x00" + id }

func (s *Store) writeSlot(slot int64, rec []byte) error {
	if _, err := s.f.WriteAt(rec, headerSize+slot*recSize); err != nil {
		return fmt.Errorf("%w: keystore: write record: %w", keystore.ErrUnavailable, err)
	}
	return nil
}

// Key implements keystore.Store.
func (s *Store) Key(_ context.Context, t tenant.ID, id string) ([]byte, error) {
	if err := keystore.Validate(t, id); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, keystore.ErrClosed
	}
	e, ok := s.keys[mapKey(t.String(), id)]
	if !ok || e.state == statePending {
		return nil, keystore.ErrNotFound
	}
	if e.state != stateLive {
		return nil, keystore.ErrDestroyed
	}
	return append([]byte(nil), e.key...), nil
}

// Create implements keystore.Store: the record is written and fsynced before the key is returned;
// concurrent Creates share their fsyncs (group commit).
func (s *Store) Create(ctx context.Context, t tenant.ID, id string) ([]byte, error) {
	for {
		if k, err := s.Key(ctx, t, id); !errors.Is(err, keystore.ErrNotFound) {
			return k, err
		}
		k, ready, err := s.create(t, id)
		if ready != nil { // another Create of the id is under way: its outcome decides
			select {
			case <-ready:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return k, err
	}
}

// create writes a new key's record and waits for it to be durable; when the id is pending it
// returns that creation's ready channel instead.
func (s *Store) create(t tenant.ID, id string) ([]byte, chan struct{}, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, nil, keystore.ErrClosed
	}
	if s.readOnly {
		s.mu.Unlock()
		return nil, nil, errReadOnly
	}
	mk := mapKey(t.String(), id)
	if e, ok := s.keys[mk]; ok { // created while we waited for the lock
		defer s.mu.Unlock()
		switch e.state {
		case statePending:
			return nil, e.ready, nil
		case stateLive:
			return append([]byte(nil), e.key...), nil, nil
		}
		return nil, nil, keystore.ErrDestroyed
	}
	key := make([]byte, keystore.KeySize)
	if _, err := io.ReadFull(s.rand, key); err != nil {
		s.mu.Unlock()
		return nil, nil, fmt.Errorf("keystore: random key: %w", err)
	}
	slot := s.takeSlot()
	if err := s.writeSlot(slot, encode(stateLive, t.String(), id, key)); err != nil {
		s.free = append(s.free, slot)
		s.mu.Unlock()
		return nil, nil, err
	}
	e := &entry{slot: slot, state: statePending, key: key, ready: make(chan struct{})}
	s.keys[mk] = e
	s.written++
	gen := s.written
	s.mu.Unlock()

	err := s.syncThrough(gen)
	s.mu.Lock()
	defer s.mu.Unlock()
	defer close(e.ready)
	if s.closed { // closed meanwhile: its keys are zeroed
		return nil, nil, keystore.ErrClosed
	}
	if err != nil {
		// The record may or may not be on disk: zero it so the slot is reused cleanly.
		_ = s.writeSlot(slot, make([]byte, recSize))
		clear(e.key)
		s.free = append(s.free, slot)
		delete(s.keys, mk)
		return nil, nil, fmt.Errorf("%w: keystore: sync: %w", keystore.ErrUnavailable, err)
	}
	e.state = stateLive
	return append([]byte(nil), key...), nil, nil
}

// takeSlot is a free record's slot, or a new one at the end of the file; mu is held.
func (s *Store) takeSlot() int64 {
	if n := len(s.free); n > 0 {
		slot := s.free[n-1]
		s.free = s.free[:n-1]
		return slot
	}
	s.slots++
	return s.slots - 1
}

// syncThrough returns once an fsync that began after the gen-th record was written has succeeded:
// the first waiter fsyncs for everyone written so far, the ones queued behind it find their record
// covered and return without an fsync of their own.
func (s *Store) syncThrough(gen uint64) error {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	if s.synced >= gen {
		return nil
	}
	s.mu.Lock()
	target, f := s.written, s.f
	s.mu.Unlock()
	if err := f.Sync(); err != nil {
		return err
	}
	s.synced = target
	return nil
}

// Destroy implements keystore.Store: the record's key bytes are overwritten with zeros in place
// (the record stays as a tombstone of tenant and id) and fsynced before it returns.
func (s *Store) Destroy(_ context.Context, t tenant.ID, id string) error {
	if err := keystore.Validate(t, id); err != nil {
		return err
	}
	mk := mapKey(t.String(), id)
	s.mu.Lock()
	for {
		e, ok := s.keys[mk]
		if !ok || e.state != statePending {
			break
		}
		ready := e.ready // a Create under way: destroy what it made
		s.mu.Unlock()
		<-ready
		s.mu.Lock()
	}
	defer s.mu.Unlock()
	if s.closed {
		return keystore.ErrClosed
	}
	if s.readOnly {
		return errReadOnly
	}
	e, ok := s.keys[mk]
	if ok && e.state == stateDestr {
		return nil
	}
	var slot int64
	if ok {
		slot = e.slot
	} else {
		// Never created: still leave a tombstone, so a Create racing the deletion cannot give the
		// id a key afterwards.
		slot = s.takeSlot()
		e = &entry{slot: slot}
		s.keys[mk] = e
	}
	if err := s.writeSlot(slot, encode(stateDestr, t.String(), id, nil)); err != nil {
		if !ok {
			delete(s.keys, mk)
			s.free = append(s.free, slot)
		}
		return err
	}
	if err := s.f.Sync(); err != nil {
		if !ok {
			delete(s.keys, mk)
		}
		return fmt.Errorf("%w: keystore: sync: %w", keystore.ErrUnavailable, err)
	}
	clear(e.key)
	e.key, e.state = nil, stateDestr
	return nil
}

// DestroyTenant implements keystore.Store: every record of t is zeroed whole (no tombstones: the
// tenant is gone, its ids with it) and the slots are freed for reuse; one fsync for all.
func (s *Store) DestroyTenant(_ context.Context, t tenant.ID) error {
	if t.IsZero() {
		return fmt.Errorf("%w: no tenant", keystore.ErrInvalid)
	}
	prefix := t.String() + "\x00"
	s.mu.Lock()
	for ready := s.pendingOf(prefix); ready != nil; ready = s.pendingOf(prefix) {
		s.mu.Unlock()
		<-ready
		s.mu.Lock()
	}
	defer s.mu.Unlock()
	if s.closed {
		return keystore.ErrClosed
	}
	if s.readOnly {
		return errReadOnly
	}
	zero := make([]byte, recSize)
	var gone []string
	for mk, e := range s.keys {
		if len(mk) > len(prefix) && mk[:len(prefix)] == prefix {
			if err := s.writeSlot(e.slot, zero); err != nil {
				return err
			}
			gone = append(gone, mk)
		}
	}
	if len(gone) == 0 {
		return nil
	}
	if err := s.f.Sync(); err != nil {
		// Unavailable, as for Create and Destroy: the caller answers 503 and retries.
		return fmt.Errorf("%w: keystore: sync: %w", keystore.ErrUnavailable, err)
	}
	for _, mk := range gone {
		e := s.keys[mk]
		clear(e.key)
		s.free = append(s.free, e.slot)
		delete(s.keys, mk)
	}
	return nil
}

// pendingOf is the ready channel of a Create under way for a key of the tenant prefix (nil: none);
// mu is held.
func (s *Store) pendingOf(prefix string) chan struct{} {
	for mk, e := range s.keys {
		if e.state == statePending && strings.HasPrefix(mk, prefix) {
			return e.ready
		}
	}
	return nil
}

// Close releases the file; the keys held in memory are zeroed.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	for _, e := range s.keys {
		clear(e.key)
	}
	s.keys = nil
	if s.f == nil {
		return nil
	}
	return s.f.Close()
}

// mkdirDurable makes dir (and missing parents) and fsyncs the parent of each folder it made, so
// a power cut on a first start cannot lose keys.db's folder entry with the keys acknowledged in it.
func mkdirDurable(dir string) error {
	var missing []string
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil || !errors.Is(err, os.ErrNotExist) || d == filepath.Dir(d) {
			break
		}
		missing = append(missing, d)
	}
	if len(missing) == 0 {
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("keystore: %w", err)
	}
	for i := len(missing) - 1; i >= 0; i-- {
		if err := atomicfile.SyncDir(filepath.Dir(missing[i])); err != nil {
			return fmt.Errorf("keystore: %w", err)
		}
	}
	return nil
}
