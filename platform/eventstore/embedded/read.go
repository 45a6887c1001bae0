package embedded

import (
	"context"
	"fmt"
	"time"

	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// ReadStream implements eventstore.Store.
func (s *Store) ReadStream(ctx context.Context, stream tenant.Stream, from uint64, max int) ([]eventstore.Event, error) {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return nil, eventstore.ErrClosed
	}
	i, ok := s.byName[stream.String()]
	if !ok {
		s.mu.RUnlock()
		return nil, nil
	}
	st := s.streams[i]
	now := s.opts.Now()
	var sel []entry
	for _, pos := range st.pos {
		e := s.entries[pos-1]
		if e.rev < from || !st.meta.Readable(e.rev, time.Unix(0, e.time), now) {
			continue
		}
		sel = append(sel, e)
		if max > 0 && len(sel) == max {
			break
		}
	}
	s.mu.RUnlock()
	return s.readEntries(sel)
}

// ReadTenant implements eventstore.Store.
func (s *Store) ReadTenant(ctx context.Context, t tenant.ID, from eventstore.Position, max int) ([]eventstore.Event, error) {
	if t.IsZero() {
		return nil, fmt.Errorf("%w: ReadTenant needs a tenant", eventstore.ErrInvalid)
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return nil, eventstore.ErrClosed
	}
	sel := s.selectLocked(t, from, max)
	s.mu.RUnlock()
	return s.readEntries(sel)
}

// selectLocked picks readable entries of t (every tenant when t is zero) with position >= from.
// Caller holds mu (read).
func (s *Store) selectLocked(t tenant.ID, from eventstore.Position, max int) []entry {
	now := s.opts.Now()
	var sel []entry
	keep := func(e entry) bool {
		st := s.streams[e.stream]
		if !st.meta.Readable(e.rev, time.Unix(0, e.time), now) {
			return false
		}
		sel = append(sel, e)
		return max > 0 && len(sel) == max
	}
	if t.IsZero() {
		start := int(from)
		if start > 0 {
			start--
		}
		for i := start; i < len(s.entries); i++ {
			if keep(s.entries[i]) {
				break
			}
		}
		return sel
	}
	positions := s.tenants[t.String()]
	// positions ascend: binary search for the first >= from.
	lo, hi := 0, len(positions)
	for lo < hi {
		m := (lo + hi) / 2
		if positions[m] < uint64(from) {
			lo = m + 1
		} else {
			hi = m
		}
	}
	for _, pos := range positions[lo:] {
		if keep(s.entries[pos-1]) {
			break
		}
	}
	return sel
}

// readEntries reads and decodes entries (ascending offsets), coalescing nearby events into one pread
// so that a stream or a replay costs a few system calls, not one per event.
func (s *Store) readEntries(sel []entry) ([]eventstore.Event, error) {
	if len(sel) == 0 {
		return nil, nil
	}
	const maxSpan, maxGap = 1 << 20, 32 << 10
	out := make([]eventstore.Event, 0, len(sel))
	var buf []byte
	for i := 0; i < len(sel); {
		start, end := sel[i].off, sel[i].off+int64(sel[i].n)
		j := i + 1
		for j < len(sel) {
			e := sel[j]
			if e.off-end > maxGap || e.off+int64(e.n)-start > maxSpan {
				break
			}
			end = e.off + int64(e.n)
			j++
		}
		if cap(buf) < int(end-start) {
			buf = make([]byte, end-start)
		}
		buf = buf[:end-start]
		if _, err := s.f.ReadAt(buf, start); err != nil {
			return nil, fmt.Errorf("read %s at %d: %w", s.f.Name(), start, err)
		}
		for k := i; k < j; k++ {
			e := sel[k]
			ev, err := decodeEvent(buf[e.off-start : e.off-start+int64(e.n)])
			if err != nil {
				return nil, fmt.Errorf("%w: %s at offset %d: %v", eventstore.ErrCorrupt, s.f.Name(), e.off, err)
			}
			out = append(out, ev)
		}
		i = j
	}
	return out, nil
}

// Subscribe implements eventstore.Store: catch-up from opts.From, then live.
func (s *Store) Subscribe(ctx context.Context, opts eventstore.SubscribeOptions, h eventstore.Handler) error {
	next := opts.From
	live := opts.CaughtUp == nil
	for {
		s.mu.RLock()
		if s.closed {
			s.mu.RUnlock()
			return eventstore.ErrClosed
		}
		sel := s.selectLocked(opts.Tenant, next, 1024)
		wait := s.notify
		last := eventstore.Position(len(s.entries))
		s.mu.RUnlock()
		evs, err := s.readEntries(sel)
		if err != nil {
			return err
		}
		for _, e := range evs {
			if err := h(ctx, e); err != nil {
				return err
			}
			next = e.Position + 1
		}
		if len(sel) == 1024 {
			continue
		}
		// Nothing readable left up to last: skip past it so unreadable events are not rescanned.
		if next <= last {
			next = last + 1
		}
		if !live {
			// The selection under the lock that saw last was the final one: all up to it is delivered.
			live = true
			if err := opts.CaughtUp(ctx, last); err != nil {
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
	defer s.mu.RUnlock()
	if s.closed {
		return eventstore.StreamMetadata{}, eventstore.ErrClosed
	}
	if i, ok := s.byName[stream.String()]; ok {
		return s.streams[i].meta, nil
	}
	return eventstore.StreamMetadata{}, nil
}

// LastPosition implements eventstore.Store.
func (s *Store) LastPosition(ctx context.Context) (eventstore.Position, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return eventstore.Position(len(s.entries)), nil
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
	var err error
	if !s.readOnly {
		err = s.f.Sync()
	}
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
