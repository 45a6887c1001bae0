package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/crispy-enigma/crispy/modules/conversation/events"
	"github.com/crispy-enigma/crispy/modules/conversation/internal/domain"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/request"
	"github.com/crispy-enigma/crispy/platform/sealing"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// A long session is folded from snapshot segments kept in the event store, in
// t-{tenant}.snapshot-session-{id}: every replica reads the same ones, they outlive a restart, and
// a deletion makes them unreadable the way it makes the session's own events unreadable (an event,
// then truncation), so there is no second place where deleted content could survive. Each segment
// holds the messages since the previous one (domain.Seal), so a session's text is stored twice, not
// once per snapshot.

func snapshotStream(t tenant.ID, id string) (tenant.Stream, error) {
	return tenant.NewStream(t, events.SnapshotCategory, events.SnapshotEntityPrefix+id)
}

// readSegments folds the session's snapshot segments: the fold at the last usable one (nil: none)
// and what the snapshot stream holds.
func (s *Service) readSegments(ctx context.Context, t tenant.ID, id string) (*domain.Session, domain.Seal, error) {
	sst, err := snapshotStream(t, id)
	if err != nil {
		return nil, domain.Seal{}, err
	}
	evs, err := s.Store.ReadStream(ctx, sst, 0, 0)
	if err != nil {
		return nil, domain.Seal{}, fmt.Errorf("read %s: %w", sst, err)
	}
	return domain.FromSegments(evs)
}

// keep caches next, a fold the caller owns, after appending the segments cut while it was folded;
// if they cannot be appended, the fold (which counts them as sealed) is not cached, and the next
// load folds afresh. A snapshot only saves reading time: its failures are logged, not returned.
func (s *Service) keep(ctx context.Context, t tenant.ID, next *domain.Session, segs []events.SessionSnapshotted) {
	k := cacheKey(t, next.ID)
	if len(segs) > 0 && !s.writeSegments(ctx, t, next, segs) {
		s.Cache.drop(k)
		return
	}
	s.Cache.put(k, next)
}

// writeSegments appends segs (oldest first, the last one at sess's revision) to the session's
// snapshot stream, in appends of about SegmentBytes of text, and records the stream's revision in
// sess. It reports whether all were appended.
//
// Segments hold content, so they must never land after a deletion of the session. They are appended
// expecting the snapshot stream's revision learnt before checking that the session has no event
// after sess: a deletion appends SessionDeleted to the session, then SessionSnapshotsDropped to the
// snapshot stream; if the check came before the deletion, the drop changed the revision and the
// append is refused; if after, the check saw it.
func (s *Service) writeSegments(ctx context.Context, t tenant.ID, sess *domain.Session, segs []events.SessionSnapshotted) bool {
	st, err := sessionStream(t, sess.ID)
	if err != nil {
		return false
	}
	sst, err := snapshotStream(t, sess.ID)
	if err != nil {
		return false
	}
	ctx = request.With(ctx, request.Info{ID: request.From(ctx).ID, Actor: "system:conversation-snapshot"})
	ctx = sealing.WithKey(ctx, domain.KeyID(sess.ID, sess.Life)) // segments hold the life's content
	seal := sess.Sealed
	from := uint64(0)
	if seal.StreamKnown && seal.StreamExists {
		from = seal.StreamRev + 1
	}
	newer, err := s.Store.ReadStream(ctx, sst, from, 0)
	if err != nil {
		s.Log.WarnContext(ctx, "read session snapshots", "error", err, "stream", sst.String())
		return false
	}
	for _, e := range newer {
		if seal.StreamKnown || e.Type == events.TypeSessionSnapshotted {
			return false // segments this fold does not chain onto (another replica's): fold afresh
		}
		seal.StreamRev, seal.StreamExists = e.Revision, true
	}
	if after, err := s.Store.ReadStream(ctx, st, sess.Revision+1, 1); err != nil || len(after) > 0 {
		return false // the session moved on (or was deleted): fold afresh
	}
	expected := seal.Expected()
	for len(segs) > 0 {
		var batch []eventstore.EventData
		text := 0
		for len(segs) > 0 && (len(batch) == 0 || text+domain.SegmentText(segs[0]) <= domain.SegmentBytes) {
			ev, err := eventstore.NewEventData(events.TypeSessionSnapshotted, segs[0])
			if err != nil {
				return false
			}
			batch, text, segs = append(batch, ev), text+domain.SegmentText(segs[0]), segs[1:]
		}
		res, err := s.Store.Append(ctx, sst, expected, batch...)
		if err != nil {
			if !errors.Is(err, eventstore.ErrConflict) { // a conflict: a deletion or another replica came first
				s.Log.WarnContext(ctx, "append session snapshot", "error", err, "stream", sst.String())
			}
			return false
		}
		s.Metrics.snapshot(len(batch))
		expected = eventstore.Exact(res.NextExpected)
		sess.Sealed.StreamKnown, sess.Sealed.StreamRev, sess.Sealed.StreamExists = true, res.NextExpected, true
	}
	return true
}

// dropSnapshots records that a deleted or expired session's segments are dropped
// (SessionSnapshotsDropped): they were sealed under the life's key, destroyed with the session, so
// they are erased where they lie; the record makes a snapshot written concurrently from an older
// fold conflict, and tells the audit why the segments read as erased. Nothing is truncated: the
// tenant's Merkle log covers every event.
func (s *Service) dropSnapshots(ctx context.Context, t tenant.ID, id, reason string) error {
	sst, err := snapshotStream(t, id)
	if err != nil {
		return err
	}
	ev, err := eventstore.NewEventData(events.TypeSessionSnapshotsDropped, events.SessionSnapshotsDropped{SessionID: id, Reason: reason})
	if err != nil {
		return err
	}
	if _, err := s.Store.Append(ctx, sst, eventstore.Any, ev); err != nil {
		return fmt.Errorf("append to %s: %w", sst, err)
	}
	return nil
}
