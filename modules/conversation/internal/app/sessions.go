package app

import (
	"context"
	"errors"
	"fmt"
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
	if !sess.Live() || !ViewerOf(ctx).Sees(sess.UserID) {
		return nil, errSessionNotFound()
	}
	return sess, nil
}

// ViewerOf is who the request reads sessions as: its user, and whether its key holds the audit scope.
func ViewerOf(ctx context.Context) domain.Viewer {
	info := request.From(ctx)
	return domain.Viewer{User: info.User, Auditor: info.Auditor}
}

// ownedBy reports whether user may use sess: a session started with a user id (x-user-id, or the
// user a key is bound to) is that user's alone; others get 404, as for a session that does not
// exist. A session started without one is the tenant's. Reading is wider (Viewer): a key with the
// audit scope reads any session of the tenant, but acts (a turn, a deletion) only as its user.
func ownedBy(sess *domain.Session, user string) bool {
	return sess.UserID == "" || sess.UserID == user
}

// Delete appends SessionDeleted and erases the content before it (its data key is destroyed).
func (s *Service) Delete(ctx context.Context, t tenant.ID, id string) error {
	if err := checkSessionID(id); err != nil {
		return err
	}
	rid := request.From(ctx).ID
	user := request.From(ctx).User
	return s.end(ctx, t, id, func(cur *domain.Session) (eventstore.EventData, error) {
		if !ownedBy(cur, user) {
			return eventstore.EventData{}, errSessionNotFound()
		}
		return eventstore.NewEventData(events.TypeSessionDeleted, events.SessionDeleted{SessionID: id, RequestID: rid})
	})
}

// end records a deletion or expiry when the session is live, then erases the life's content: its
// data key is destroyed, so its events and snapshot segments read as erased wherever they are (the
// events stay in the log: removing them would break the tenant's Merkle log), and what this
// replica holds of it in memory (the fold cache, a finished turn kept for resumption) is dropped.
// A session already ended is 404, but what a failure left undone after its deletion (the key not
// destroyed) is finished then: retrying the DELETE completes it.
func (s *Service) end(ctx context.Context, t tenant.ID, id string, make func(*domain.Session) (eventstore.EventData, error)) error {
	var last *domain.Session // the fold the deletion was decided on
	var ended *domain.Session
	var reason string
	_, _, err := s.update(ctx, t, id, func(cur *domain.Session) ([]eventstore.EventData, error) {
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
			return nil, err
		}
		return []eventstore.EventData{ev}, nil
	})
	if ended != nil && apperr.KindOf(err) == apperr.KindNotFound {
		if cerr := s.finishEnd(ctx, t, id, ended); cerr != nil {
			s.Log.WarnContext(ctx, "erase an ended session's content", "error", cerr, "session", id, "tenant", t.String())
		}
	}
	if err != nil {
		return err
	}
	if err := s.erase(ctx, t, id, last.Life); err != nil {
		return err
	}
	if last.MayHaveSegments() {
		if err := s.dropSnapshots(ctx, t, id, reason); err != nil {
			return err
		}
	}
	return nil
}

// erase destroys the data key of the session's life and forgets what this replica holds of it.
func (s *Service) erase(ctx context.Context, t tenant.ID, id string, life uint64) error {
	s.Forget(t, id)
	if s.Keys == nil {
		return nil
	}
	if err := s.Keys.Destroy(ctx, t, domain.KeyID(id, life)); err != nil {
		return fmt.Errorf("erase session %s: destroy its key: %w", id, err)
	}
	s.Forget(t, id) // a load between the first Forget and the destruction cached the plaintext again
	return nil
}

// Forget drops what this replica holds of a session in memory: its fold and its last turn kept for
// resumption. Every replica calls it when it sees the session's deletion or expiry.
func (s *Service) Forget(t tenant.ID, id string) {
	if s.Cache != nil {
		s.Cache.drop(cacheKey(t, id))
	}
	if s.Hub != nil {
		s.Hub.forget(t, id)
	}
}

// finishEnd completes an earlier deletion or expiry of the session that a failure left unfinished:
// the life's key destroyed (again: destroying is idempotent), and its snapshot segments' drop
// recorded when segments were written after the last drop.
func (s *Service) finishEnd(ctx context.Context, t tenant.ID, id string, ended *domain.Session) error {
	if err := s.erase(ctx, t, id, ended.Life); err != nil {
		return err
	}
	sst, err := snapshotStream(t, id)
	if err != nil {
		return err
	}
	snaps, err := s.Store.ReadStream(ctx, sst, 0, 0)
	if err != nil {
		return fmt.Errorf("read %s: %w", sst, err)
	}
	if n := len(snaps); n > 0 && snaps[n-1].Type == events.TypeSessionSnapshotted {
		reason := events.TypeSessionDeleted
		if ended.Expired {
			reason = events.TypeSessionExpired
		}
		return s.dropSnapshots(ctx, t, id, reason)
	}
	return nil
}

// List is GET /sessions: a page of the session list read model (503 catching_up until it has
// caught up with the store).
func (s *Service) List(ctx context.Context, t tenant.ID, limit int, cursor string) ([]domain.Summary, string, error) {
	if limit <= 0 {
		limit = 20
	}
	// A session started with a user id is listed to that user (and audit-scope keys) only, as History
	// answers 404 to others.
	rows, next, err := s.Sessions.List(ctx, t, ViewerOf(ctx), limit, cursor)
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
