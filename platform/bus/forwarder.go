package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/crispy-enigma/crispy/platform/eventstore"
)

// forward tails the store (every tenant) from the position after the checkpoint and publishes each
// event: the store is the outbox. A failed publish restarts the subscription from the last event
// published, after a backoff, so nothing is skipped and order is kept.
func (b *Bus) forward(ctx context.Context) {
	wait := b.cfg.RetryInitial
	for {
		next := eventstore.Position(b.forwarded.Load()) + 1
		err := b.store.Subscribe(ctx, eventstore.SubscribeOptions{From: next}, b.publish)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			err = errors.New("store subscription ended")
		}
		b.fwdErr.Store(&err)
		b.m.forwardErrors.Inc()
		if errors.Is(err, eventstore.ErrClosed) {
			b.log.Error("bus: forwarder stopped: event store closed", "at", next-1)
			return
		}
		b.log.Error("bus: forwarder failed; retrying", "at", next-1, "retryIn", wait, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, b.cfg.RetryMax)
	}
}

// publish sends one event. On GoChannel it returns once every handler has finished with it.
func (b *Bus) publish(ctx context.Context, e eventstore.Event) error {
	if uint64(e.Position) <= b.forwarded.Load() {
		return nil // a resubscription never repeats an event, but the checkpoint is the rule
	}
	m, err := toMessage(e)
	if err != nil {
		return err
	}
	// In process (GoChannel keeps the context) the handlers take the event as it is rather than
	// decode the payload again; a broker carries only the payload. WithoutCancel: the handlers
	// finish the forwarder's last event after it stops.
	m.SetContext(context.WithValue(context.WithoutCancel(ctx), inProcessEvent{}, e))
	if err := b.tr.publisher.Publish(b.cfg.topic(), m); err != nil {
		return fmt.Errorf("publish %s at %d: %w", e.Type, e.Position, err)
	}
	b.forwarded.Store(uint64(e.Position))
	if b.fwdErr.Load() != nil {
		b.fwdErr.Store(nil)
	}
	b.m.published.Inc()
	return nil
}

// inProcessEvent is the context key of the event a message was made from.
type inProcessEvent struct{}
