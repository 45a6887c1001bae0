package embedded

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// selected is an event the index chose to read: its position and its index record.
type selected struct {
	pos uint64
	r   posRec
}

// ReadStream implements eventstore.Store. It walks the stream back from its last event, from record
// to record of the index, down to revision from: its cost grows with the events read, not with the
// log.
func (s *Store) ReadStream(ctx context.Context, stream tenant.Stream, from uint64, max int) ([]eventstore.Event, error) {
	s.mu.RLock()
	closed, last := s.closed, s.last
	s.mu.RUnlock()
	if closed {
		return nil, eventstore.ErrClosed
	}
	name := stream.String()
	e, found, err := s.lookupStream(name, false)
	if err != nil || !found || e.last == 0 {
		return nil, err
	}
	now := s.opts.Now()
	var sel []selected
	var blk posBlock
	for p, n := e.last, 0; p != 0; n++ {
		r, err := s.ix.readPos(p, &blk)
		if err != nil {
			return nil, s.indexDamaged(err)
		}
		if r.h != e.h {
			return nil, s.indexDamaged(fmt.Errorf("%w: position %d is not of stream %s", ErrIndexDamaged, p, name))
		}
		if p <= last { // later ones are being appended
			if r.rev < from {
				break
			}
			if e.meta.Readable(r.rev, time.Unix(0, r.time), now) {
				sel = append(sel, selected{pos: p, r: r})
			}
		}
		p = r.prev
		if n%4096 == 4095 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
	}
	slices.Reverse(sel)
	if max > 0 && len(sel) > max {
		sel = sel[:max]
	}
	evs, err := s.readRecs(sel, false)
	if err != nil {
		return nil, err
	}
	for i := range evs {
		if evs[i].Stream != name {
			return nil, s.indexDamaged(fmt.Errorf("%w: position %d holds an event of %s, not of %s", ErrIndexDamaged, evs[i].Position, evs[i].Stream, name))
		}
	}
	return evs, nil
}

// ReadTenant implements eventstore.Store.
func (s *Store) ReadTenant(ctx context.Context, t tenant.ID, from eventstore.Position, max int) ([]eventstore.Event, error) {
	if t.IsZero() {
		return nil, fmt.Errorf("%w: ReadTenant needs a tenant", eventstore.ErrInvalid)
	}
	s.mu.RLock()
	closed, last := s.closed, s.last
	var tf *tenantFile
	var n uint64
	// Close replaces s.tenants after marking the store closed, without the lock: only an open
	// store's may be read (the race detector found ReadTenant and Subscribe reading it then).
	if !closed {
		tf = s.tenants[t.String()]
	}
	if tf != nil {
		n = tf.n
	}
	s.mu.RUnlock()
	if closed {
		return nil, eventstore.ErrClosed
	}
	sel, err := s.selectTenant(ctx, tf, n, uint64(from), max, last)
	if err != nil {
		return nil, err
	}
	return s.readTenantRecs(t, sel)
}

// readTenantRecs reads sel and checks that every event is t's: the tenant's index can never hand
// out another tenant's event.
func (s *Store) readTenantRecs(t tenant.ID, sel []selected) ([]eventstore.Event, error) {
	evs, err := s.readRecs(sel, false)
	if err != nil {
		return nil, err
	}
	for i := range evs {
		if evs[i].Tenant != t {
			return nil, s.indexDamaged(fmt.Errorf("%w: the index of tenant %s names position %d, an event of %s", ErrIndexDamaged, t, evs[i].Position, evs[i].Tenant))
		}
	}
	return evs, nil
}

// selectTenant picks up to max readable events (max <= 0: all) among the first n positions of
// tenant file tf that are at least from.
func (s *Store) selectTenant(ctx context.Context, tf *tenantFile, n, from uint64, max int, last uint64) ([]selected, error) {
	if tf == nil || n == 0 {
		return nil, nil
	}
	var rec [tenantRecSize]byte
	at := func(i uint64) (uint64, error) {
		if _, err := tf.f.ReadAt(rec[:], int64(i)*tenantRecSize); err != nil {
			return 0, fmt.Errorf("%w: read the index of tenant %s: %v", ErrIndexDamaged, tf.id, err)
		}
		p, err := decodeTenantRec(rec[:], tf.id)
		if err != nil || p > last {
			return 0, fmt.Errorf("%w: the index of tenant %s is damaged at record %d", ErrIndexDamaged, tf.id, i)
		}
		return p, nil
	}
	// Positions ascend: binary search for the first at least from.
	lo, hi := uint64(0), n
	for lo < hi {
		m := (lo + hi) / 2
		p, err := at(m)
		if err != nil {
			return nil, s.indexDamaged(err)
		}
		if p < from {
			lo = m + 1
		} else {
			hi = m
		}
	}
	now := s.opts.Now()
	memo := map[uint64]*eventstore.StreamMetadata{}
	var sel []selected
	if max > 0 {
		sel = make([]selected, 0, min(uint64(max), n-lo))
	}
	var blk posBlock
	var buf []byte
	prev := uint64(0)
	for i := lo; i < n && (max <= 0 || len(sel) < max); {
		k := min(n-i, 4096)
		if max > 0 {
			k = min(k, uint64(max-len(sel))+16)
		}
		if cap(buf) < int(k)*tenantRecSize {
			buf = make([]byte, k*tenantRecSize)
		}
		buf = buf[:k*tenantRecSize]
		if _, err := tf.f.ReadAt(buf, int64(i)*tenantRecSize); err != nil {
			return nil, s.indexDamaged(fmt.Errorf("%w: read the index of tenant %s: %v", ErrIndexDamaged, tf.id, err))
		}
		for j := uint64(0); j < k && (max <= 0 || len(sel) < max); j++ {
			p, err := decodeTenantRec(buf[j*tenantRecSize:], tf.id)
			if err != nil || p <= prev || p > last {
				return nil, s.indexDamaged(fmt.Errorf("%w: the index of tenant %s is damaged at record %d", ErrIndexDamaged, tf.id, i+j))
			}
			prev = p
			r, err := s.ix.readPos(p, &blk)
			if err != nil {
				return nil, s.indexDamaged(err)
			}
			ok, err := s.readable(r, memo, now)
			if err != nil {
				return nil, err
			}
			if ok {
				sel = append(sel, selected{pos: p, r: r})
			}
		}
		i += k
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	return sel, nil
}

// selectAll picks up to max readable events of every tenant with position from to last.
func (s *Store) selectAll(ctx context.Context, from uint64, limit int, last uint64) ([]selected, error) {
	now := s.opts.Now()
	memo := map[uint64]*eventstore.StreamMetadata{}
	var sel []selected
	var buf []byte
	for p := max(from, 1); p <= last && (limit <= 0 || len(sel) < limit); {
		k := int(min(last-p+1, 1024))
		recs, b, err := s.ix.readPosRange(p, k, buf)
		buf = b
		if err != nil {
			return nil, s.indexDamaged(err)
		}
		for i, r := range recs {
			ok, err := s.readable(r, memo, now)
			if err != nil {
				return nil, err
			}
			if ok {
				sel = append(sel, selected{pos: p + uint64(i), r: r})
				if limit > 0 && len(sel) == limit {
					break
				}
			}
		}
		p += uint64(k)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	return sel, nil
}

// readable reports whether the event r locates is readable under its stream's metadata.
func (s *Store) readable(r posRec, memo map[uint64]*eventstore.StreamMetadata, now time.Time) (bool, error) {
	md, err := s.metaOf(r.h, memo)
	if err != nil || md == nil {
		return err == nil, err
	}
	return md.Readable(r.rev, time.Unix(0, r.time), now), nil
}

// readRecs reads the events sel locates (ascending positions, so ascending offsets), coalescing
// nearby records into one pread so that a stream or a replay costs a few system calls, not one per
// event. Each record's checksum is checked before its event is decoded, and each event is checked
// against what the index said of it. With pageData (a subscription's page, whose handlers keep
// nothing of an event's data past the call: Subscribe), each span is read into a buffer of its own
// and an event's Data is its part of that buffer instead of a copy: a catch-up copied every event's
// data once more, a tenth of a first start's CPU with the allocations and the collector's work.
func (s *Store) readRecs(sel []selected, pageData bool) ([]eventstore.Event, error) {
	if len(sel) == 0 {
		return nil, nil
	}
	const maxSpan, maxGap = 1 << 20, 32 << 10
	out := make([]eventstore.Event, len(sel))
	c := decoders.Get().(*decodeCache)
	defer decoders.Put(c)
	// Events are decoded into memory of their own, so the span read is only scratch: reused from
	// read to read (a tenant's whole log is read in pages of up to a few MB). Not a page's data.
	var buf []byte
	if !pageData {
		bp := spans.Get().(*[]byte)
		buf = *bp
		defer func() {
			if cap(buf) > 4<<20 {
				buf = nil // a huge record's span is not kept
			}
			*bp = buf
			spans.Put(bp)
		}()
	}
	recEnd := func(r posRec) int64 { return r.recOff + headerSize + int64(r.recLen) }
	for i := 0; i < len(sel); {
		start, end := sel[i].r.recOff, recEnd(sel[i].r)
		j := i + 1
		for j < len(sel) {
			r := sel[j].r
			if r.recOff < start || r.recOff-end > maxGap || recEnd(r)-start > maxSpan {
				break
			}
			end = max(end, recEnd(r))
			j++
		}
		if pageData {
			buf = make([]byte, end-start) // the events' Data: never reused
		} else if cap(buf) < int(end-start) {
			buf = make([]byte, end-start)
		}
		buf = buf[:end-start]
		if _, err := s.f.ReadAt(buf, start); err != nil {
			if errors.Is(err, io.EOF) {
				return nil, s.indexDamaged(fmt.Errorf("%w: it locates an event past the end of the log, at %d", ErrIndexDamaged, end))
			}
			return nil, fmt.Errorf("read %s at %d: %w", s.f.Name(), start, err)
		}
		checked := int64(-1)
		for k := i; k < j; k++ {
			r := sel[k].r
			rec := buf[r.recOff-start : recEnd(r)-start]
			if r.recOff != checked {
				if err := s.checkRecord(rec, r); err != nil {
					return nil, err
				}
				checked = r.recOff
			}
			payload := rec[headerSize:]
			ev := &out[k]
			err := decodeEventData(ev, payload[r.evOff:r.evOff+r.evLen], c, !pageData)
			if err != nil || uint64(ev.Position) != sel[k].pos || ev.Revision != r.rev {
				return nil, s.indexDamaged(fmt.Errorf("%w: position %d does not locate its event in the log record at %d", ErrIndexDamaged, sel[k].pos, r.recOff))
			}
		}
		i = j
	}
	return out, nil
}

// decoders are the decode caches of reads in progress; a cache holds only what the bytes decoded
// say (names, and the tenant a stream name parses to), so any store's read may use any of them.
var decoders = sync.Pool{New: func() any { return newDecodeCache() }}

// spans are readRecs' read buffers (up to 1 MB each).
var spans = sync.Pool{New: func() any { return new([]byte) }}

// checkRecord checks that rec is the whole record r locates and reads back as written. A record
// whose length is the index's but whose checksum fails is damage in the log (ErrCorrupt); a
// record of another length means the index is wrong.
func (s *Store) checkRecord(rec []byte, r posRec) error {
	if binary.LittleEndian.Uint32(rec[0:4]) != r.recLen || rec[8] != kindEvents {
		return s.indexDamaged(fmt.Errorf("%w: it locates no event record at offset %d of the log", ErrIndexDamaged, r.recOff))
	}
	c := crc32.Update(0, crcTable, rec[8:9])
	if crc32.Update(c, crcTable, rec[headerSize:]) != binary.LittleEndian.Uint32(rec[4:8]) {
		return fmt.Errorf("%w: %s: the record at offset %d does not read back as written (restore the data folder from a backup)", eventstore.ErrCorrupt, s.f.Name(), r.recOff)
	}
	return nil
}

// Subscribe implements eventstore.Store: catch-up from opts.From, then live. A handed event's Data
// is its part of the buffer its page of the log was read into (readRecs), not a copy of its own: a
// handler that keeps Data past the call keeps that buffer (up to 1 MB) alive, and should copy it.
func (s *Store) Subscribe(ctx context.Context, opts eventstore.SubscribeOptions, h eventstore.Handler) error {
	const page = 1024
	next := uint64(opts.From)
	live := opts.CaughtUp == nil
	for {
		s.mu.RLock()
		closed, last, wait := s.closed, s.last, s.notify
		var tf *tenantFile
		var n uint64
		if !opts.Tenant.IsZero() && !closed { // see ReadTenant
			if tf = s.tenants[opts.Tenant.String()]; tf != nil {
				n = tf.n
			}
		}
		s.mu.RUnlock()
		if closed {
			return eventstore.ErrClosed
		}
		var sel []selected
		var err error
		if opts.Tenant.IsZero() {
			sel, err = s.selectAll(ctx, next, page, last)
		} else {
			sel, err = s.selectTenant(ctx, tf, n, next, page, last)
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		var evs []eventstore.Event
		if opts.Tenant.IsZero() {
			evs, err = s.readRecs(sel, true)
		} else {
			evs, err = s.readTenantRecs(opts.Tenant, sel)
		}
		if err != nil {
			return err
		}
		for _, e := range evs {
			if err := h(ctx, e); err != nil {
				return err
			}
			next = uint64(e.Position) + 1
		}
		if len(sel) == page {
			continue
		}
		// Nothing readable left up to last: skip past it so unreadable events are not rescanned.
		if next <= last {
			next = last + 1
		}
		if !live {
			// The selection with the last read under the lock was the final one: all up to it is delivered.
			live = true
			if err := opts.CaughtUp(ctx, eventstore.Position(last)); err != nil {
				return err
			}
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-wait:
		}
	}
}

// SetStreamMetadata implements eventstore.Store; the metadata is a record in the log, so it is as
// durable as the events it governs.
func (s *Store) SetStreamMetadata(ctx context.Context, stream tenant.Stream, md eventstore.StreamMetadata) error {
	if stream.IsZero() {
		return fmt.Errorf("%w: stream without tenant", eventstore.ErrInvalid)
	}
	if s.readOnly {
		return eventstore.ErrReadOnly
	}
	r := &appendReq{ctx: ctx, stream: stream, meta: &md, done: make(chan struct{})}
	if err := s.submit(ctx, r); err != nil {
		return err
	}
	return r.err
}

// StreamMetadata implements eventstore.Store.
func (s *Store) StreamMetadata(ctx context.Context, stream tenant.Stream) (eventstore.StreamMetadata, error) {
	s.mu.RLock()
	closed := s.closed
	s.mu.RUnlock()
	if closed {
		return eventstore.StreamMetadata{}, eventstore.ErrClosed
	}
	e, _, err := s.lookupStream(stream.String(), false)
	if err != nil {
		return eventstore.StreamMetadata{}, err
	}
	return e.meta, nil
}

// LastPosition implements eventstore.Store.
func (s *Store) LastPosition(ctx context.Context) (eventstore.Position, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return eventstore.Position(s.last), nil
}

// Close stops the writer after the batch in flight, closes the log and releases the lock. A store
// opened read-only just closes its file.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.quit)
	close(s.notify)
	s.mu.Unlock()
	<-s.done
	<-s.ckDone
	var err error
	if !s.readOnly {
		err = s.f.Sync()
		// The next open then has nothing to index again.
		if cerr := s.checkpoint(); cerr != nil {
			s.opts.Logger.Warn("event store: index checkpoint at close failed; the next open indexes the log's tail", "error", cerr)
		}
	}
	s.closeIndex()
	if cerr := s.f.Close(); err == nil {
		err = cerr
	}
	if s.lock != nil {
		_ = s.lock.Close()
	}
	if err != nil {
		return fmt.Errorf("close event store %s: %w", s.dir, err)
	}
	return nil
}

var _ eventstore.Store = (*Store)(nil)
