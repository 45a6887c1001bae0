package esdb

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	esc "github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// allTenantsPrefix is what every stream of ours starts with; filtering on it keeps the server's own
// $-streams out of the all-tenant subscription.
const allTenantsPrefix = "t-"

// ReadStream implements eventstore.Store. The server applies $tb and $maxAge to stream reads.
func (s *Store) ReadStream(ctx context.Context, stream tenant.Stream, from uint64, max int) ([]eventstore.Event, error) {
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	if stream.IsZero() {
		return nil, fmt.Errorf("%w: stream without tenant", eventstore.ErrInvalid)
	}
	name := s.serverName(stream)
	count := uint64(math.MaxInt64)
	if max > 0 {
		count = uint64(max)
	}
	return retryRenewed(func() ([]eventstore.Event, error) { return s.readStreamOnce(ctx, name, from, count) })
}

func (s *Store) readStreamOnce(ctx context.Context, name string, from, count uint64) ([]eventstore.Event, error) {
	c := s.conn()
	rs, err := c.ReadStream(ctx, name, esc.ReadStreamOptions{Direction: esc.Forwards, From: esc.Revision(from)}, count)
	if err != nil {
		return nil, s.fail(c, "read "+name, err)
	}
	defer rs.Close()
	var out []eventstore.Event
	for {
		ev, err := recvRead(rs)
		switch {
		case err == nil:
		case isEOF(err):
			return out, nil
		case hasCode(err, esc.ErrorCodeResourceNotFound):
			return nil, nil
		default:
			return nil, s.fail(c, "read "+name, err)
		}
		e, err := s.decode(ev.OriginalEvent())
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", name, err)
		}
		out = append(out, e)
	}
}

// ReadTenant implements eventstore.Store: a filtered subscription to $all on the tenant's stream
// prefix, stopped at the end of $all as it was when the call began.
func (s *Store) ReadTenant(ctx context.Context, t tenant.ID, from eventstore.Position, max int) ([]eventstore.Event, error) {
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	if t.IsZero() {
		return nil, fmt.Errorf("%w: read of a tenant without an id", eventstore.ErrInvalid)
	}
	end, ok, err := s.lastAll(ctx)
	if err != nil || !ok {
		return nil, err
	}
	if encodePos(end.Commit) < from {
		return nil, nil
	}
	var out []eventstore.Event
	_, err = s.scan(ctx, t, from, &end.Commit, nil, func(e eventstore.Event) (bool, error) {
		out = append(out, e)
		return max > 0 && len(out) >= max, nil
	})
	if err != nil {
		var d *droppedError
		if errors.As(err, &d) {
			err = d.err
		}
		return nil, mapErr("read tenant "+t.String(), err)
	}
	return out, nil
}

// Subscribe implements eventstore.Store: catch-up from opts.From, then live, filtered on the server by
// stream prefix. When the server or the connection drops the subscription it re-subscribes after the
// last delivered event (delivery stays at-least-once and in order).
func (s *Store) Subscribe(ctx context.Context, opts eventstore.SubscribeOptions, h eventstore.Handler) error {
	if err := s.checkOpen(); err != nil {
		return err
	}
	from := opts.From
	var live *liveEnd
	if opts.CaughtUp != nil {
		// The live end is the server's CaughtUp message (EventStoreDB 23.10 and later) or, from
		// older servers that never send it, the first checkpoint or event at or past the end of $all
		// as it stood when the subscription began.
		end, ok, err := s.lastAll(ctx)
		if err != nil {
			return mapErr("subscribe", err)
		}
		live = &liveEnd{report: opts.CaughtUp}
		if ok {
			live.commit, live.at = end.Commit, encodePos(end.Commit)
		}
	}
	for {
		last, err := s.scan(ctx, opts.Tenant, from, nil, live, func(e eventstore.Event) (bool, error) {
			return false, h(ctx, e)
		})
		if last > 0 {
			from = last + 1
		}
		var d *droppedError
		if err != nil && !errors.As(err, &d) {
			return err // the handler's error, or an event that cannot be read
		}
		if ctx.Err() != nil || err == nil {
			return nil
		}
		if s.closed.Load() {
			return eventstore.ErrClosed
		}
		s.log.Warn("eventstoredb: subscription dropped, re-subscribing", "tenant", opts.Tenant.String(), "from", uint64(from), "err", d.err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(s.cfg.ResubscribeDelay):
		}
	}
}

// liveEnd reports a subscription's live end once (SubscribeOptions.CaughtUp).
type liveEnd struct {
	report func(context.Context, eventstore.Position) error
	commit uint64              // the commit position of the last event of $all when it began
	at     eventstore.Position // its port position (Start for an empty store)
	done   bool
}

// reached reports the live end, once, when a subscription message shows it: the server's CaughtUp,
// or a checkpoint or event at or past the commit position $all ended at.
func (l *liveEnd) reached(ctx context.Context, caughtUp bool, commit uint64) error {
	if l == nil || l.done || (!caughtUp && commit < l.commit) {
		return nil
	}
	l.done = true
	at := l.at
	if p := encodePos(commit); !caughtUp && p > at {
		at = p
	}
	return l.report(ctx, at)
}

// droppedError is a subscription the server or the transport ended: Subscribe retries it.
type droppedError struct{ err error }

func (e *droppedError) Error() string { return "subscription dropped: " + e.err.Error() }
func (e *droppedError) Unwrap() error { return e.err }

// scan subscribes to $all filtered on t's stream prefix (every tenant's when t is zero) from the
// port position from, and hands each readable event to deliver. With end set it stops after the
// event at commit position end (or a checkpoint past it, or caught-up); without, it runs until ctx
// ends or the subscription drops. It returns the position of the last event delivered.
func (s *Store) scan(ctx context.Context, t tenant.ID, from eventstore.Position, end *uint64, live *liveEnd, deliver func(eventstore.Event) (bool, error)) (eventstore.Position, error) {
	var last eventstore.Position
	start, err := s.startPosition(ctx, from)
	if err != nil {
		return last, &droppedError{err: err}
	}
	prefix := s.ns + allTenantsPrefix
	if !t.IsZero() {
		prefix = s.ns + t.StreamPrefix()
	}
	c := s.conn()
	sub, err := c.SubscribeToAll(ctx, esc.SubscribeToAllOptions{
		From: start,
		Filter: &esc.SubscriptionFilter{
			Type: esc.StreamFilterType,
			// "$$" + prefix brings the metadata of the same streams, so hidden events stay hidden
			// when $tb or $maxAge change during a subscription.
			Prefixes: []string{prefix, "$$" + prefix},
		},
		MaxSearchWindow:    s.cfg.SearchWindow,
		CheckpointInterval: 1,
	})
	if err != nil {
		return last, &droppedError{err: s.fail(c, "subscribe to $all", err)}
	}
	defer sub.Close()
	meta := map[string]eventstore.StreamMetadata{}
	for {
		msg := sub.Recv()
		switch {
		case msg.SubscriptionDropped != nil:
			return last, &droppedError{err: msg.SubscriptionDropped.Error}
		case msg.CheckPointReached != nil:
			if end != nil && msg.CheckPointReached.Commit >= *end {
				return last, nil
			}
			if err := live.reached(ctx, false, msg.CheckPointReached.Commit); err != nil {
				return last, err
			}
		case msg.CaughtUp != nil:
			if end != nil {
				return last, nil
			}
			if err := live.reached(ctx, true, 0); err != nil {
				return last, err
			}
		case msg.EventAppeared != nil:
			rec := msg.EventAppeared.OriginalEvent()
			if rec == nil {
				continue
			}
			commit := rec.Position.Commit
			if end != nil && commit > *end {
				return last, nil
			}
			out, err := s.consider(ctx, t, rec, from, meta, deliver)
			if err != nil {
				return last, err
			}
			if out != skipped {
				last = encodePos(commit)
			}
			if out == stopped || (end != nil && commit >= *end) {
				return last, nil
			}
			if err := live.reached(ctx, false, commit); err != nil {
				return last, err
			}
		}
	}
}

type outcome int

const (
	skipped outcome = iota
	delivered
	stopped
)

// consider decides what one recorded event of a scan is: a metadata change (remembered), another
// stream's or a hidden event (skipped), or one to deliver.
func (s *Store) consider(ctx context.Context, t tenant.ID, rec *esc.RecordedEvent, from eventstore.Position, meta map[string]eventstore.StreamMetadata, deliver func(eventstore.Event) (bool, error)) (outcome, error) {
	if strings.HasPrefix(rec.StreamID, "$$") {
		name := rec.StreamID[2:]
		if rec.EventType == "$metadata" {
			md, err := parseMetadata(name, rec.Data)
			if err != nil {
				s.log.Warn("eventstoredb: unreadable stream metadata, will re-read it", "stream", name, "err", err)
				delete(meta, name)
			} else {
				meta[name] = md
			}
		}
		return skipped, nil
	}
	if strings.HasPrefix(rec.StreamID, "$") {
		return skipped, nil
	}
	e, err := s.decode(rec)
	if err != nil {
		return skipped, err
	}
	if !t.IsZero() && e.Tenant != t {
		// The server filter should make this impossible; tenant isolation does not rest on it alone.
		s.log.Error("eventstoredb: tenant subscription received another tenant's event; skipped", "tenant", t.String(), "stream", e.Stream)
		return skipped, nil
	}
	if e.Position != 0 && e.Position < from {
		return skipped, nil
	}
	md, ok := meta[rec.StreamID]
	if !ok {
		if md, err = s.metadata(ctx, rec.StreamID); err != nil {
			return skipped, &droppedError{err: err}
		}
		meta[rec.StreamID] = md
	}
	if !md.Readable(e.Revision, e.Time, s.now()) {
		return skipped, nil
	}
	stop, err := deliver(e)
	if err != nil {
		return skipped, err
	}
	if stop {
		return stopped, nil
	}
	return delivered, nil
}

// startPosition turns a port position into where a subscription starts (subscriptions deliver the
// events strictly after their start).
func (s *Store) startPosition(ctx context.Context, from eventstore.Position) (esc.AllPosition, error) {
	d := decodeFrom(from)
	switch {
	case d.start:
		return esc.Start{}, nil
	case d.after:
		return esc.Position{Commit: d.commit, Prepare: d.commit}, nil
	}
	prev, ok, err := s.allBefore(ctx, esc.Position{Commit: d.commit, Prepare: d.commit})
	if err != nil {
		return nil, err
	}
	if !ok {
		return esc.Start{}, nil
	}
	return prev, nil
}
