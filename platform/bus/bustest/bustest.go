// Package bustest helps modules' component tests run their consumers. NewBus and Start run a real
// bus (GoChannel, checkpoints and read models in the test's temporary folders): use them for
// projections and processors.
//
// Registry is the older fake of bus.Registry: every On and Project handler gets its own store
// subscription from the start, filtered by type, with the event's tenant in its context. There are
// no checkpoints, retries or broker: a handler's error is recorded (Errors) and the next event is
// delivered. It goes once every module has moved to bus.Consumers.
package bustest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/crispy-enigma/crispy/platform/bus"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// Registry implements bus.Registry over store subscriptions.
type Registry struct {
	ctx   context.Context
	store eventstore.Store

	mu   sync.Mutex
	subs []*subscription
	errs []error
}

type subscription struct {
	name string
	pos  atomic.Uint64
	done atomic.Bool
}

var _ bus.Registry = (*Registry)(nil)

// New returns a registry whose subscriptions run until ctx ends.
//
// Deprecated: register projections and processors on NewBus and Start it.
func New(ctx context.Context, store eventstore.Store) *Registry {
	return &Registry{ctx: ctx, store: store}
}

// On delivers matching events to h from the start of the store.
func (r *Registry) On(name string, types []string, h bus.Handler) { r.start(name, types, h) }

// Project delivers matching events to h from the start of the store.
func (r *Registry) Project(name string, types []string, h bus.Handler) { r.start(name, types, h) }

func (r *Registry) start(name string, types []string, h bus.Handler) {
	want := map[string]bool{}
	for _, t := range types {
		want[t] = true
	}
	s := &subscription{name: name}
	r.mu.Lock()
	r.subs = append(r.subs, s)
	r.mu.Unlock()
	go func() {
		defer s.done.Store(true)
		err := r.store.Subscribe(r.ctx, eventstore.SubscribeOptions{}, func(ctx context.Context, e eventstore.Event) error {
			if len(want) == 0 || want[e.Type] {
				if err := h(tenant.WithID(ctx, e.Tenant), e); err != nil {
					r.record(fmt.Errorf("%s: %s at %d: %w", name, e.Type, e.Position, err))
				}
			}
			s.pos.Store(uint64(e.Position))
			return nil
		})
		if err != nil {
			r.record(fmt.Errorf("%s: subscription: %w", name, err))
		}
	}()
}

func (r *Registry) record(err error) {
	r.mu.Lock()
	r.errs = append(r.errs, err)
	r.mu.Unlock()
}

// Errors returns the handler errors so far.
func (r *Registry) Errors() []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]error(nil), r.errs...)
}

// Sync waits until every handler has been fed the store up to its last position now. (It waits for
// ctx if the store's last event is unreadable: keep retention out of tests that call it.)
func (r *Registry) Sync(ctx context.Context) error {
	target, err := r.store.LastPosition(ctx)
	if err != nil {
		return fmt.Errorf("bustest: store position: %w", err)
	}
	r.mu.Lock()
	subs := append([]*subscription(nil), r.subs...)
	r.mu.Unlock()
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for _, s := range subs {
		for s.pos.Load() < uint64(target) {
			if s.done.Load() {
				return fmt.Errorf("bustest: %s stopped at %d of %d", s.name, s.pos.Load(), target)
			}
			select {
			case <-ctx.Done():
				return errors.Join(fmt.Errorf("bustest: %s at %d of %d", s.name, s.pos.Load(), target), ctx.Err())
			case <-t.C:
			}
		}
	}
	return nil
}
