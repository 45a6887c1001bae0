package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/crispy-enigma/crispy/modules/conversation/events"
	"github.com/crispy-enigma/crispy/modules/conversation/internal/domain"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/sealing"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

func sessionStream(t tenant.ID, id string) (tenant.Stream, error) {
	return tenant.NewStream(t, events.SessionCategory, id)
}

// load returns the session folded up to the store's latest revision. The result is shared: read it,
// never mutate it.
func (s *Service) load(ctx context.Context, t tenant.ID, id string) (*domain.Session, error) {
	st, err := sessionStream(t, id)
	if err != nil {
		return nil, err
	}
	k := cacheKey(t, id)
	cached := s.Cache.get(k)
	if cached == nil || !cached.Exists {
		return s.loadCold(ctx, t, id, st)
	}
	from := cached.Revision + 1
	evs, err := s.Store.ReadStream(ctx, st, from, 0)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", st, err)
	}
	if len(evs) == 0 {
		return cached, nil
	}
	if evs[0].Revision != from {
		// The stream was truncated under us (deleted elsewhere): fold what is readable afresh.
		s.Cache.drop(k)
		return s.loadCold(ctx, t, id, st)
	}
	next := cached.Clone()
	segs, err := next.ApplyCutting(evs, s.Settings.SnapshotEvery)
	if err != nil {
		return nil, err
	}
	s.keep(ctx, t, next, segs)
	return next, nil
}

// loadCold folds a session that is not cached. A short session is folded from its events; a long
// one (a first read of SnapshotEvery events or more) from its snapshot segments and the events
// after them.
func (s *Service) loadCold(ctx context.Context, t tenant.ID, id string, st tenant.Stream) (*domain.Session, error) {
	every := s.Settings.SnapshotEvery
	probe := 0
	if every > 0 {
		probe = every
	}
	evs, err := s.Store.ReadStream(ctx, st, 0, probe)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", st, err)
	}
	if len(evs) == 0 {
		return &domain.Session{ID: id}, nil
	}
	next := &domain.Session{}
	if probe > 0 && len(evs) == probe {
		// Long: the segments first, then the events after them. (The snapshot stream is read after
		// the probe: snapshot() checks, before it appends, that nothing came in between.)
		base, seal, err := s.readSegments(ctx, t, id)
		if err != nil {
			return nil, err
		}
		next.Sealed = seal
		// Segments older than the first readable event were cut off with it (a crash between a
		// deletion and the drop of its segments): they are not used.
		useBase := base != nil && base.Revision >= evs[0].Revision
		from := evs[len(evs)-1].Revision + 1
		if useBase {
			from = base.Revision + 1
		}
		rest, err := s.Store.ReadStream(ctx, st, from, 0)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", st, err)
		}
		switch {
		case useBase && (len(rest) == 0 || rest[0].Revision == from):
			next, evs = base, rest
		case useBase:
			// Truncated after the segments (deleted meanwhile): fold what is readable.
			if evs, err = s.Store.ReadStream(ctx, st, 0, 0); err != nil {
				return nil, fmt.Errorf("read %s: %w", st, err)
			}
		default:
			evs = append(evs, rest...)
		}
	}
	if next.ID == "" {
		next.ID = id // before the cut: segments name it
	}
	segs, err := next.ApplyCutting(evs, every)
	if err != nil {
		return nil, err
	}
	s.keep(ctx, t, next, segs)
	return next, nil
}

// errNothing tells update that the decision was to append nothing.
var errNothing = errors.New("nothing to append")

// update is load-decide-append as one step: decide sees the current fold and returns the events to
// append; a conflict (another turn or replica appended first) reloads and decides again.
func (s *Service) update(ctx context.Context, t tenant.ID, id string, decide func(*domain.Session) ([]eventstore.EventData, error)) (*domain.Session, eventstore.AppendResult, error) {
	st, err := sessionStream(t, id)
	if err != nil {
		return nil, eventstore.AppendResult{}, err
	}
	for attempt := 0; ; attempt++ {
		sess, err := s.load(ctx, t, id)
		if err != nil {
			return nil, eventstore.AppendResult{}, err
		}
		evs, err := decide(sess)
		if err != nil {
			return sess, eventstore.AppendResult{}, err
		}
		res, err := s.Store.Append(sealFor(ctx, sess, evs), st, sess.Expected(), evs...)
		if errors.Is(err, eventstore.ErrConflict) && attempt < 50 {
			s.Metrics.conflict()
			continue
		}
		if err != nil {
			return nil, eventstore.AppendResult{}, fmt.Errorf("append to %s: %w", st, err)
		}
		next := sess.Clone()
		segs, err := next.ApplyCutting(res.Events, s.Settings.SnapshotEvery)
		if err != nil {
			return nil, res, err
		}
		s.keep(ctx, t, next, segs)
		return next, res, nil
	}
}

// sealFor is ctx for an append of evs after the fold sess: the content is sealed under the key of
// the life it belongs to (a SessionStarted among evs begins a new life, at its revision); an append
// to an ended session without a new start carries no content (a turn's outcome recorded after the
// deletion, only counts) and is not sealed, since its life's key is destroyed.
func sealFor(ctx context.Context, sess *domain.Session, evs []eventstore.EventData) context.Context {
	for i, e := range evs {
		if e.Type == events.TypeSessionStarted {
			life := uint64(i)
			if sess.Exists {
				life += sess.Revision + 1
			}
			return sealing.WithKey(ctx, domain.KeyID(sess.ID, life))
		}
	}
	if !sess.Live() {
		return sealing.WithoutContent(ctx)
	}
	return sealing.WithKey(ctx, domain.KeyID(sess.ID, sess.Life))
}
