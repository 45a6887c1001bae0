package app

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/crispy-enigma/crispy/modules/conversation/events"
	"github.com/crispy-enigma/crispy/modules/conversation/internal/domain"
	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/request"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

func checkSessionID(id string) error {
	if !domain.ValidSessionID(id) {
		return apperr.Invalid("invalid_session_id", "path.sessionId", domain.SessionIDRule)
	}
	return nil
}

// History returns a live session of the tenant, or 404.
func (s *Service) History(ctx context.Context, t tenant.ID, id string) (*domain.Session, error) {
	if err := checkSessionID(id); err != nil {
		return nil, err
	}
	sess, err := s.load(ctx, t, id)
	if err != nil {
		return nil, err
	}
	if !sess.Live() {
		return nil, errSessionNotFound()
	}
	return sess, nil
}

// Delete appends SessionDeleted and makes everything before it unreadable.
func (s *Service) Delete(ctx context.Context, t tenant.ID, id string) error {
	if err := checkSessionID(id); err != nil {
		return err
	}
	rid := request.From(ctx).ID
	return s.end(ctx, t, id, func(*domain.Session) (eventstore.EventData, error) {
		return eventstore.NewEventData(events.TypeSessionDeleted, events.SessionDeleted{SessionID: id, RequestID: rid})
	})
}

// end records a deletion or expiry when the session is live, then truncates the stream before it and
// drops its snapshot segments. A session already ended is 404, but what a failure left readable
// after its deletion (the store refused the truncation) is made unreadable then: retrying the
// DELETE finishes it.
func (s *Service) end(ctx context.Context, t tenant.ID, id string, make func(*domain.Session) (eventstore.EventData, error)) error {
	var last *domain.Session // the fold the deletion was decided on
	var ended *domain.Session
	var reason string
	_, res, err := s.update(ctx, t, id, func(cur *domain.Session) ([]eventstore.EventData, error) {
		if !cur.Live() {
			if cur.Deleted || cur.Expired {
				ended = cur
			}
			return nil, errSessionNotFound()
		}
		last = cur
		ev, err := make(cur)
		reason = ev.Type
		if err != nil {
			if errors.Is(err, errNothing) {
				return nil, err
			}
			return nil, err
		}
		return []eventstore.EventData{ev}, nil
	})
	if ended != nil && apperr.KindOf(err) == apperr.KindNotFound {
		if cerr := s.finishEnd(ctx, t, id, ended); cerr != nil {
			s.Log.WarnContext(ctx, "make an ended session's content unreadable", "error", cerr, "session", id, "tenant", t.String())
		}
	}
	if err != nil {
		return err
	}
	st, err := sessionStream(t, id)
	if err != nil {
		return err
	}
	before := res.NextExpected
	if err := s.Store.SetStreamMetadata(ctx, st, eventstore.StreamMetadata{TruncateBefore: &before}); err != nil {
		return fmt.Errorf("truncate %s before %d: %w", st, before, err)
	}
	s.Cache.drop(cacheKey(t, id))
	if last.MayHaveSegments() {
		if err := s.dropSnapshots(ctx, t, id, reason); err != nil {
			return err
		}
	}
	return nil
}

// finishEnd makes unreadable what an earlier deletion or expiry of the session left readable: its
// events before the deletion, and snapshot segments.
func (s *Service) finishEnd(ctx context.Context, t tenant.ID, id string, ended *domain.Session) error {
	st, err := sessionStream(t, id)
	if err != nil {
		return err
	}
	first, err := s.Store.ReadStream(ctx, st, 0, 1)
	if err != nil {
		return fmt.Errorf("read %s: %w", st, err)
	}
	if len(first) > 0 && first[0].Revision < ended.EndRevision {
		before := ended.EndRevision
		if err := s.Store.SetStreamMetadata(ctx, st, eventstore.StreamMetadata{TruncateBefore: &before}); err != nil {
			return fmt.Errorf("truncate %s before %d: %w", st, before, err)
		}
		s.Cache.drop(cacheKey(t, id))
	}
	sst, err := snapshotStream(t, id)
	if err != nil {
		return err
	}
	snaps, err := s.Store.ReadStream(ctx, sst, 0, 0)
	if err != nil {
		return fmt.Errorf("read %s: %w", sst, err)
	}
	if slices.ContainsFunc(snaps, func(e eventstore.Event) bool { return e.Type == events.TypeSessionSnapshotted }) {
		reason := events.TypeSessionDeleted
		if ended.Expired {
			reason = events.TypeSessionExpired
		}
		return s.dropSnapshots(ctx, t, id, reason)
	}
	return nil
}

// List is GET /sessions.
func (s *Service) List(_ context.Context, t tenant.ID, limit int, cursor string) ([]domain.Summary, string, error) {
	if limit <= 0 {
		limit = 20
	}
	rows, next, err := s.Index.List(t.String(), limit, cursor)
	if errors.Is(err, domain.ErrBadCursor) {
		return nil, "", apperr.Invalid("invalid_cursor", "query.cursor", "cursor is not one this API returned")
	}
	return rows, next, err
}

// View is a session as it stood at a time (the audit API).
type View struct {
	SessionID string
	Exists    bool // any readable event up to asOf
	Live      bool
	Deleted   bool
	Expired   bool
	Title     string
	Messages  []domain.Message
	Revision  uint64
	AsOf      time.Time
}

// SessionAsOf folds the readable events of a session up to asOf. Content made unreadable by a
// deletion or expiry stays unreadable: the view then shows that the deletion happened.
func (s *Service) SessionAsOf(ctx context.Context, t tenant.ID, id string, asOf time.Time) (View, error) {
	if err := checkSessionID(id); err != nil {
		return View{}, err
	}
	st, err := sessionStream(t, id)
	if err != nil {
		return View{}, err
	}
	evs, err := s.Store.ReadStream(ctx, st, 0, 0)
	if err != nil {
		return View{}, fmt.Errorf("read %s: %w", st, err)
	}
	sess := &domain.Session{ID: id}
	for _, e := range evs {
		if e.Time.After(asOf) {
			break
		}
		if err := sess.Apply(e); err != nil {
			return View{}, err
		}
	}
	if !sess.Exists {
		return View{}, errSessionNotFound()
	}
	return View{SessionID: id, Exists: true, Live: sess.Live(), Deleted: sess.Deleted, Expired: sess.Expired, Title: sess.Title,
		Messages: sess.Messages, Revision: sess.Revision, AsOf: asOf}, nil
}

// Project feeds the read models (session list, budget ledger) from the module's events.
func (s *Service) Project(_ context.Context, e eventstore.Event) error {
	st, err := e.StreamName()
	if err != nil || (st.Category() != events.SessionCategory && st.Category() != events.CompletionsCategory) {
		return nil
	}
	t, id := e.Tenant.String(), st.Entity()
	switch e.Type {
	case events.TypeCompletionRecorded: // a stateless /v1 call: the budget only
		var ev events.CompletionRecorded
		if err := e.Decode(&ev); err != nil {
			return err
		}
		s.Ledger.Count(t, ev.CallID, int64(ev.Usage.TotalTokens), e.Time, s.Now())
	case events.TypeSessionStarted:
		var ev events.SessionStarted
		if err := e.Decode(&ev); err != nil {
			return err
		}
		s.Index.Started(t, id, ev.Title, e.Time, e.Revision)
	case events.TypeUserMessageAdded:
		s.Index.Message(t, id, e.Time, e.Revision)
		s.Index.TurnOpened(t, id)
	case events.TypeAssistantMessageCompleted:
		var ev events.AssistantMessageCompleted
		if err := e.Decode(&ev); err != nil {
			return err
		}
		s.Ledger.Count(t, ev.TurnID, int64(ev.Usage.TotalTokens), e.Time, s.Now())
		s.Index.Message(t, id, e.Time, e.Revision)
		s.Index.TurnClosed(t, id)
	case events.TypeAssistantMessageFailed:
		var ev events.AssistantMessageFailed
		if err := e.Decode(&ev); err != nil {
			return err
		}
		s.Ledger.Count(t, ev.TurnID, int64(ev.Usage.TotalTokens), e.Time, s.Now())
		s.Index.Touched(t, id, e.Time, e.Revision)
		s.Index.TurnClosed(t, id)
	case events.TypeSessionDeleted, events.TypeSessionExpired:
		s.Index.Removed(t, id)
	}
	return nil
}

// ProjectedTypes are the event types Project reads.
var ProjectedTypes = []string{events.TypeSessionStarted, events.TypeUserMessageAdded, events.TypeAssistantMessageCompleted,
	events.TypeAssistantMessageFailed, events.TypeSessionDeleted, events.TypeSessionExpired, events.TypeCompletionRecorded}
