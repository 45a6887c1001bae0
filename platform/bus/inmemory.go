package bus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/eventstore"
)

// memProjection is one Project read model (the older API): its own store subscription from the
// start, so it is fed every event once, in global order, on every start. Only its one goroutine
// calls the handler.
//
// TODO(issue 11): delete once every module's read model is a checkpointed Projection.
type memProjection struct {
	name  string
	types map[string]bool
	h     Handler
	b     *Bus

	pos      atomic.Uint64 // last position the subscription delivered (matching or not)
	caughtUp chan struct{} // closed when the subscription reported its live end
	once     sync.Once
	stopped  chan struct{} // closed when run returns
	dead     atomic.Pointer[error]

	handled, failed counter
}

func newMemProjection(name string, types []string, h Handler, b *Bus) *memProjection {
	return &memProjection{name: name, types: typeSet(types), h: h, b: b, caughtUp: make(chan struct{}),
		stopped: make(chan struct{}),
		handled: b.m.counter("crispy_bus_projected_events_total", name),
		failed:  b.m.counter("crispy_bus_failed_events_total", name)}
}

func (p *memProjection) run(ctx context.Context) {
	defer close(p.stopped)
	wait := p.b.cfg.RetryInitial
	for {
		from := eventstore.Position(p.pos.Load()) + 1
		err := p.b.store.Subscribe(ctx, eventstore.SubscribeOptions{From: from, CaughtUp: p.reachedLiveEnd}, p.apply)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			err = errors.New("store subscription ended")
		}
		if errors.Is(err, eventstore.ErrClosed) {
			p.dead.Store(&err)
			p.b.log.Error("bus: projection stopped: event store closed", "projection", p.name)
			return
		}
		// Resubscribing from the last delivered position neither repeats nor skips an event.
		p.b.log.Error("bus: projection subscription failed; resubscribing", "projection", p.name, "at", from-1, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, p.b.cfg.RetryMax)
	}
}

// reachedLiveEnd is the subscription's report that every event up to its live end has been
// applied: the handler ran for each before this call, on this goroutine.
func (p *memProjection) reachedLiveEnd(context.Context, eventstore.Position) error {
	p.once.Do(func() { close(p.caughtUp) })
	return nil
}

func (p *memProjection) apply(ctx context.Context, e eventstore.Event) error {
	if uint64(e.Position) <= p.pos.Load() {
		return nil
	}
	if p.types == nil || p.types[e.Type] {
		if err := p.call(ctx, e); err != nil {
			if ctx.Err() != nil {
				return ctx.Err() // shutting down: the event was not applied
			}
			p.b.log.Error("bus: projection gave up on event", "projection", p.name, "type", e.Type,
				"tenant", e.Tenant.String(), "position", e.Position, "event", e.ID, "err", err)
			p.failed.Inc()
		} else {
			p.handled.Inc()
		}
	}
	p.pos.Store(uint64(e.Position))
	return nil
}

// call runs the handler with the durable handlers' retry budget; a panic is an error.
func (p *memProjection) call(ctx context.Context, e eventstore.Event) error {
	hctx := handlerContext(ctx, e, p.name)
	wait := p.b.cfg.RetryInitial
	var err error
	for attempt := 0; ; attempt++ {
		if err = safeCall(hctx, p.h, e); err == nil || attempt >= p.b.cfg.MaxRetries {
			return err
		}
		p.b.log.Warn("bus: projection failed; retrying", "projection", p.name, "retry", attempt+1, "in", wait, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, p.b.cfg.RetryMax)
	}
}

func safeCall(ctx context.Context, h Handler, e eventstore.Event) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic in handler: %v", r)
		}
	}()
	return h(ctx, e)
}

// MemoryReady is nil once every in-memory read model (Project, the older API) has caught up with the
// store, and a 503 catching_up *apperr.Error until then. Modules read those read models without
// asking the bus, so a server that answers before they caught up refuses the requests that may read
// them with this; a checkpointed Projection refuses by itself (View). Nil when there are none.
func (b *Bus) MemoryReady() error {
	b.mu.Lock()
	mps := b.memProjections
	b.mu.Unlock()
	for _, p := range mps {
		if !p.isCaughtUp() {
			return apperr.CatchingUp("the "+p.name+" read model", 2)
		}
	}
	return nil
}

// waitCaughtUp returns once the subscription has reported its live end.
func (p *memProjection) waitCaughtUp(ctx context.Context) error {
	select {
	case <-p.caughtUp:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("bus: projection %s catching up (at %d): %w", p.name, p.pos.Load(), ctx.Err())
	case <-p.stopped:
		if p.isCaughtUp() {
			return nil
		}
		if d := p.dead.Load(); d != nil {
			return fmt.Errorf("bus: projection %s: %w", p.name, *d)
		}
		return fmt.Errorf("bus: projection %s stopped before it caught up", p.name)
	}
}

func (p *memProjection) isCaughtUp() bool {
	select {
	case <-p.caughtUp:
		return true
	default:
		return false
	}
}
