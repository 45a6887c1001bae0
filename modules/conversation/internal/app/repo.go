package app

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/crispy-enigma/crispy/modules/conversation/events"
	"github.com/crispy-enigma/crispy/modules/conversation/internal/domain"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// Cache keeps folded sessions by (tenant, session) with their revision. A load reads only the events
// after the cached revision, so a long session costs one short read, and another replica's appends
// are still seen. Cached values are never mutated (copy on apply).
type Cache struct {
	mu  sync.Mutex
	m   map[string]*domain.Session
	max int
}

// NewCache keeps up to max sessions.
func NewCache(max int) *Cache { return &Cache{m: map[string]*domain.Session{}, max: max} }

func cacheKey(t tenant.ID, id string) string { return t.String() + "/" + id }

func (c *Cache) get(k string) *domain.Session {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[k]
}

func (c *Cache) put(k string, s *domain.Session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.m[k]; ok && old.Exists && s.Revision < old.Revision {
		return // a newer fold is already cached
	}
	if _, ok := c.m[k]; !ok && len(c.m) >= c.max {
		for victim := range c.m { // evict an arbitrary entry: any is cheap to rebuild
			delete(c.m, victim)
			break
		}
	}
	c.m[k] = s
}

func (c *Cache) drop(k string) {
	c.mu.Lock()
	delete(c.m, k)
	c.mu.Unlock()
}

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
	from := uint64(0)
	if cached != nil && cached.Exists {
		from = cached.Revision + 1
	}
	evs, err := s.Store.ReadStream(ctx, st, from, 0)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", st, err)
	}
	if len(evs) == 0 {
		if cached == nil {
			return &domain.Session{ID: id}, nil
		}
		return cached, nil
	}
	var next *domain.Session
	if cached != nil && cached.Exists && evs[0].Revision == from {
		next = cached.Clone()
	} else {
		// First read, or the stream was truncated under us: fold what is readable from scratch.
		if from > 0 {
			if evs, err = s.Store.ReadStream(ctx, st, 0, 0); err != nil {
				return nil, fmt.Errorf("read %s: %w", st, err)
			}
		}
		next = &domain.Session{}
	}
	for _, e := range evs {
		if err := next.Apply(e); err != nil {
			return nil, err
		}
	}
	if next.ID == "" {
		next.ID = id
	}
	s.Cache.put(k, next)
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
		res, err := s.Store.Append(ctx, st, sess.Expected(), evs...)
		if errors.Is(err, eventstore.ErrConflict) && attempt < 50 {
			s.Metrics.conflict()
			continue
		}
		if err != nil {
			return nil, eventstore.AppendResult{}, fmt.Errorf("append to %s: %w", st, err)
		}
		next := sess.Clone()
		for _, e := range res.Events {
			if err := next.Apply(e); err != nil {
				return nil, res, err
			}
		}
		s.Cache.put(cacheKey(t, id), next)
		return next, res, nil
	}
}
