package esdb

import (
	"context"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"time"

	esc "github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"

	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// head is what an append needs to know about a stream before writing: its last revision and the hash
// the chain continues from.
type head struct {
	exists bool
	rev    uint64
	hash   string // "" when the last event is hidden ($tb/$maxAge) and the chain restarts
}

// Append implements eventstore.Store.
func (s *Store) Append(ctx context.Context, stream tenant.Stream, expected eventstore.ExpectedRevision, data ...eventstore.EventData) (eventstore.AppendResult, error) {
	if err := s.checkOpen(); err != nil {
		return eventstore.AppendResult{}, err
	}
	// Ids are fixed once, so every attempt appends the same events (the server deduplicates by id).
	data = append([]eventstore.EventData(nil), data...)
	for i := range data {
		if data[i].ID == "" {
			u, err := uuid.NewV7()
			if err != nil {
				return eventstore.AppendResult{}, fmt.Errorf("event id: %w", err)
			}
			data[i].ID = u.String()
		}
	}
	now := s.now()
	// Validate before touching the server: an invalid append must not cost a round trip.
	if _, err := eventstore.Prepare(ctx, stream, 0, "", now, data); err != nil {
		return eventstore.AppendResult{}, err
	}
	name := s.serverName(stream)
	h, err := s.head(ctx, name)
	if err != nil {
		return eventstore.AppendResult{}, err
	}
	for attempt := 0; ; attempt++ {
		if !expected.Check(h.rev, h.exists) {
			return eventstore.AppendResult{}, &eventstore.ConflictError{Stream: stream.String(), Expected: expected, Actual: h.rev, Exists: h.exists}
		}
		first := uint64(0)
		var send esc.ExpectedRevision = esc.NoStream{}
		if h.exists {
			first, send = h.rev+1, esc.Revision(h.rev)
		}
		evs, err := eventstore.Prepare(ctx, stream, first, h.hash, now, data)
		if err != nil {
			return eventstore.AppendResult{}, err
		}
		proposed := make([]esc.EventData, len(evs))
		for i, e := range evs {
			if proposed[i], err = toProposed(e); err != nil {
				return eventstore.AppendResult{}, fmt.Errorf("%w: %v", eventstore.ErrInvalid, err)
			}
		}
		c := s.conn()
		res, err := c.AppendToStream(ctx, name, esc.AppendToStreamOptions{ExpectedRevision: send}, proposed...)
		if err == nil {
			last := first + uint64(len(evs)) - 1
			if res.NextExpectedVersion != last {
				// The server placed the events elsewhere than the envelopes say: their hashes will not
				// verify. Say so loudly; this means the stream moved in a way a read did not show.
				s.log.Error("eventstoredb: appended events landed at an unexpected revision", "stream", name, "want", last, "got", res.NextExpectedVersion)
				return eventstore.AppendResult{}, fmt.Errorf("%w: append to %s landed at revision %d, envelopes say %d", eventstore.ErrCorrupt, name, res.NextExpectedVersion, last)
			}
			// The server reports one position for the write; it is the last event's.
			pos := encodePos(res.CommitPosition)
			evs[len(evs)-1].Position = pos
			return eventstore.AppendResult{NextExpected: last, Position: pos, Events: evs}, nil
		}
		if !hasCode(err, esc.ErrorCodeWrongExpectedVersion) {
			return eventstore.AppendResult{}, s.fail(c, "append to "+name, err)
		}
		// Someone moved the stream between our read and our write, or its last events are hidden.
		fresh, rerr := s.head(ctx, name)
		if rerr != nil {
			return eventstore.AppendResult{}, rerr
		}
		if !fresh.exists {
			// The read shows nothing but the server has events: all of them are hidden by $tb or
			// $maxAge. The server's answer names the current revision; the chain restarts there.
			if rev, ok := currentRevision(err); ok {
				fresh = head{exists: true, rev: rev}
			}
		}
		retry := expected.IsAny() || expected.IsStreamExists() || fresh != h
		if !retry || attempt >= s.cfg.AppendRetries {
			return eventstore.AppendResult{}, &eventstore.ConflictError{Stream: stream.String(), Expected: expected, Actual: fresh.rev, Exists: fresh.exists}
		}
		h = fresh
	}
}

// gotRevision finds the current revision in the client's wrong-expected-version message ("expecting
// 'no_stream' but got '7'"): the v4 client keeps the server's number only in its text.
var gotRevision = regexp.MustCompile(`but got '(\d+)'`)

func currentRevision(err error) (uint64, bool) {
	m := gotRevision.FindStringSubmatch(err.Error())
	if m == nil {
		return 0, false
	}
	n, perr := strconv.ParseUint(m[1], 10, 64)
	return n, perr == nil
}

// head reads the stream's last event (backwards, one event).
func (s *Store) head(ctx context.Context, name string) (head, error) {
	return retryRenewed(func() (head, error) { return s.headOnce(ctx, name) })
}

func (s *Store) headOnce(ctx context.Context, name string) (head, error) {
	c := s.conn()
	rs, err := c.ReadStream(ctx, name, esc.ReadStreamOptions{Direction: esc.Backwards, From: esc.End{}}, 1)
	if err != nil {
		return head{}, s.fail(c, "read head of "+name, err)
	}
	defer rs.Close()
	ev, err := recvRead(rs)
	switch {
	case err == nil:
	case isEOF(err) || hasCode(err, esc.ErrorCodeResourceNotFound):
		return head{}, nil
	default:
		return head{}, s.fail(c, "read head of "+name, err)
	}
	e, err := s.decode(ev.OriginalEvent())
	if err != nil {
		return head{}, fmt.Errorf("read head of %s: %w", name, err)
	}
	return head{exists: true, rev: e.Revision, hash: e.Hash}, nil
}

// SetStreamMetadata implements eventstore.Store. MaxAge becomes $maxAge in whole seconds, rounded up
// (the server counts seconds); TruncateBefore becomes $tb.
func (s *Store) SetStreamMetadata(ctx context.Context, stream tenant.Stream, md eventstore.StreamMetadata) error {
	if err := s.checkOpen(); err != nil {
		return err
	}
	if stream.IsZero() {
		return fmt.Errorf("%w: stream without tenant", eventstore.ErrInvalid)
	}
	if md.MaxAge < 0 {
		return fmt.Errorf("%w: negative max age for %s", eventstore.ErrInvalid, stream)
	}
	var m esc.StreamMetadata
	if md.MaxAge > 0 {
		m.SetMaxAge(time.Duration(math.Ceil(md.MaxAge.Seconds())) * time.Second)
	}
	if md.TruncateBefore != nil {
		m.SetTruncateBefore(*md.TruncateBefore)
	}
	name := s.serverName(stream)
	c := s.conn()
	if _, err := c.SetStreamMetadata(ctx, name, esc.AppendToStreamOptions{ExpectedRevision: esc.Any{}}, m); err != nil {
		return s.fail(c, "set metadata of "+name, err)
	}
	return nil
}

// StreamMetadata implements eventstore.Store.
func (s *Store) StreamMetadata(ctx context.Context, stream tenant.Stream) (eventstore.StreamMetadata, error) {
	if err := s.checkOpen(); err != nil {
		return eventstore.StreamMetadata{}, err
	}
	if stream.IsZero() {
		return eventstore.StreamMetadata{}, fmt.Errorf("%w: stream without tenant", eventstore.ErrInvalid)
	}
	return s.metadata(ctx, s.serverName(stream))
}

// metadata reads the newest event of the stream's $$ metadata stream. The client's GetStreamMetadata
// reads that stream forwards from its start (the oldest metadata) unless told otherwise, and reports
// a missing metadata stream as an error; reading it here makes both explicit.
func (s *Store) metadata(ctx context.Context, name string) (eventstore.StreamMetadata, error) {
	c := s.conn()
	rs, err := c.ReadStream(ctx, "$$"+name, esc.ReadStreamOptions{Direction: esc.Backwards, From: esc.End{}}, 1)
	if err != nil {
		return eventstore.StreamMetadata{}, s.fail(c, "read metadata of "+name, err)
	}
	defer rs.Close()
	ev, err := recvRead(rs)
	switch {
	case err == nil:
	case isEOF(err) || hasCode(err, esc.ErrorCodeResourceNotFound):
		return eventstore.StreamMetadata{}, nil
	default:
		return eventstore.StreamMetadata{}, s.fail(c, "read metadata of "+name, err)
	}
	return parseMetadata(name, ev.OriginalEvent().Data)
}

func parseMetadata(name string, data []byte) (eventstore.StreamMetadata, error) {
	if len(data) == 0 || string(data) == "null" {
		return eventstore.StreamMetadata{}, nil
	}
	m, err := esc.StreamMetadataFromJson(data)
	if err != nil {
		return eventstore.StreamMetadata{}, fmt.Errorf("%w: metadata of %s: %v", eventstore.ErrCorrupt, name, err)
	}
	var md eventstore.StreamMetadata
	if a := m.MaxAge(); a != nil {
		md.MaxAge = *a
	}
	if tb := m.TruncateBefore(); tb != nil {
		v := *tb
		md.TruncateBefore = &v
	}
	return md, nil
}
