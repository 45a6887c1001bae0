package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/crispy-enigma/crispy/platform/eventstore"
)

// forwardBatch bounds how many events one Publish carries. A broker acknowledges a batch with one
// wait instead of a round trip per event; GoChannel still hands them over one at a time.
const forwardBatch = 256

// forward tails the store (every tenant) from the position after the checkpoint and publishes each
// event: the store is the outbox. A failed publish restarts the subscription from the last event
// published, after a backoff, so nothing is skipped and order is kept.
func (b *Bus) forward(ctx context.Context) {
	wait := b.cfg.RetryInitial
	for {
		err := b.forwardOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			err = errors.New("store subscription ended")
		}
		b.fwdErr.Store(&err)
		b.m.forwardErrors.Inc()
		at := b.forwarded.Load()
		if errors.Is(err, eventstore.ErrClosed) {
			b.log.Error("bus: forwarder stopped: event store closed", "at", at)
			return
		}
		b.log.Error("bus: forwarder failed; retrying", "at", at, "retryIn", wait, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, b.cfg.RetryMax)
	}
}

// forwardOnce runs one store subscription from the event after the last one forwarded. The
// subscription reads ahead into a buffer while the previous batch is being published.
func (b *Bus) forwardOnce(ctx context.Context) error {
	subCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	evs := make(chan eventstore.Event, forwardBatch)
	subDone := make(chan error, 1)
	from := eventstore.Position(b.forwarded.Load()) + 1
	go func() {
		subDone <- b.store.Subscribe(subCtx, eventstore.SubscribeOptions{From: from}, func(ctx context.Context, e eventstore.Event) error {
			select {
			case evs <- e:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	batch := make([]eventstore.Event, 0, forwardBatch)
	for {
		batch = batch[:0]
		select {
		case e := <-evs:
			batch = append(batch, e)
		case err := <-subDone:
			// Events still buffered are dropped: the next subscription starts after the last one
			// published and delivers them again.
			return err
		}
	more:
		for len(batch) < forwardBatch {
			select {
			case e := <-evs:
				batch = append(batch, e)
			default:
				break more
			}
		}
		if err := b.publish(ctx, batch); err != nil {
			cancel()
			<-subDone
			return err
		}
	}
}

// publish sends a batch in order. On GoChannel it returns once every handler has finished with
// every event of it.
func (b *Bus) publish(ctx context.Context, batch []eventstore.Event) error {
	done := b.forwarded.Load()
	msgs := make([]*message.Message, 0, len(batch))
	for _, e := range batch {
		if uint64(e.Position) <= done {
			continue // a resubscription never repeats an event, but the checkpoint is the rule
		}
		m, err := toMessage(e)
		if err != nil {
			return err
		}
		// In process (GoChannel keeps the context) the handlers take the event as it is rather
		// than decode the payload again; a broker carries only the payload. WithoutCancel: the
		// handlers finish what the forwarder published before it stopped.
		m.SetContext(context.WithValue(context.WithoutCancel(ctx), inProcessEvent{}, e))
		msgs = append(msgs, m)
	}
	if len(msgs) == 0 {
		return nil
	}
	first, last := batch[0], batch[len(batch)-1]
	if err := b.tr.publisher.Publish(b.cfg.topic(), msgs...); err != nil {
		return fmt.Errorf("publish events %d..%d: %w", first.Position, last.Position, err)
	}
	b.forwarded.Store(uint64(last.Position))
	if b.fwdErr.Load() != nil {
		b.fwdErr.Store(nil)
	}
	b.m.published.Add(len(msgs))
	return nil
}

// inProcessEvent is the context key of the event a message was made from.
type inProcessEvent struct{}
