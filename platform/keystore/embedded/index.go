package embedded

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/bits"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/crispy-enigma/crispy/platform/atomicfile"
)

// The index says in which record each key is, so that an open reads no record: the store used to
// read and decode every record into a map at open (10-12 ms and a map entry per key with 30,000
// keys, one per session of a 1M-event history), which grew each restart with history.
//
// It is an open-addressing hash table (linear probing) of 16-byte entries: a tag, 64 bits of
// SHA-256(salt, tenant, id) (never 0: 0 marks an empty entry), and the record's slot. It holds no
// key bytes, tenant or id (the salt is random per index file), so it can be rewritten and
// replaced freely: erasure happens in keys.db alone. A lookup hashes the tenant and id, walks the
// table from the tag's home and reads the record of each entry whose tag matches (the record is
// the truth: its tenant and id are compared, its checksum checked).
//
// The file (keys.db.idx beside keys.db) is written whole by Close, to a temporary file, fsynced
// and renamed, and is used by the next open only if it describes keys.db as it is now: the
// random token it carries is the one in keys.db's header, and keys.db has the size and
// modification time it recorded. The first write of a process clears the token in keys.db's
// header (fsynced, before any record is written): after a crash the index no longer matches, and
// the open reads every record instead (scan), as it always did, repairing torn records. So only
// a clean shutdown followed by an open that writes nothing before it is used takes the fast path,
// which is every ordinary restart.
//
// Layout: a 4 KiB header, then the table's pages (256 entries of tag and slot, little endian),
// the CRC-32C of each page, and the free slots (8 bytes each). The header holds:
//
//	[0:16]    magic, [16:20] version
//	[20:36]   token (as in keys.db's header [24:40] when the index was written)
//	[36:44]   keys.db's size, [44:52] its modification time (Unix ns)
//	[52:84]   salt
//	[84:92]   entries (a power of two, at least a page), [92:100] entries used, [100:108] free slots
//	[108:112] CRC-32C of the page checksums, [112:116] of the free slots, [116:120] of [0:116]
//
// Pages are read when a lookup first reaches them and checked against their checksum; the free
// slots when a slot is first needed. A damaged index is never trusted: the store scans keys.db.

// indexSuffix is the index file's name after keys.db's.
const indexSuffix = ".idx"

const (
	idxMagic       = "crispy-keyindex\x00"
	idxVersion     = 1
	idxHeaderSize  = 4096
	pageEntries    = 256 // 16-byte entries per 4 KiB page
	pageBytes      = pageEntries * 16
	minEntries     = pageEntries
	offDBToken     = 24 // in keys.db's header: the token of the index written with it
	tokenSize      = 16
	maxIndexBytes  = 1 << 40
	idxHeaderBytes = 120
)

var errIndexDamaged = errors.New("keystore: index damaged")

// keyIndex is the table in memory: pages of the file are copied in as lookups reach them.
type keyIndex struct {
	salt  [32]byte
	n     uint64   // entries, a power of two
	used  uint64   // entries holding a record
	tab   []uint64 // 2 per entry: tag (0: empty), slot
	crcs  []uint32 // per page, as written (pages not yet loaded are checked against it)
	pages []atomic.Bool

	loadMu sync.Mutex
	file   *os.File // where the pages not yet loaded are (nil once all are, or for a new table)

	// The free slots as the file lists them, read by takeFree on first need.
	freeCount uint64
	freeCRC   uint32
	freeOff   int64
}

// newIndex is an empty table sized for about want records.
func newIndex(want int64) (*keyIndex, error) {
	n := uint64(minEntries)
	for n*3/4 < uint64(max(want, 0)) {
		n *= 2
	}
	x := &keyIndex{n: n, tab: make([]uint64, 2*n), pages: make([]atomic.Bool, n/pageEntries)}
	for i := range x.pages {
		x.pages[i].Store(true)
	}
	if _, err := io.ReadFull(rand.Reader, x.salt[:]); err != nil {
		return nil, fmt.Errorf("keystore: index salt: %w", err)
	}
	return x, nil
}

// tag is the entry tag of mk (tenant, NUL, id).
func (x *keyIndex) tag(mk string) uint64 {
	h := sha256.New()
	h.Write(x.salt[:])
	h.Write([]byte(mk))
	var sum [sha256.Size]byte
	tag := binary.LittleEndian.Uint64(h.Sum(sum[:0]))
	if tag == 0 {
		tag = 1
	}
	return tag
}

// ensure makes entry i's page present in tab. Safe beside other lookups (the store's read lock);
// the writers hold the store's write lock.
func (x *keyIndex) ensure(i uint64) error {
	p := i / pageEntries
	if x.pages[p].Load() {
		return nil
	}
	x.loadMu.Lock()
	defer x.loadMu.Unlock()
	if x.pages[p].Load() {
		return nil
	}
	var b [pageBytes]byte
	if _, err := x.file.ReadAt(b[:], idxHeaderSize+int64(p)*pageBytes); err != nil {
		return fmt.Errorf("%w: page %d: %w", errIndexDamaged, p, err)
	}
	if crc32.Checksum(b[:], crcTable) != x.crcs[p] {
		return fmt.Errorf("%w: page %d: checksum mismatch", errIndexDamaged, p)
	}
	base := 2 * p * pageEntries
	for k := range 2 * pageEntries {
		x.tab[base+uint64(k)] = binary.LittleEndian.Uint64(b[8*k:])
	}
	x.pages[p].Store(true)
	return nil
}

// ensureAll loads every page (before the table is rewritten or grown).
func (x *keyIndex) ensureAll() error {
	for p := range uint64(len(x.pages)) {
		if err := x.ensure(p * pageEntries); err != nil {
			return err
		}
	}
	return nil
}

// find calls match with the slot of every entry tagged tag, in probe order, until it says stop.
func (x *keyIndex) find(tag uint64, match func(slot int64) (stop bool, err error)) error {
	mask := x.n - 1
	for i, k := tag&mask, uint64(0); k < x.n; i, k = (i+1)&mask, k+1 {
		if err := x.ensure(i); err != nil {
			return err
		}
		switch x.tab[2*i] {
		case 0:
			return nil
		case tag:
			if stop, err := match(int64(x.tab[2*i+1])); stop || err != nil {
				return err
			}
		}
	}
	return nil
}

// insert adds slot under tag, growing the table past three quarters full (write lock held).
func (x *keyIndex) insert(tag uint64, slot int64) error {
	if (x.used+1)*4 > x.n*3 {
		if err := x.grow(); err != nil {
			return err
		}
	}
	mask := x.n - 1
	for i := tag & mask; ; i = (i + 1) & mask {
		if err := x.ensure(i); err != nil {
			return err
		}
		if x.tab[2*i] == 0 {
			x.tab[2*i], x.tab[2*i+1] = tag, uint64(slot)
			x.used++
			return nil
		}
	}
}

// remove deletes the entry of slot under tag, shifting back the entries after it that probed past
// it, so a lookup still stops at the first empty entry (write lock held).
func (x *keyIndex) remove(tag uint64, slot int64) error {
	mask := x.n - 1
	i := tag & mask
	for ; ; i = (i + 1) & mask {
		if err := x.ensure(i); err != nil {
			return err
		}
		if x.tab[2*i] == 0 {
			return nil // not there
		}
		if x.tab[2*i] == tag && x.tab[2*i+1] == uint64(slot) {
			break
		}
	}
	for j := (i + 1) & mask; ; j = (j + 1) & mask {
		if err := x.ensure(j); err != nil {
			return err
		}
		tg := x.tab[2*j]
		if tg == 0 {
			break
		}
		// The entry at j stays if its home lies cyclically in (i, j].
		if home := tg & mask; (i < j && i < home && home <= j) || (i > j && (i < home || home <= j)) {
			continue
		}
		x.tab[2*i], x.tab[2*i+1] = tg, x.tab[2*j+1]
		i = j
	}
	x.tab[2*i], x.tab[2*i+1] = 0, 0
	x.used--
	return nil
}

// grow doubles the table (write lock held). The tags stay: the salt does not change.
func (x *keyIndex) grow() error {
	if err := x.ensureAll(); err != nil {
		return err
	}
	old := x.tab
	x.n *= 2
	x.tab = make([]uint64, 2*x.n)
	x.pages = make([]atomic.Bool, x.n/pageEntries)
	for i := range x.pages {
		x.pages[i].Store(true)
	}
	x.crcs = nil
	mask := x.n - 1
	for k := 0; k < len(old); k += 2 {
		if tag := old[k]; tag != 0 {
			i := tag & mask
			for x.tab[2*i] != 0 {
				i = (i + 1) & mask
			}
			x.tab[2*i], x.tab[2*i+1] = tag, old[k+1]
		}
	}
	return nil
}

// close lets the file of pages not yet loaded go.
func (x *keyIndex) close() {
	x.loadMu.Lock()
	defer x.loadMu.Unlock()
	if x.file != nil {
		_ = x.file.Close()
		x.file = nil
	}
}

// readFree reads the free slots the file lists.
func (x *keyIndex) readFree() ([]int64, error) {
	if x.freeCount == 0 {
		return nil, nil
	}
	x.loadMu.Lock()
	defer x.loadMu.Unlock()
	b := make([]byte, 8*x.freeCount)
	if x.file == nil {
		return nil, fmt.Errorf("%w: free slots: file closed", errIndexDamaged)
	}
	if _, err := x.file.ReadAt(b, x.freeOff); err != nil {
		return nil, fmt.Errorf("%w: free slots: %w", errIndexDamaged, err)
	}
	if crc32.Checksum(b, crcTable) != x.freeCRC {
		return nil, fmt.Errorf("%w: free slots: checksum mismatch", errIndexDamaged)
	}
	free := make([]int64, x.freeCount)
	for i := range free {
		free[i] = int64(binary.LittleEndian.Uint64(b[8*i:]))
	}
	return free, nil
}

// dbStamp is what the index records of keys.db to know it still describes it.
type dbStamp struct {
	token [tokenSize]byte
	size  int64
	mtime int64
}

// openIndex opens the index file at path if it describes keys.db as stamped (nil, nil otherwise:
// missing, stale or damaged, the store scans keys.db). It reads the header and the page
// checksums, not the pages.
func openIndex(path string, db dbStamp, slots int64) (*keyIndex, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("keystore: open %s: %w", path, err)
	}
	x, ok := readIndexHeader(f, db, slots)
	if !ok {
		_ = f.Close()
		return nil, nil
	}
	x.file = f
	return x, nil
}

func readIndexHeader(f *os.File, db dbStamp, slots int64) (*keyIndex, bool) {
	var h [idxHeaderBytes]byte
	if _, err := f.ReadAt(h[:], 0); err != nil {
		return nil, false
	}
	if string(h[:16]) != idxMagic || binary.LittleEndian.Uint32(h[16:]) != idxVersion ||
		crc32.Checksum(h[:116], crcTable) != binary.LittleEndian.Uint32(h[116:]) {
		return nil, false
	}
	var zero [tokenSize]byte
	if db.token == zero || string(h[20:36]) != string(db.token[:]) ||
		int64(binary.LittleEndian.Uint64(h[36:])) != db.size || int64(binary.LittleEndian.Uint64(h[44:])) != db.mtime {
		return nil, false
	}
	x := &keyIndex{n: binary.LittleEndian.Uint64(h[84:]), used: binary.LittleEndian.Uint64(h[92:]),
		freeCount: binary.LittleEndian.Uint64(h[100:]), freeCRC: binary.LittleEndian.Uint32(h[112:])}
	copy(x.salt[:], h[52:84])
	if x.n < minEntries || bits.OnesCount64(x.n) != 1 || x.n > maxIndexBytes/16 || x.used > x.n || x.freeCount > uint64(slots) {
		return nil, false
	}
	pages := x.n / pageEntries
	if st, err := f.Stat(); err != nil || st.Size() != idxHeaderSize+int64(x.n)*16+int64(pages)*4+int64(x.freeCount)*8 {
		return nil, false
	}
	b := make([]byte, 4*pages)
	if _, err := f.ReadAt(b, idxHeaderSize+int64(x.n)*16); err != nil || crc32.Checksum(b, crcTable) != binary.LittleEndian.Uint32(h[108:]) {
		return nil, false
	}
	x.freeOff = idxHeaderSize + int64(x.n)*16 + int64(pages)*4
	x.crcs = make([]uint32, pages)
	for i := range x.crcs {
		x.crcs[i] = binary.LittleEndian.Uint32(b[4*i:])
	}
	// Go hands a large allocation fresh zero pages: nothing is touched (or resident) until a page
	// of the file is copied in.
	x.tab = make([]uint64, 2*x.n)
	x.pages = make([]atomic.Bool, pages)
	return x, true
}

// write writes the whole table and the free slots to path (temporary file, fsync, rename, fsync
// of the folder), stamped with db.
func (x *keyIndex) write(path string, db dbStamp, free []int64) error {
	if err := x.ensureAll(); err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("keystore: write index: %w", err)
	}
	err = x.writeTo(f, db, free)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = atomicfile.SyncDir(filepath.Dir(path))
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("keystore: write index: %w", err)
	}
	return nil
}

func (x *keyIndex) writeTo(f *os.File, db dbStamp, free []int64) error {
	pages := x.n / pageEntries
	crcs := make([]byte, 0, 4*pages)
	var page [pageBytes]byte
	for p := range pages {
		for k := range 2 * pageEntries {
			binary.LittleEndian.PutUint64(page[8*k:], x.tab[2*p*pageEntries+uint64(k)])
		}
		crcs = binary.LittleEndian.AppendUint32(crcs, crc32.Checksum(page[:], crcTable))
	}
	fb := make([]byte, 0, 8*len(free))
	for _, s := range free {
		fb = binary.LittleEndian.AppendUint64(fb, uint64(s))
	}
	var h [idxHeaderSize]byte
	copy(h[:], idxMagic)
	binary.LittleEndian.PutUint32(h[16:], idxVersion)
	copy(h[20:36], db.token[:])
	binary.LittleEndian.PutUint64(h[36:], uint64(db.size))
	binary.LittleEndian.PutUint64(h[44:], uint64(db.mtime))
	copy(h[52:84], x.salt[:])
	binary.LittleEndian.PutUint64(h[84:], x.n)
	binary.LittleEndian.PutUint64(h[92:], x.used)
	binary.LittleEndian.PutUint64(h[100:], uint64(len(free)))
	binary.LittleEndian.PutUint32(h[108:], crc32.Checksum(crcs, crcTable))
	binary.LittleEndian.PutUint32(h[112:], crc32.Checksum(fb, crcTable))
	binary.LittleEndian.PutUint32(h[116:], crc32.Checksum(h[:116], crcTable))
	w := bufio.NewWriterSize(f, 1<<20)
	w.Write(h[:])
	for p := range pages {
		for k := range 2 * pageEntries {
			binary.LittleEndian.PutUint64(page[8*k:], x.tab[2*p*pageEntries+uint64(k)])
		}
		w.Write(page[:])
	}
	w.Write(crcs)
	w.Write(fb)
	return w.Flush()
}
