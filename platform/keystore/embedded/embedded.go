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
// Finding a key: keys.db.idx beside the file (index.go) says in which record each key is, so an
// open reads the header and no record, and a lookup reads the one record it needs; recently used
// keys are kept in a bounded cache (cache.go). The index holds no key bytes, tenant or id: it is
// written whole at Close and trusted only while keys.db is as Close left it (a crash, or any other
// writer, makes the next open read every record, as every open did before).
//
// Layout: a 512-byte header (magic, version, record size; [24:40] the token of the index written
// with it, zero while a process writes), then 512-byte records:
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
	"slices"
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

// FileName is the key store's file in the data folder (its index is FileName+".idx" beside it).
const FileName = "keys.db"

// DefaultCacheKeys is how many keys (live or destroyed) a store keeps in memory by default: the
// recently used ones, so the sealing of a busy session does not read its record each time.
const DefaultCacheKeys = 8192

// entry is a Create under way: its record is written and not yet fsynced, so Key does not see it
// and a Create or Destroy of the same id waits for ready (closed once durable, or abandoned).
type entry struct {
	slot  int64
	tag   uint64
	key   []byte
	ready chan struct{}
}

// Store is the embedded key store.
type Store struct {
	mu       sync.RWMutex
	f        storeFile // nil: a read-only store of a missing file (no keys)
	path     string
	ix       *keyIndex         // where each record is (index.go); guarded by mu (pages load under its read lock)
	pending  map[string]*entry // Creates under way, by tenant + "\x00" + id
	cache    *keyCache
	free     []int64 // free slots, reused before the file grows
	freeRead bool    // free holds the index file's list (read when a slot is first needed)
	slots    int64   // slots in the file
	token    [tokenSize]byte
	dirty    bool // keys.db was written since open (its token cleared first): Close writes the index
	scanned  bool // the index was built by reading every record: Close writes it
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

// WithCacheKeys bounds the keys kept in memory (DefaultCacheKeys by default; 0: none, every Key
// reads its record).
func WithCacheKeys(n int) Option {
	return func(s *Store) { s.cache = newKeyCache(n) }
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

func newStore(f storeFile, path string, readOnly bool, opts ...Option) *Store {
	s := &Store{f: f, path: path, readOnly: readOnly, pending: map[string]*entry{}, cache: newKeyCache(DefaultCacheKeys),
		rand: rand.Reader, log: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(s)
	}
	return s
}

// openFile is Open after the file is opened and locked (path names it, for messages, the index
// beside it and the folder's fsync).
func openFile(f storeFile, path string, opts ...Option) (*Store, error) {
	s := newStore(f, path, false, opts...)
	if err := s.load(); err != nil {
		s.closeIndex()
		return nil, err
	}
	return s, nil
}

// OpenReadOnly reads the key store at path without locking it, for the operator's commands (replay)
// that run beside a live server: it reads the keys as they are when asked (a record the server is
// writing at that moment reads as absent, that is as erased; a key the server creates after the
// open may be missing) and never writes. Create and Destroy fail.
func OpenReadOnly(path string) (*Store, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		// A data folder from before sealing (or with nothing sealed yet): no keys.
		s := newStore(nil, path, true)
		if s.ix, err = newIndex(0); err != nil {
			return nil, err
		}
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("keystore: open %s: %w", path, err)
	}
	s := newStore(roFile{f}, path, true)
	if err := s.load(); err != nil {
		s.closeIndex()
		_ = f.Close()
		return nil, err
	}
	return s, nil
}

// roFile is a file opened for reading only, as a storeFile (the store never writes it).
type roFile struct{ *os.File }

// load opens the file: its header, then the index if it describes the file as it is (nothing
// else is read), else every record (scan).
func (s *Store) load() error {
	st, err := s.f.Stat()
	if err != nil {
		return fmt.Errorf("keystore: %w", err)
	}
	if st.Size() == 0 {
		if s.ix, err = newIndex(0); err != nil || s.readOnly {
			return err
		}
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
		if err := atomicfile.SyncDir(filepath.Dir(s.path)); err != nil {
			return fmt.Errorf("keystore: %w", err)
		}
		s.freeRead = true
		return nil
	}
	var h [headerSize]byte
	if _, err := s.f.ReadAt(h[:], 0); err != nil {
		return fmt.Errorf("keystore: %s: read header: %w", s.path, err)
	}
	if string(h[:16]) != magic || binary.LittleEndian.Uint32(h[16:]) != version || binary.LittleEndian.Uint32(h[20:]) != recSize {
		return fmt.Errorf("keystore: %s is not a key store of this version", s.path)
	}
	copy(s.token[:], h[offDBToken:])
	s.slots = (st.Size() - headerSize) / recSize
	if torn := (st.Size()-headerSize)%recSize != 0; !torn {
		// A clean shutdown's index, if nothing wrote keys.db since (see index.go).
		s.ix, err = openIndex(s.path+indexSuffix, dbStamp{token: s.token, size: st.Size(), mtime: st.ModTime().UnixNano()}, s.slots)
		if err != nil || s.ix != nil {
			return err
		}
	} else if !s.readOnly {
		// A file cut inside a record: the tail is an unacknowledged Create's (the file grows one
		// record at a time, fsynced before the Create returns).
		if err := s.ensureDirty(); err != nil {
			return err
		}
		if err := s.f.Truncate(headerSize + s.slots*recSize); err != nil {
			return fmt.Errorf("keystore: %s: drop torn tail: %w", s.path, err)
		}
	}
	return s.scan()
}

// scan builds the index and the free slots by reading every record (a crash, an older or foreign
// writer, or a damaged index), zeroing the records a crash tore.
func (s *Store) scan() error {
	ix, err := newIndex(s.slots)
	if err != nil {
		return err
	}
	if s.ix != nil {
		s.ix.close()
	}
	s.ix, s.free, s.freeRead, s.scanned = ix, nil, true, true
	var scratch []byte
	var repaired bool
	readFailed := func(err error) error { return fmt.Errorf("keystore: %s: read: %w", s.path, err) }
	err = s.eachRecord(readFailed, func(slot int64, rec []byte) error {
		if isZero(rec) {
			s.free = append(s.free, slot)
			return nil
		}
		mk, ok := decode(rec, &scratch)
		if !ok && s.readOnly {
			return nil
		}
		if !ok {
			// Torn by a crash: zero it, so a cut Destroy leaves no key bytes either. It may
			// also be bit rot in a live key, which erases what was sealed under it: say so.
			if err := s.zeroDamaged(slot, rec); err != nil {
				return err
			}
			repaired = true
			return nil
		}
		keep, err := s.dedupe(mk, slot, rec[offState])
		if err != nil {
			return err
		}
		repaired = repaired || !keep
		if keep {
			return ix.insert(ix.tag(mk), slot)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if repaired {
		if err := s.f.Sync(); err != nil {
			return fmt.Errorf("keystore: sync: %w", err)
		}
	}
	// Reuse the lowest slots first, so the live records stay packed at the front.
	slices.Reverse(s.free)
	return nil
}

// eachRecord calls fn with every slot of the file and its record, read 256 at a time (rec is valid
// only during the call); it stops at fn's first error, or at a failed read, returned as readFailed
// words it. The read buffer is zeroed at the end: it held key bytes.
func (s *Store) eachRecord(readFailed func(error) error, fn func(slot int64, rec []byte) error) error {
	buf := make([]byte, 256*recSize)
	defer clear(buf)
	for first := int64(0); first < s.slots; first += 256 {
		n := min(256, s.slots-first)
		b := buf[:n*recSize]
		if _, err := s.f.ReadAt(b, headerSize+first*recSize); err != nil {
			return readFailed(err)
		}
		for i := int64(0); i < n; i++ {
			if err := fn(first+i, b[i*recSize:(i+1)*recSize]); err != nil {
				return err
			}
		}
	}
	return nil
}

// zeroDamaged zeroes a record whose checksum fails and frees its slot, saying so (mu held; the
// caller fsyncs).
func (s *Store) zeroDamaged(slot int64, rec []byte) error {
	t, id := names(rec)
	s.log.Warn("keystore: a damaged key record was zeroed (a write cut by a crash, or a damaged disk: content sealed under this key now reads as erased)",
		"file", s.path, "slot", slot, "tenant", t, "id", id)
	if err := s.ensureDirty(); err != nil {
		return err
	}
	if err := s.writeSlot(slot, make([]byte, recSize)); err != nil {
		return err
	}
	s.free = append(s.free, slot)
	return nil
}

// dedupe settles a second record of an id the scan already indexed (only a writer that bypassed
// the index could make one): a tombstone wins over a live key (never bring back what was
// destroyed), else the first record stays; the other is zeroed, so no key bytes are left that no
// Destroy would find. keep: index this record.
func (s *Store) dedupe(mk string, slot int64, state byte) (keep bool, err error) {
	tag := s.ix.tag(mk)
	var other int64 = -1
	var otherState byte
	err = s.ix.find(tag, func(o int64) (bool, error) {
		r, err := s.readRecord(o)
		if err != nil {
			return false, err
		}
		if m, ok := decode(r, new([]byte)); ok && m == mk {
			other, otherState = o, r[offState]
			return true, nil
		}
		return false, nil
	})
	if err != nil || other < 0 {
		return true, err
	}
	if s.readOnly {
		if state == stateDestr && otherState != stateDestr {
			return true, s.ix.remove(tag, other)
		}
		return false, nil
	}
	drop, keep := slot, false
	if state == stateDestr && otherState != stateDestr {
		drop, keep = other, true
	}
	t, id, _ := strings.Cut(mk, "\x00")
	s.log.Warn("keystore: a second record of a key was zeroed (written by another program?)", "file", s.path, "slot", drop, "tenant", t, "id", id)
	if err := s.ensureDirty(); err != nil {
		return false, err
	}
	if err := s.writeSlot(drop, make([]byte, recSize)); err != nil {
		return false, err
	}
	s.free = append(s.free, drop)
	if keep {
		return true, s.ix.remove(tag, other)
	}
	return false, nil
}

// ensureDirty clears keys.db's token (fsynced) before the first write of this process, so that
// after a crash the index file is not trusted (mu held).
func (s *Store) ensureDirty() error {
	if s.dirty {
		return nil
	}
	if s.token != [tokenSize]byte{} {
		var zero [tokenSize]byte
		if _, err := s.f.WriteAt(zero[:], offDBToken); err != nil {
			return fmt.Errorf("%w: keystore: write header: %w", keystore.ErrUnavailable, err)
		}
		if err := s.f.Sync(); err != nil {
			return fmt.Errorf("%w: keystore: sync: %w", keystore.ErrUnavailable, err)
		}
		s.token = zero
	}
	s.dirty = true
	return nil
}

// readRecord reads the record in slot.
func (s *Store) readRecord(slot int64) ([]byte, error) {
	rec := make([]byte, recSize)
	if _, err := s.f.ReadAt(rec, headerSize+slot*recSize); err != nil {
		return nil, fmt.Errorf("%w: keystore: read record: %w", keystore.ErrUnavailable, err)
	}
	return rec, nil
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
// reused between calls: a scan decodes one per record).
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

// holds says whether a record that passed decode is mk's, without allocating.
func holds(rec []byte, mk string) bool {
	tl, il := int(rec[offTLen]), int(binary.LittleEndian.Uint16(rec[offIDLen:]))
	return tl+1+il == len(mk) && string(rec[offTenant:offTenant+tl]) == mk[:tl] && mk[tl] == 0 && string(rec[offID:offID+il]) == mk[tl+1:]
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

// found is what a lookup found of a key.
type found struct {
	slot    int64
	state   byte   // stateLive or stateDestr; 0: no record
	key     []byte // live: the key (a copy)
	damaged bool   // slot's record fails its checksum (probably this key's, torn or rotten)
}

// lookup finds mk's record through the index (read or write lock held): it reads the record of
// every entry whose tag matches until one is mk's.
func (s *Store) lookup(mk string) (found, error) {
	var r found
	if s.f == nil {
		return r, nil
	}
	err := s.ix.find(s.ix.tag(mk), func(slot int64) (bool, error) {
		rec, err := s.readRecord(slot)
		if err != nil {
			return false, err
		}
		if isZero(rec) {
			return false, nil // zeroed by a DestroyTenant whose fsync failed
		}
		if _, ok := decode(rec, new([]byte)); !ok {
			r = found{slot: slot, damaged: true}
			return !s.readOnly, nil // read-only: as absent (perhaps being written)
		}
		if !holds(rec, mk) {
			return false, nil // another key's tag is the same
		}
		r = found{slot: slot, state: rec[offState]}
		if r.state == stateLive {
			r.key = append([]byte(nil), rec[offKey:offKey+keystore.KeySize]...)
		}
		clear(rec)
		return true, nil
	})
	if r.damaged && s.readOnly {
		r = found{}
	}
	return r, err
}

// lookupLocked is lookup with the write lock held: a damaged index is rebuilt from the records,
// a damaged record zeroed; both then read as absent.
func (s *Store) lookupLocked(mk string) (found, error) {
	r, err := s.lookup(mk)
	if errors.Is(err, errIndexDamaged) {
		s.log.Warn("keystore: the index file is damaged; reading every record instead", "file", s.path+indexSuffix, "error", err)
		if err := s.scan(); err != nil {
			return found{}, err
		}
		r, err = s.lookup(mk)
	}
	if err != nil {
		return found{}, err
	}
	if r.damaged {
		return found{}, s.repair(mk, r.slot)
	}
	return r, nil
}

// repair zeroes slot's record if its checksum still fails, drops it from the index and frees it
// (write lock held).
func (s *Store) repair(mk string, slot int64) error {
	rec, err := s.readRecord(slot)
	if err != nil {
		return err
	}
	if _, ok := decode(rec, new([]byte)); ok || isZero(rec) {
		return nil
	}
	if err := s.zeroDamaged(slot, rec); err != nil {
		return err
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("%w: keystore: sync: %w", keystore.ErrUnavailable, err)
	}
	s.cache.del(mk)
	return s.unindex(s.ix.tag(mk), slot)
}

// unindex removes an entry whose record was zeroed (write lock held); a damaged index is rebuilt
// from the records instead, which no longer hold it.
func (s *Store) unindex(tag uint64, slot int64) error {
	if err := s.ix.remove(tag, slot); errors.Is(err, errIndexDamaged) {
		return s.scan()
	} else if err != nil {
		return err
	}
	return nil
}

// index adds the entry of a record just written (write lock held); a damaged index is rebuilt
// from the records instead, which hold it.
func (s *Store) index(tag uint64, slot int64) error {
	if err := s.ix.insert(tag, slot); errors.Is(err, errIndexDamaged) {
		return s.scan()
	} else if err != nil {
		return err
	}
	return nil
}

// Key implements keystore.Store.
func (s *Store) Key(_ context.Context, t tenant.ID, id string) ([]byte, error) {
	if err := keystore.Validate(t, id); err != nil {
		return nil, err
	}
	mk := mapKey(t.String(), id)
	r, err := s.key(mk)
	if errors.Is(err, errIndexDamaged) || (err == nil && r.damaged) {
		// Rebuild or repair under the write lock, then read again.
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return nil, keystore.ErrClosed
		}
		if _, pending := s.pending[mk]; pending {
			s.mu.Unlock()
			return nil, keystore.ErrNotFound
		}
		r, err = s.lookupLocked(mk)
		s.mu.Unlock()
	}
	if err != nil {
		return nil, err
	}
	switch r.state {
	case stateLive:
		return r.key, nil
	case stateDestr:
		return nil, keystore.ErrDestroyed
	}
	return nil, keystore.ErrNotFound
}

// key is Key under the read lock: the cache, else the record.
func (s *Store) key(mk string) (found, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return found{}, keystore.ErrClosed
	}
	if _, pending := s.pending[mk]; pending {
		return found{}, nil
	}
	if r, ok := s.cache.get(mk); ok {
		return r, nil
	}
	r, err := s.lookup(mk)
	if err == nil && r.state != 0 {
		s.cache.put(mk, r)
	}
	return r, err
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
	if e, ok := s.pending[mk]; ok {
		s.mu.Unlock()
		return nil, e.ready, nil
	}
	r, err := s.lookupLocked(mk)
	if err != nil || r.state != 0 { // created (or destroyed) while we waited for the lock
		s.mu.Unlock()
		switch {
		case err != nil:
			return nil, nil, err
		case r.state == stateLive:
			return r.key, nil, nil
		}
		return nil, nil, keystore.ErrDestroyed
	}
	key := make([]byte, keystore.KeySize)
	if _, err := io.ReadFull(s.rand, key); err != nil {
		s.mu.Unlock()
		return nil, nil, fmt.Errorf("keystore: random key: %w", err)
	}
	e := &entry{tag: s.ix.tag(mk), key: key, ready: make(chan struct{})}
	if err := s.writeNew(e, encode(stateLive, t.String(), id, key)); err != nil {
		s.mu.Unlock()
		return nil, nil, err
	}
	s.pending[mk] = e
	s.written++
	gen := s.written
	s.mu.Unlock()

	err = s.syncThrough(gen)
	s.mu.Lock()
	defer s.mu.Unlock()
	defer close(e.ready)
	delete(s.pending, mk)
	if s.closed { // closed meanwhile: its keys are zeroed
		clear(e.key)
		return nil, nil, keystore.ErrClosed
	}
	if err != nil {
		// The record may or may not be on disk: zero it so the slot is reused cleanly.
		_ = s.writeSlot(e.slot, make([]byte, recSize))
		clear(e.key)
		s.free = append(s.free, e.slot)
		if uerr := s.unindex(e.tag, e.slot); uerr != nil {
			s.log.Warn("keystore: drop the entry of a failed create", "error", uerr)
		}
		return nil, nil, fmt.Errorf("%w: keystore: sync: %w", keystore.ErrUnavailable, err)
	}
	return append([]byte(nil), key...), nil, nil
}

// writeNew writes a new record into a free slot (or a new one at the end of the file) and
// indexes it (write lock held); on failure the slot is free again.
func (s *Store) writeNew(e *entry, rec []byte) error {
	if err := s.ensureDirty(); err != nil {
		return err
	}
	slot, err := s.takeSlot()
	if err != nil {
		return err
	}
	if err := s.writeSlot(slot, rec); err != nil {
		s.free = append(s.free, slot)
		return err
	}
	e.slot = slot
	return s.index(e.tag, slot)
}

// takeSlot is a free record's slot, or a new one at the end of the file (write lock held).
func (s *Store) takeSlot() (int64, error) {
	if !s.freeRead {
		free, err := s.ix.readFree()
		if errors.Is(err, errIndexDamaged) {
			s.log.Warn("keystore: the index file is damaged; reading every record instead", "file", s.path+indexSuffix, "error", err)
			err = s.scan() // sets free
		} else if err == nil {
			s.free, s.freeRead = append(free, s.free...), true
		}
		if err != nil {
			return 0, err
		}
	}
	if n := len(s.free); n > 0 {
		slot := s.free[n-1]
		s.free = s.free[:n-1]
		return slot, nil
	}
	s.slots++
	return s.slots - 1, nil
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
		e, ok := s.pending[mk]
		if !ok {
			break
		}
		s.mu.Unlock() // a Create under way: destroy what it made
		<-e.ready
		s.mu.Lock()
	}
	defer s.mu.Unlock()
	if s.closed {
		return keystore.ErrClosed
	}
	if s.readOnly {
		return errReadOnly
	}
	r, err := s.lookupLocked(mk)
	if err != nil || r.state == stateDestr {
		return err
	}
	clear(r.key)
	s.cache.del(mk)
	rec := encode(stateDestr, t.String(), id, nil)
	if r.state == stateLive {
		if err := s.ensureDirty(); err != nil {
			return err
		}
		if err := s.writeSlot(r.slot, rec); err != nil {
			return err
		}
	} else if err := s.writeNew(&entry{tag: s.ix.tag(mk)}, rec); err != nil {
		// Never created: still leave a tombstone, so a Create racing the deletion cannot give
		// the id a key afterwards.
		return err
	}
	// On a failed fsync the tombstone stays where it was written (the page cache): Key reads
	// the key as destroyed, as a crash may leave it; the caller retries.
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("%w: keystore: sync: %w", keystore.ErrUnavailable, err)
	}
	return nil
}

// DestroyTenant implements keystore.Store: every record of t is zeroed whole (no tombstones: the
// tenant is gone, its ids with it) and the slots are freed for reuse; one fsync for all. It reads
// every record (the index is by tenant and id together).
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
	s.cache.delPrefix(prefix)
	type gone struct {
		tag  uint64
		slot int64
	}
	var all []gone
	zero := make([]byte, recSize)
	var scratch []byte
	readFailed := func(err error) error { return fmt.Errorf("%w: keystore: read: %w", keystore.ErrUnavailable, err) }
	err := s.eachRecord(readFailed, func(slot int64, rec []byte) error {
		if rec[offTLen] == 0 {
			return nil
		}
		if mk, ok := decode(rec, &scratch); ok && strings.HasPrefix(mk, prefix) {
			if err := s.ensureDirty(); err != nil {
				return err
			}
			if err := s.writeSlot(slot, zero); err != nil {
				return err
			}
			all = append(all, gone{s.ix.tag(mk), slot})
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(all) == 0 {
		return nil
	}
	if err := s.f.Sync(); err != nil {
		// Unavailable, as for Create and Destroy: the caller answers 503 and retries.
		return fmt.Errorf("%w: keystore: sync: %w", keystore.ErrUnavailable, err)
	}
	for _, g := range all {
		s.free = append(s.free, g.slot)
		if err := s.unindex(g.tag, g.slot); err != nil {
			return err
		}
	}
	return nil
}

// pendingOf is the ready channel of a Create under way for a key of the tenant prefix (nil: none);
// mu is held.
func (s *Store) pendingOf(prefix string) chan struct{} {
	for mk, e := range s.pending {
		if strings.HasPrefix(mk, prefix) {
			return e.ready
		}
	}
	return nil
}

// Close writes the index (when keys.db changed or was scanned since open) and releases the file;
// the keys held in memory are zeroed. An index that cannot be written is only logged: the next
// open reads every record instead.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.cache.clear()
	if s.f == nil {
		return nil
	}
	if !s.readOnly && (s.dirty || s.scanned) && s.slots > 0 {
		if err := s.saveIndex(); err != nil {
			s.log.Warn("keystore: the index was not written; the next start reads every record", "file", s.path+indexSuffix, "error", err)
		}
	}
	s.closeIndex()
	return s.f.Close()
}

func (s *Store) closeIndex() {
	if s.ix != nil {
		s.ix.close()
	}
}

// saveIndex stamps keys.db with a new token (fsynced), then writes the index with the token and
// keys.db's size and modification time (index.go): a crash between the two leaves tokens that
// differ, so the next open scans.
func (s *Store) saveIndex() error {
	if !s.freeRead {
		free, err := s.ix.readFree()
		if err != nil {
			return err
		}
		s.free, s.freeRead = append(free, s.free...), true
	}
	var db dbStamp
	if _, err := io.ReadFull(rand.Reader, db.token[:]); err != nil {
		return err
	}
	if _, err := s.f.WriteAt(db.token[:], offDBToken); err != nil {
		return err
	}
	if err := s.f.Sync(); err != nil {
		return err
	}
	st, err := s.f.Stat()
	if err != nil {
		return err
	}
	db.size, db.mtime = st.Size(), st.ModTime().UnixNano()
	return s.ix.write(s.path+indexSuffix, db, s.free)
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
