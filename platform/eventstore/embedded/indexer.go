package embedded

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/crispy-enigma/crispy/platform/eventstore"
)

// ixBatch is the index records of a run of consecutive positions: what one commit (or a stretch of
// an open's scan) adds.
type ixBatch struct {
	first   uint64
	recs    []posRec
	tenants []string // the tenant of each record
	enc     []byte
	tenBuf  map[string][]byte
	order   []string
	counts  map[string]uint64
	created map[string]*tenantFile
}

func (b *ixBatch) reset(first uint64) {
	b.first = first
	b.recs, b.tenants = b.recs[:0], b.tenants[:0]
}

func (b *ixBatch) add(r posRec, tenant string) {
	b.recs = append(b.recs, r)
	b.tenants = append(b.tenants, tenant)
}

func (b *ixBatch) truncate(n int) { b.recs, b.tenants = b.recs[:n], b.tenants[:n] }

// setRecLen sets the record length of the records from i on (they share one log record).
func (b *ixBatch) setRecLen(i int, n uint32) {
	for ; i < len(b.recs); i++ {
		b.recs[i].recLen = n
	}
}

// writeIndex writes b's position and tenant records after the published ones (writer only). It
// creates the files of new tenants; publishIndex makes them, and the records, visible.
func (s *Store) writeIndex(b *ixBatch) error {
	if b.counts == nil {
		b.counts, b.tenBuf, b.created = map[string]uint64{}, map[string][]byte{}, map[string]*tenantFile{}
	}
	clear(b.counts)
	clear(b.created)
	b.order = b.order[:0]
	if len(b.recs) == 0 {
		return nil
	}
	size := len(b.recs) * posRecSize
	if cap(b.enc) < size {
		b.enc = make([]byte, size)
	}
	b.enc = b.enc[:size]
	for i, r := range b.recs {
		putPosRec(b.enc[i*posRecSize:], b.first+uint64(i), r)
	}
	if _, err := s.ix.pos.WriteAt(b.enc, int64(posHeaderSize)+int64(b.first-1)*posRecSize); err != nil {
		return fmt.Errorf("write the event store index: %w", err)
	}
	for k := range b.tenBuf {
		b.tenBuf[k] = b.tenBuf[k][:0]
	}
	var rec [tenantRecSize]byte
	for i, t := range b.tenants {
		if _, ok := b.counts[t]; !ok {
			b.order = append(b.order, t)
		}
		b.counts[t]++
		putTenantRec(rec[:], t, b.first+uint64(i))
		b.tenBuf[t] = append(b.tenBuf[t], rec[:]...)
	}
	for _, t := range b.order {
		tf := s.tenants[t]
		if tf == nil {
			f, err := os.OpenFile(tenantPath(s.ix.dir, t), os.O_RDWR|os.O_CREATE, 0o640)
			if err != nil {
				s.closeCreated(b)
				return fmt.Errorf("create the event store index of tenant %s: %w", t, err)
			}
			tf = &tenantFile{id: t, f: f}
			b.created[t] = tf
		}
		if _, err := tf.f.WriteAt(b.tenBuf[t], int64(tf.n)*tenantRecSize); err != nil {
			s.closeCreated(b)
			return fmt.Errorf("write the event store index of tenant %s: %w", t, err)
		}
	}
	return nil
}

func (s *Store) closeCreated(b *ixBatch) {
	for _, tf := range b.created {
		tf.f.Close()
	}
	clear(b.created)
}

// publishIndex makes what writeIndex wrote visible to readers. Caller holds mu (or is opening).
func (s *Store) publishIndex(b *ixBatch) {
	for t, tf := range b.created {
		s.tenants[t] = tf
	}
	clear(b.created)
	for t, n := range b.counts {
		s.tenants[t].n += n
	}
	clear(b.counts)
}

// openIndex opens the index in dir and indexes the log from where it ends. With verifyAll (a
// read-only open) every record of the log is read and checked, not only the tail. It returns the
// torn tail it found, for the caller to cut or report.
func (s *Store) openIndex(dir string, verifyAll bool) (*TornTail, error) {
	start := time.Now()
	fi, err := s.f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat %s: %w", s.f.Name(), err)
	}
	l, err := openIndex(dir, s.f, fi.Size())
	if err != nil {
		return nil, err
	}
	torn, err := s.indexLog(l, verifyAll)
	if err != nil && l.rebuild == "" && !errors.Is(err, errStorage) {
		// The log and the index disagree (a revision that does not follow, a slot that names
		// another stream): the index is wrong, or the log is damaged. A full rebuild tells them
		// apart, and only its verdict counts against the log.
		s.closeIndexFiles()
		why := err
		if l, err = resetIndex(dir); err != nil {
			return nil, err
		}
		l.rebuild = fmt.Sprintf("the index disagrees with the log's tail (%v)", why)
		torn, err = s.indexLog(l, verifyAll)
	}
	if err != nil {
		return nil, err
	}
	if l.rebuild != "" {
		s.opts.Logger.Warn("event store: index built", "events", s.last, "took", time.Since(start).Round(time.Millisecond).String())
	}
	return torn, nil
}

// errStorage marks an index write that failed: the storage's fault, not the index's or the log's.
var errStorage = errors.New("event store index write failed")

// indexLog takes l as the store's index and indexes the log from where l covers it.
func (s *Store) indexLog(l *loadedIndex, verifyAll bool) (*TornTail, error) {
	start := time.Now()
	s.ix, s.tenants = l.ix, l.tenants
	s.cache = newStreamCache(s.cache.max)
	s.metas = metaCache{}
	s.last, s.size, s.lastRec, s.lastCRC = l.ck.pos, l.ck.off, l.ck.lastRec, l.ck.lastRecCRC
	if l.rebuild != "" {
		s.opts.Logger.Warn("event store: building the index from the log", "reason", l.rebuild, "index", l.ix.dir)
	}
	from := s.size
	if verifyAll {
		from = 0
	}
	s.ib.reset(s.last + 1)
	covered := s.last
	res, err := s.scan(from, s.size, l.ck.lastRec, l.ck.lastRecCRC, s.indexRecord)
	if err == nil {
		if err = s.writeIndex(s.ib); err != nil {
			err = fmt.Errorf("%w: %w", errStorage, err)
		}
		s.publishIndex(s.ib)
	}
	if err != nil {
		return nil, err
	}
	s.size, s.lastRec, s.lastCRC = res.end, res.lastRec, res.lastCRC
	if s.last > covered || l.rebuild != "" {
		// So that the next open starts from here.
		if err := s.checkpoint(); err != nil {
			return nil, fmt.Errorf("%w: %w", errStorage, err)
		}
	}
	if l.rebuild == "" && s.last > covered {
		s.opts.Logger.Info("event store: indexed the log's tail", "events", s.last-covered, "took", time.Since(start).Round(time.Millisecond).String())
	}
	return res.torn, nil
}

// indexRecord indexes one record of the log found by an open's scan.
func (s *Store) indexRecord(kind byte, payload []byte, recOff int64, crc uint32) error {
	corrupt := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s: record at offset %d: %s", eventstore.ErrCorrupt, s.f.Name(), recOff, fmt.Sprintf(format, a...))
	}
	switch kind {
	case kindEvents:
		d := decoder{b: payload}
		count := d.uvarint()
		for i := uint64(0); i < count && d.err == nil; i++ {
			n := d.uvarint()
			if d.err != nil || uint64(len(d.b)) < n {
				return corrupt("event length out of range")
			}
			evOff := len(payload) - len(d.b)
			ev, err := decodeEvent(d.b[:n])
			if err != nil {
				return corrupt("%v", err)
			}
			d.b = d.b[n:]
			pos := s.last + 1
			if uint64(ev.Position) != pos {
				return corrupt("event %s has position %d, want %d", ev.ID, ev.Position, pos)
			}
			e, _, err := s.lookupStream(ev.Stream, true)
			if err != nil {
				return err
			}
			if e.lastHash != "" && ev.Revision != e.lastRev+1 {
				return corrupt("event %s has revision %d in %s after %d", ev.ID, ev.Revision, ev.Stream, e.lastRev)
			}
			s.ib.add(posRec{recOff: recOff, recLen: uint32(len(payload)), evOff: uint32(evOff), evLen: uint32(n), h: e.h, prev: e.last, rev: ev.Revision, time: ev.Time.UnixNano()}, ev.Tenant.String())
			e.last, e.lastRev, e.lastHash = pos, ev.Revision, ev.Hash
			s.cache.publish(e)
			s.last = pos
		}
		if d.err != nil {
			return corrupt("%v", d.err)
		}
	case kindMetadata:
		name, md, err := decodeMetadata(payload)
		if err != nil {
			return corrupt("%v", err)
		}
		e, _, err := s.lookupStream(name, true)
		if err != nil {
			return err
		}
		e.meta, e.metaAt = md, recOff+1
		s.cache.publish(e)
		s.metas.forget(e.h)
	default:
		return corrupt("unknown record kind %d (written by a newer version?)", kind)
	}
	s.size, s.lastRec, s.lastCRC = recOff+headerSize+int64(len(payload)), recOff, crc
	if len(s.ib.recs) >= 4096 || s.last-s.ix.coveredPos() >= checkpointEvery {
		if err := s.writeIndex(s.ib); err != nil {
			return fmt.Errorf("%w: %w", errStorage, err)
		}
		s.publishIndex(s.ib)
		s.ib.reset(s.last + 1)
		if s.last-s.ix.coveredPos() >= checkpointEvery {
			// Bounds the dirty streams held in memory while a long log is indexed.
			if err := s.checkpoint(); err != nil {
				return fmt.Errorf("%w: %w", errStorage, err)
			}
		}
	}
	return nil
}

// coveredPos is the position the last checkpoint covers.
func (ix *index) coveredPos() uint64 { return ix.covered.Load() }

// checkpoint makes what the index holds durable and records how far it covers the log (see
// index.go for the order of its steps).
func (s *Store) checkpoint() error {
	ix := s.ix
	ix.ckMu.Lock()
	defer ix.ckMu.Unlock()
	if ix.damaged.Load() != nil {
		return nil
	}
	s.mu.RLock()
	c := checkpoint{pos: s.last, off: s.size, lastRec: s.lastRec, lastRecCRC: s.lastCRC}
	dirty := s.cache.dirtyEntries()
	tenants := make([]*tenantFile, 0, len(s.tenants))
	counts := make(map[string]uint64, len(s.tenants))
	for id, t := range s.tenants {
		tenants = append(tenants, t)
		if t.n > 0 {
			counts[id] = t.n
		}
	}
	c.tenantSum = tenantsSum(counts)
	s.mu.RUnlock()
	if c.pos == ix.ck.pos && c.off == ix.ck.off && len(dirty) == 0 {
		return nil
	}
	// Where each changed stream's slot goes: where it is, or the first free slot of the newest
	// table (a new table when that one is half full).
	newest := ix.ck.newest
	if uint32(len(ix.tables)) > ix.ck.tables {
		newest = 0 // a table added by a checkpoint that failed
	}
	taken := map[uint64]bool{}
	slots := make([]ckptSlot, 0, len(dirty))
	for i := range dirty {
		e := &dirty[i]
		if e.loc.table == 0 {
			loc, _, found, err := ix.findSlot(e.h)
			if err != nil {
				return err
			}
			if found {
				e.loc = loc
			}
		}
		for e.loc.table == 0 {
			t := ix.tables[len(ix.tables)-1]
			if newest+1 > t.cap/2 {
				if err := ix.addTable(); err != nil {
					return err
				}
				newest, taken = 0, map[uint64]bool{}
				continue
			}
			idx, _, found, full, err := t.probe(e.h, taken)
			if err != nil {
				return err
			}
			if full {
				newest = t.cap // full: the next round adds a table
				continue
			}
			taken[idx] = true
			if !found {
				newest++
			}
			e.loc = slotLoc{table: t.n + 1, idx: idx}
		}
		slots = append(slots, ckptSlot{table: e.loc.table - 1, idx: e.loc.idx, s: slot{h: e.h, last: e.last, metaAt: e.metaAt}})
	}
	// What the checkpoint covers must be on disk before it says so.
	if err := ix.pos.Sync(); err != nil {
		return fmt.Errorf("fsync the event store index: %w", err)
	}
	for _, t := range tenants {
		if err := t.f.Sync(); err != nil {
			return fmt.Errorf("fsync the event store index of tenant %s: %w", t.id, err)
		}
	}
	c.seq, c.tables, c.newest, c.slots = ix.ck.seq+1, uint32(len(ix.tables)), newest, slots
	if err := syscall.Flock(int(ix.lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("lock the event store index: %w", err)
	}
	err := ix.writeCheckpoint(&c)
	if err == nil && s.crashAt != nil && s.crashAt("checkpoint written") {
		err = errCrash
	}
	if err == nil && s.crashAt != nil && s.crashAt("half the slots written") {
		_ = ix.writeSlots(slots[:len(slots)/2])
		err = errCrash
	}
	if err == nil {
		err = ix.writeSlots(slots)
	}
	_ = syscall.Flock(int(ix.lock.Fd()), syscall.LOCK_UN)
	if err != nil {
		return err
	}
	c.slots = nil
	ix.ck = c
	ix.covered.Store(c.pos)
	s.cache.markClean(dirty)
	return nil
}

// errCrash is what a checkpoint stopped by a test's crashAt returns.
var errCrash = errors.New("simulated crash")

// checkpointer checkpoints the index every CheckpointInterval, and sooner when the writer asks.
func (s *Store) checkpointer() {
	defer close(s.ckDone)
	t := time.NewTicker(s.opts.CheckpointInterval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-s.quit:
			return
		case <-t.C:
		case <-s.ckKick:
		}
		if err := s.checkpoint(); err != nil {
			// The index only lags: the next checkpoint, or the next open, catches up.
			if !failing {
				s.opts.Logger.Warn("event store: index checkpoint failed; retrying", "error", err)
			}
			failing = true
		} else if failing {
			s.opts.Logger.Info("event store: index checkpoint succeeded again")
			failing = false
		}
	}
}

// indexDamaged makes a read's finding that the index is damaged the next open's reason to rebuild
// it, and logs it once.
func (s *Store) indexDamaged(err error) error {
	if errors.Is(err, ErrIndexDamaged) && s.ix.markDamaged(err.Error()) {
		s.opts.Logger.Error("event store: index damaged; reads that need the damaged part fail until a restart rebuilds it from the log (the log is intact)", "error", err)
	}
	return err
}

// closeIndex closes the index's files and, for a read-only open, removes its private copy.
func (s *Store) closeIndex() {
	s.closeIndexFiles()
	if s.tmpIndex != "" {
		_ = os.RemoveAll(s.tmpIndex)
	}
}

func (s *Store) closeIndexFiles() {
	if s.ix != nil {
		s.ix.close()
	}
	for _, t := range s.tenants {
		t.f.Close()
	}
	s.ix, s.tenants = nil, map[string]*tenantFile{}
}
