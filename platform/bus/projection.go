package bus

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/crispy-enigma/crispy/platform/eventstore"
)

// projection is one Project read model: its own store subscription from the start, so it is fed
// every event once, in global order, on every start. Only its one goroutine calls the handler.
type projection struct {
	name  string
	types map[string]bool
	h     Handler
	b     *Bus

	pos      atomic.Uint64 // last position the subscription delivered (matching or not)
	busy     atomic.Bool   // inside the handler
	lastSeen atomic.Int64  // monotonic nanos (since the bus's epoch) of the last delivery
	dead     atomic.Pointer[error]
	epoch    time.Time // set by Run before the goroutine starts

	handled, failed counter
}

func newProjection(name string, types []string, h Handler, b *Bus) *projection {
	return &projection{name: name, types: typeSet(types), h: h, b: b,
		handled: b.m.counter("crispy_bus_projected_events_total", name),
		failed:  b.m.counter("crispy_bus_failed_events_total", name)}
}

func (p *projection) run(ctx context.Context) {
	wait := p.b.cfg.RetryInitial
	for {
		from := eventstore.Position(p.pos.Load()) + 1
		err := p.b.store.Subscribe(ctx, eventstore.SubscribeOptions{From: from}, p.apply)
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

func (p *projection) apply(ctx context.Context, e eventstore.Event) error {
	if uint64(e.Position) <= p.pos.Load() {
		return nil
	}
	if p.types == nil || p.types[e.Type] {
		p.busy.Store(true)
		if err := p.call(ctx, e); err != nil {
			if ctx.Err() != nil {
				p.busy.Store(false)
				return ctx.Err() // shutting down: the event was not applied
			}
			p.b.log.Error("bus: projection gave up on event", "projection", p.name, "type", e.Type,
				"tenant", e.Tenant.String(), "position", e.Position, "event", e.ID, "err", err)
			p.failed.Inc()
		} else {
			p.handled.Inc()
		}
		p.busy.Store(false)
	}
	p.pos.Store(uint64(e.Position))
	p.lastSeen.Store(int64(time.Since(p.epoch)))
	return nil
}

// call runs the handler with the durable handlers' retry budget; a panic is an error.
func (p *projection) call(ctx context.Context, e eventstore.Event) error {
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

// waitCaughtUp returns once the projection has been fed up to target, or has been quiet for settle
// (the store's last event at start may be unreadable, and a subscription never delivers it).
func (p *projection) waitCaughtUp(ctx context.Context, target eventstore.Position, settle time.Duration) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		if p.pos.Load() >= uint64(target) {
			return nil
		}
		if d := p.dead.Load(); d != nil {
			return fmt.Errorf("bus: projection %s: %w", p.name, *d)
		}
		if !p.busy.Load() && time.Since(p.epoch)-time.Duration(p.lastSeen.Load()) >= settle {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("bus: projection %s catching up (at %d of %d): %w", p.name, p.pos.Load(), target, ctx.Err())
		case <-t.C:
		}
	}
}
