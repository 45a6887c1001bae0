package embedded

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/crispy-enigma/crispy/platform/tenant"

	"github.com/crispy-enigma/crispy/platform/atomicfile"
)

// The on-disk index of the log (formats in indexfmt.go).
//
// The log stays the only truth; the index only says where things are in it, and every read checks
// what it finds against what the index claimed (the record's checksum, the event's position,
// revision, stream and tenant), so a wrong index can cost an error but never serve a wrong event.
//
// How it stays consistent with the log without an fsync of its own per append:
//   - The writer adds an appended batch's position and tenant records with plain writes after the
//     log's fsync and before the batch is acknowledged, so readers find every acknowledged event.
//     Records past the acknowledged position (a batch refused after its index write) are never
//     read and are overwritten by the next batch.
//   - Stream slots change only at a checkpoint. Until then the streams appended to are held, dirty,
//     in the stream cache, which lookups consult first.
//   - A checkpoint (every second, and when enough has piled up) fsyncs the position and tenant
//     files, writes its record (what is covered, and the slots it will write) to the older of the
//     two checkpoint files and fsyncs it: that is its commit point. Then it writes the slots.
//   - Open takes the newer valid checkpoint, checks that the log still holds the record it names
//     (same offset, same checksum), writes its slots again (a crash may have cut their writing
//     short), cuts the position and tenant files back to what it covers, and indexes the log from
//     the offset it covers: only the tail written since. A missing or damaged index, or one that
//     does not match the log, is rebuilt from the log, and the log line says why.
const indexDirName = "index"

// checkpointEvery is how many events the index may lag the log before a checkpoint runs without
// waiting for its tick; it bounds the dirty stream entries held in memory.
const checkpointEvery = 1 << 16

// index is the store's on-disk index. Its files are written by the store's writer (position and
// tenant records) and by the checkpoint (slots, checkpoint files); see the comment above.
type index struct {
	dir string
	pos *os.File

	tmu    sync.RWMutex
	tables []*table

	ckMu    sync.Mutex // one checkpoint at a time
	ck      checkpoint // the last checkpoint written or read (without its slots)
	lock    *os.File   // checkpoint.lock: held exclusively while a checkpoint writes, shared while a reader copies
	damaged atomic.Pointer[string]
	covered atomic.Uint64 // ck.pos, for the writer's "checkpoint soon?" without ckMu
}

// table is one of the stream hash tables.
type table struct {
	f   *os.File
	n   uint32
	cap uint64
}

// tenantFile is a tenant's list of positions. n is how many records are published: readers read
// no further, and the writer appends at n.
type tenantFile struct {
	id string
	f  *os.File
	n  uint64
}

// ErrIndexDamaged is returned by reads that find the index inconsistent with the log. The log is
// intact; the index is rebuilt from it at the next open.
var ErrIndexDamaged = errors.New("event store index damaged")

func (ix *index) tablePath(n uint32) string {
	return filepath.Join(ix.dir, "streams."+strconv.Itoa(int(n)))
}

func ckptPath(dir string, i int) string { return filepath.Join(dir, "checkpoint."+strconv.Itoa(i)) }

func tenantPath(dir, id string) string { return filepath.Join(dir, "t-"+id) }

// readCheckpoint returns the newer valid checkpoint in dir, or nil.
func readCheckpoint(dir string) (*checkpoint, error) {
	var best *checkpoint
	for i := 0; i < 2; i++ {
		b, err := os.ReadFile(ckptPath(dir, i))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if c, err := decodeCheckpoint(b); err == nil && (best == nil || c.seq > best.seq) {
			best = c
		}
	}
	return best, nil
}

// loadedIndex is what openIndex hands back: the index, where it covers the log to, and the
// tenants' files.
type loadedIndex struct {
	ix      *index
	ck      checkpoint
	tenants map[string]*tenantFile
	rebuild string // why the index is rebuilt from the log ("" when it is used)
}

// openIndex opens the index in dir for the log f (whose valid prefix is at least logSize bytes
// long), creating or resetting it when it is missing, damaged or does not match the log. The
// caller indexes the log from ck.off on.
func openIndex(dir string, f logFile, logSize int64) (*loadedIndex, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("create event store index %s: %w", dir, err)
	}
	c, err := readCheckpoint(dir)
	if err != nil {
		return nil, fmt.Errorf("read event store index %s: %w", dir, err)
	}
	reason := ""
	switch {
	case c == nil:
		reason = "no index"
		if _, err := os.Stat(ckptPath(dir, 0)); err == nil {
			reason = "its checkpoint is damaged"
		}
	default:
		if why := checkCovered(f, c, logSize); why != "" {
			reason = why
		} else if l, err := loadIndexFiles(dir, c); err == nil {
			return l, nil
		} else {
			reason = err.Error()
		}
	}
	l, err := resetIndex(dir)
	if err != nil {
		return nil, err
	}
	l.rebuild = reason
	return l, nil
}

// checkCovered says why the log does not hold what c covers ("" when it does): the same last
// record, at the same offset, with the same checksum.
func checkCovered(f logFile, c *checkpoint, logSize int64) string {
	if c.off > logSize {
		return fmt.Sprintf("it covers %d bytes of a %d-byte log", c.off, logSize)
	}
	if c.lastRec < 0 {
		return ""
	}
	var hdr [headerSize]byte
	if _, err := f.ReadAt(hdr[:], c.lastRec); err != nil {
		return fmt.Sprintf("the log record it ends with at %d cannot be read: %v", c.lastRec, err)
	}
	n := int64(binary.LittleEndian.Uint32(hdr[0:4]))
	if c.lastRec+headerSize+n != c.off || binary.LittleEndian.Uint32(hdr[4:8]) != c.lastRecCRC {
		return fmt.Sprintf("the log does not hold the record it ends with at %d (another log, or one restored from a backup)", c.lastRec)
	}
	payload := make([]byte, n)
	if _, err := f.ReadAt(payload, c.lastRec+headerSize); err != nil {
		return fmt.Sprintf("the log record it ends with at %d cannot be read: %v", c.lastRec, err)
	}
	if crc32.Update(crc32.Update(0, crcTable, hdr[8:9]), crcTable, payload) != c.lastRecCRC {
		return fmt.Sprintf("the log record it ends with at %d is damaged", c.lastRec)
	}
	return ""
}

// loadIndexFiles opens the index files c describes, redoes c's slot writes, and cuts the position
// and tenant files back to c. An error means the files are not usable (the caller rebuilds).
func loadIndexFiles(dir string, c *checkpoint) (l *loadedIndex, err error) {
	ix := &index{dir: dir, ck: *c}
	ix.ck.slots = nil
	ix.covered.Store(c.pos)
	tenants := map[string]*tenantFile{}
	defer func() {
		if err != nil {
			ix.close()
			for _, t := range tenants {
				t.f.Close()
			}
		}
	}()
	if ix.lock, err = os.OpenFile(filepath.Join(dir, "checkpoint.lock"), os.O_RDWR|os.O_CREATE, 0o640); err != nil {
		return nil, err
	}
	if ix.pos, err = os.OpenFile(filepath.Join(dir, "positions"), os.O_RDWR, 0); err != nil {
		return nil, fmt.Errorf("its positions file: %w", err)
	}
	var hdr [posHeaderSize]byte
	if _, err := ix.pos.ReadAt(hdr[:], 0); err != nil || !checkHeader(hdr[:], posMagic, 0) {
		return nil, errors.New("its positions file has no valid header")
	}
	want := int64(posHeaderSize) + int64(c.pos)*posRecSize
	if fi, err := ix.pos.Stat(); err != nil || fi.Size() < want {
		return nil, fmt.Errorf("its positions file ends before position %d", c.pos)
	}
	if c.pos > 0 {
		b := make([]byte, posRecSize)
		if _, err := ix.pos.ReadAt(b, want-posRecSize); err != nil {
			return nil, err
		}
		if _, err := decodePosRec(b, c.pos); err != nil {
			return nil, fmt.Errorf("its record of position %d is damaged", c.pos)
		}
	}
	if err := ix.pos.Truncate(want); err != nil {
		return nil, err
	}
	for n := uint32(0); n < c.tables; n++ {
		t, err := openTable(ix.tablePath(n), n, false)
		if err != nil {
			return nil, err
		}
		ix.tables = append(ix.tables, t)
	}
	// Tables past the checkpoint's were added by a checkpoint that did not commit.
	for n := c.tables; n < maxTables; n++ {
		if err := os.Remove(ix.tablePath(n)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
	}
	if err := ix.writeSlots(c.slots); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		id, ok := strings.CutPrefix(e.Name(), "t-")
		if !ok {
			continue
		}
		if _, err := tenant.Parse(id); err != nil {
			return nil, fmt.Errorf("it holds a tenant file %s of no tenant", e.Name())
		}
		t, err := openTenantFile(dir, id, c.pos)
		if err != nil {
			return nil, err
		}
		tenants[id] = t
	}
	counts := make(map[string]uint64, len(tenants))
	for id, t := range tenants {
		if t.n > 0 {
			counts[id] = t.n
		}
	}
	if tenantsSum(counts) != c.tenantSum {
		return nil, errors.New("its tenant files do not hold what its checkpoint covers")
	}
	return &loadedIndex{ix: ix, ck: ix.ck, tenants: tenants}, nil
}

// openTenantFile opens a tenant's file and cuts it after its last position up to covered.
func openTenantFile(dir, id string, covered uint64) (*tenantFile, error) {
	f, err := os.OpenFile(tenantPath(dir, id), os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	t := &tenantFile{id: id, f: f}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	total := uint64(fi.Size()) / tenantRecSize
	// Records past covered were written after the checkpoint: binary search for the last one
	// within it (positions ascend). A damaged record on the way means a damaged file.
	var b [tenantRecSize]byte
	at := func(i uint64) (uint64, error) {
		if _, err := f.ReadAt(b[:], int64(i)*tenantRecSize); err != nil {
			return 0, err
		}
		return decodeTenantRec(b[:], id)
	}
	lo, hi := uint64(0), total
	for lo < hi {
		m := (lo + hi) / 2
		p, err := at(m)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("its file of tenant %s is damaged at record %d", id, m)
		}
		if p <= covered {
			lo = m + 1
		} else {
			hi = m
		}
	}
	t.n = lo
	if err := f.Truncate(int64(t.n) * tenantRecSize); err != nil {
		f.Close()
		return nil, err
	}
	return t, nil
}

func openTable(path string, n uint32, create bool) (*table, error) {
	flag := os.O_RDWR
	if create {
		flag |= os.O_CREATE | os.O_EXCL
	}
	f, err := os.OpenFile(path, flag, 0o640)
	if err != nil {
		return nil, fmt.Errorf("its stream table %d: %w", n, err)
	}
	t := &table{f: f, n: n, cap: tableCap(n)}
	size := int64(tableHeaderSize) + int64(t.cap)*slotSize
	if create {
		var hdr [tableHeaderSize]byte
		putHeader(hdr[:], tableMagic, n)
		_, err := f.WriteAt(hdr[:], 0)
		// Every slot written out empty (see indexfmt.go).
		buf := make([]byte, min(int64(t.cap)*slotSize, 1<<20))
		for i := 0; i < len(buf); i += slotSize {
			putSlot(buf[i:], slot{})
		}
		for off := int64(tableHeaderSize); err == nil && off < size; off += int64(len(buf)) {
			_, err = f.WriteAt(buf[:min(int64(len(buf)), size-off)], off)
		}
		if err == nil {
			err = f.Sync()
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("create stream table %s: %w", path, err)
		}
		return t, nil
	}
	var hdr [tableHeaderSize]byte
	fi, err := f.Stat()
	if err == nil {
		_, err = f.ReadAt(hdr[:], 0)
	}
	if err != nil || !checkHeader(hdr[:], tableMagic, n) || fi.Size() != size {
		f.Close()
		return nil, fmt.Errorf("its stream table %d is damaged", n)
	}
	return t, nil
}

// resetIndex empties dir and creates an index that covers nothing.
func resetIndex(dir string) (*loadedIndex, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("reset event store index %s: %w", dir, err)
	}
	for _, e := range ents {
		if e.Name() == "checkpoint.lock" {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return nil, fmt.Errorf("reset event store index %s: %w", dir, err)
		}
	}
	ix := &index{dir: dir}
	fail := func(err error) (*loadedIndex, error) {
		ix.close()
		return nil, fmt.Errorf("create event store index %s: %w", dir, err)
	}
	if ix.lock, err = os.OpenFile(filepath.Join(dir, "checkpoint.lock"), os.O_RDWR|os.O_CREATE, 0o640); err != nil {
		return fail(err)
	}
	if ix.pos, err = os.OpenFile(filepath.Join(dir, "positions"), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o640); err != nil {
		return fail(err)
	}
	var hdr [posHeaderSize]byte
	putHeader(hdr[:], posMagic, 0)
	if _, err := ix.pos.WriteAt(hdr[:], 0); err != nil {
		return fail(err)
	}
	t, err := openTable(ix.tablePath(0), 0, true)
	if err != nil {
		return fail(err)
	}
	ix.tables = []*table{t}
	ix.ck = checkpoint{lastRec: -1, tables: 1}
	// The empty checkpoint, so that a crash during the first indexing is resumed, not rebuilt.
	if err := ix.writeCheckpoint(&checkpoint{seq: 1, lastRec: -1, tables: 1}); err != nil {
		return fail(err)
	}
	ix.ck.seq = 1
	return &loadedIndex{ix: ix, ck: ix.ck, tenants: map[string]*tenantFile{}}, nil
}

// writeCheckpoint writes c over the older checkpoint file and fsyncs it (and the folder, which may
// have gained files since the last checkpoint).
func (ix *index) writeCheckpoint(c *checkpoint) error {
	p := ckptPath(ix.dir, int(c.seq%2))
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE, 0o640)
	if err != nil {
		return err
	}
	b := encodeCheckpoint(c)
	_, err = f.WriteAt(b, 0)
	if err == nil {
		err = f.Truncate(int64(len(b)))
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = atomicfile.SyncDir(ix.dir)
	}
	if err != nil {
		return fmt.Errorf("write index checkpoint %s: %w", p, err)
	}
	return nil
}

// writeSlots writes slots into their tables and fsyncs the tables written.
func (ix *index) writeSlots(slots []ckptSlot) error {
	var b [slotSize]byte
	touched := map[uint32]bool{}
	for _, s := range slots {
		t := ix.tables[s.table]
		putSlot(b[:], s.s)
		if _, err := t.f.WriteAt(b[:], tableHeaderSize+int64(s.idx)*slotSize); err != nil {
			return fmt.Errorf("write stream slot: %w", err)
		}
		touched[s.table] = true
	}
	for n := range touched {
		if err := ix.tables[n].f.Sync(); err != nil {
			return fmt.Errorf("fsync stream table %d: %w", n, err)
		}
	}
	return nil
}

// probe looks h up in t: the index of its slot (found), or of the first empty slot of its probe
// sequence; full when neither exists.
func (t *table) probe(h uint64, taken map[uint64]bool) (idx uint64, s slot, found, full bool, err error) {
	mask := t.cap - 1
	i := h & mask
	buf := make([]byte, 128*slotSize)
	for scanned := uint64(0); scanned < t.cap; {
		k := min(128, t.cap-i, t.cap-scanned)
		b := buf[:k*slotSize]
		for try := 0; ; try++ {
			if _, err := t.f.ReadAt(b, tableHeaderSize+int64(i)*slotSize); err != nil {
				return 0, slot{}, false, false, fmt.Errorf("read stream table %d: %w", t.n, err)
			}
			// A slot being written by a checkpoint can read torn: read the block again.
			bad := false
			for j := uint64(0); j < k; j++ {
				if _, _, err := decodeSlot(b[j*slotSize:]); err != nil {
					bad = true
					break
				}
			}
			if !bad {
				break
			}
			if try == 2 {
				return 0, slot{}, false, false, fmt.Errorf("%w: stream table %d has a damaged slot near %d", ErrIndexDamaged, t.n, i)
			}
		}
		for j := uint64(0); j < k; j++ {
			sl, empty, _ := decodeSlot(b[j*slotSize:])
			switch {
			case empty && !taken[i+j]:
				return i + j, slot{}, false, false, nil
			case !empty && sl.h == h:
				return i + j, sl, true, false, nil
			}
		}
		scanned += k
		i = (i + k) & mask
	}
	return 0, slot{}, false, true, nil
}

// slotLoc is where a stream's slot is: table+1 (0: it has none yet) and the slot's index.
type slotLoc struct {
	table uint32
	idx   uint64
}

// findSlot looks h up in every table, newest first.
func (ix *index) findSlot(h uint64) (slotLoc, slot, bool, error) {
	ix.tmu.RLock()
	tables := ix.tables
	ix.tmu.RUnlock()
	for i := len(tables) - 1; i >= 0; i-- {
		idx, s, found, _, err := tables[i].probe(h, nil)
		if err != nil {
			return slotLoc{}, slot{}, false, err
		}
		if found {
			return slotLoc{table: uint32(i) + 1, idx: idx}, s, true, nil
		}
	}
	return slotLoc{}, slot{}, false, nil
}

// addTable creates the next table (checkpoint only).
func (ix *index) addTable() error {
	n := uint32(len(ix.tables))
	if n >= maxTables {
		return errors.New("the event store index has no room for more streams")
	}
	_ = os.Remove(ix.tablePath(n)) // left by a checkpoint that did not commit
	t, err := openTable(ix.tablePath(n), n, true)
	if err != nil {
		return err
	}
	ix.tmu.Lock()
	ix.tables = append(ix.tables, t)
	ix.tmu.Unlock()
	return nil
}

// readPos reads the record of position p, through blk (a caller's block of the positions file,
// kept between calls: walks backwards and forwards read their neighbours from it).
func (ix *index) readPos(p uint64, blk *posBlock) (posRec, error) {
	const per = 64 // records per block
	off := int64(posHeaderSize) + int64(p-1)*posRecSize
	if blk == nil {
		blk = &posBlock{}
	}
	if off < blk.off || off+posRecSize > blk.off+int64(len(blk.b)) {
		start := int64(posHeaderSize) + int64((p-1)/per*per)*posRecSize
		if cap(blk.b) < per*posRecSize {
			blk.b = make([]byte, per*posRecSize)
		}
		blk.b = blk.b[:per*posRecSize]
		n, err := ix.pos.ReadAt(blk.b, start)
		if n < int(off-start)+posRecSize {
			if err == nil || errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			blk.b = blk.b[:0]
			return posRec{}, fmt.Errorf("%w: read the record of position %d: %v", ErrIndexDamaged, p, err)
		}
		blk.off, blk.b = start, blk.b[:n]
	}
	r, err := decodePosRec(blk.b[off-blk.off:], p)
	if err != nil {
		return posRec{}, fmt.Errorf("%w: the record of position %d is damaged", ErrIndexDamaged, p)
	}
	return r, nil
}

// posBlock is a block of the positions file that a walk keeps between records.
type posBlock struct {
	off int64
	b   []byte
}

// readPosRange reads the records of positions [from, from+n).
func (ix *index) readPosRange(from uint64, n int, buf []byte) ([]posRec, []byte, error) {
	size := n * posRecSize
	if cap(buf) < size {
		buf = make([]byte, size)
	}
	buf = buf[:size]
	if _, err := ix.pos.ReadAt(buf, int64(posHeaderSize)+int64(from-1)*posRecSize); err != nil {
		return nil, buf, fmt.Errorf("%w: read the records of positions %d to %d: %v", ErrIndexDamaged, from, from+uint64(n)-1, err)
	}
	out := make([]posRec, n)
	for i := range out {
		r, err := decodePosRec(buf[i*posRecSize:], from+uint64(i))
		if err != nil {
			return nil, buf, fmt.Errorf("%w: the record of position %d is damaged", ErrIndexDamaged, from+uint64(i))
		}
		out[i] = r
	}
	return out, buf, nil
}

// markDamaged makes the next open rebuild the index, after a read found it inconsistent with the
// log: it stops checkpoints and removes the checkpoint files. Reads that need the damaged part
// keep failing until then; the log is untouched.
func (ix *index) markDamaged(why string) bool {
	if !ix.damaged.CompareAndSwap(nil, &why) {
		return false
	}
	ix.ckMu.Lock()
	defer ix.ckMu.Unlock()
	for i := 0; i < 2; i++ {
		_ = os.Remove(ckptPath(ix.dir, i))
	}
	_ = atomicfile.SyncDir(ix.dir)
	return true
}

func (ix *index) close() {
	if ix.pos != nil {
		ix.pos.Close()
	}
	for _, t := range ix.tables {
		t.f.Close()
	}
	if ix.lock != nil {
		ix.lock.Close()
	}
}

// copyIndex copies the index in src to dst for a read-only open, holding src's checkpoint lock
// shared so that no checkpoint writes meanwhile: the copy's checkpoint and slots then agree, and
// its position and tenant records cover at least the checkpoint. It reports false when src holds
// no index.
func copyIndex(src, dst string) (bool, error) {
	lf, err := os.Open(filepath.Join(src, "checkpoint.lock"))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer lf.Close()
	// A checkpoint holds the lock for a few fsyncs: wait for it, but not forever.
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := syscall.Flock(int(lf.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			return false, fmt.Errorf("lock %s: %w", lf.Name(), err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		return false, err
	}
	// Positions and tenants are copied after the checkpoint and the tables, so they reach at
	// least as far.
	rank := func(name string) int {
		switch {
		case strings.HasPrefix(name, "checkpoint.") && name != "checkpoint.lock":
			return 0
		case strings.HasPrefix(name, "streams."):
			return 1
		default:
			return 2
		}
	}
	slices.SortStableFunc(ents, func(a, b os.DirEntry) int { return rank(a.Name()) - rank(b.Name()) })
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		if err := copyFile(filepath.Join(dst, e.Name()), filepath.Join(src, e.Name())); err != nil {
			return false, err
		}
	}
	return true, nil
}

// copyFile copies src to dst.
func copyFile(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}
