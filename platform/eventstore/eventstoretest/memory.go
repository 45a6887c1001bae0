// Package eventstoretest holds the acceptance suite that every eventstore.Store implementation runs,
// and an in-memory Store for tests of the modules above the port.
package eventstoretest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// Memory is an in-memory eventstore.Store. It is a fake for tests: nothing survives the process.
type Memory struct {
	mu      sync.Mutex
	events  []eventstore.Event // global order; position = index+1
	streams map[string][]int   // stream -> indexes into events
	meta    map[string]eventstore.StreamMetadata
	notify  chan struct{}
	closed  bool
	now     func() time.Time
	failErr error // FailAppends
}

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory {
	return &Memory{streams: map[string][]int{}, meta: map[string]eventstore.StreamMetadata{}, notify: make(chan struct{}), now: time.Now}
}

// FailAppends makes every later Append and SetStreamMetadata fail with err (nil: work again), as a
// store whose storage is full refuses writes (eventstore.ErrStorageUnavailable) while reads go on.
func (m *Memory) FailAppends(err error) { m.mu.Lock(); m.failErr = err; m.mu.Unlock() }

// SetClock replaces the store's clock (for retention tests).
func (m *Memory) SetClock(now func() time.Time) { m.mu.Lock(); m.now = now; m.mu.Unlock() }

func (m *Memory) Append(ctx context.Context, stream tenant.Stream, expected eventstore.ExpectedRevision, data ...eventstore.EventData) (eventstore.AppendResult, error) {
	if err := ctx.Err(); err != nil {
		return eventstore.AppendResult{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return eventstore.AppendResult{}, eventstore.ErrClosed
	}
	if m.failErr != nil {
		return eventstore.AppendResult{}, fmt.Errorf("append to %s: %w", stream, m.failErr)
	}
	name := stream.String()
	idx := m.streams[name]
	var last uint64
	prev := ""
	if len(idx) > 0 {
		e := m.events[idx[len(idx)-1]]
		last, prev = e.Revision, e.Hash
	}
	if !expected.Check(last, len(idx) > 0) {
		return eventstore.AppendResult{}, &eventstore.ConflictError{Stream: name, Expected: expected, Actual: last, Exists: len(idx) > 0}
	}
	next := uint64(0)
	if len(idx) > 0 {
		next = last + 1
	}
	evs, err := eventstore.Prepare(ctx, stream, next, prev, m.now(), data)
	if err != nil {
		return eventstore.AppendResult{}, err
	}
	for i := range evs {
		evs[i].Position = eventstore.Position(len(m.events) + 1)
		m.streams[name] = append(m.streams[name], len(m.events))
		m.events = append(m.events, evs[i])
	}
	close(m.notify)
	m.notify = make(chan struct{})
	l := evs[len(evs)-1]
	return eventstore.AppendResult{NextExpected: l.Revision, Position: l.Position, Events: evs}, nil
}

func (m *Memory) ReadStream(ctx context.Context, stream tenant.Stream, from uint64, max int) ([]eventstore.Event, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, eventstore.ErrClosed
	}
	md, now := m.meta[stream.String()], m.now()
	var out []eventstore.Event
	for _, i := range m.streams[stream.String()] {
		e := m.events[i]
		if e.Revision < from || !md.Readable(e.Revision, e.Time, now) {
			continue
		}
		out = append(out, e)
		if max > 0 && len(out) == max {
			break
		}
	}
	return out, nil
}

func (m *Memory) ReadTenant(ctx context.Context, t tenant.ID, from eventstore.Position, max int) ([]eventstore.Event, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, eventstore.ErrClosed
	}
	return m.readLocked(t, from, max), nil
}

func (m *Memory) readLocked(t tenant.ID, from eventstore.Position, max int) []eventstore.Event {
	prefix, now := t.StreamPrefix(), m.now()
	var out []eventstore.Event
	start := 0
	if from > 1 {
		start = int(from) - 1
	}
	for i := start; i < len(m.events); i++ {
		e := m.events[i]
		if !t.IsZero() && !strings.HasPrefix(e.Stream, prefix) {
			continue
		}
		if !m.meta[e.Stream].Readable(e.Revision, e.Time, now) {
			continue
		}
		out = append(out, e)
		if max > 0 && len(out) == max {
			break
		}
	}
	return out
}

func (m *Memory) Subscribe(ctx context.Context, opts eventstore.SubscribeOptions, h eventstore.Handler) error {
	next := opts.From
	live := opts.CaughtUp == nil
	for {
		m.mu.Lock()
		if m.closed {
			m.mu.Unlock()
			return eventstore.ErrClosed
		}
		batch := m.readLocked(opts.Tenant, next, 512)
		wait := m.notify
		end := eventstore.Position(len(m.events))
		m.mu.Unlock()
		for _, e := range batch {
			if err := h(ctx, e); err != nil {
				return err
			}
			next = e.Position + 1
		}
		if len(batch) > 0 {
			continue
		}
		if !live {
			// Nothing more to read under the lock that saw end: every event up to it is delivered.
			live = true
			if err := opts.CaughtUp(ctx, end); err != nil {
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

func (m *Memory) SetStreamMetadata(ctx context.Context, stream tenant.Stream, md eventstore.StreamMetadata) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return eventstore.ErrClosed
	}
	if m.failErr != nil {
		return fmt.Errorf("set metadata of %s: %w", stream, m.failErr)
	}
	m.meta[stream.String()] = md
	return nil
}

func (m *Memory) StreamMetadata(ctx context.Context, stream tenant.Stream) (eventstore.StreamMetadata, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.meta[stream.String()], nil
}

func (m *Memory) LastPosition(ctx context.Context) (eventstore.Position, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return eventstore.Position(len(m.events)), nil
}

func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.closed {
		m.closed = true
		close(m.notify)
	}
	return nil
}

var _ eventstore.Store = (*Memory)(nil)

// String helps in test failure messages.
func (m *Memory) String() string { return fmt.Sprintf("memory store (%d events)", len(m.events)) }
