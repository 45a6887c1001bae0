package eventstoretest

import (
	"context"

	"github.com/crispy-enigma/crispy/platform/eventstore"
)

// Stalled is a store whose subscriptions hold after handing over the event at position At until
// Release is closed (or the subscription's context ends): a replica whose read models are still
// catching up, for tests of what derived state answers meanwhile. Everything else is Store's.
type Stalled struct {
	eventstore.Store
	At      eventstore.Position
	Release chan struct{}
}

// Subscribe implements eventstore.Store.
func (s Stalled) Subscribe(ctx context.Context, opts eventstore.SubscribeOptions, h eventstore.Handler) error {
	return s.Store.Subscribe(ctx, opts, func(ctx context.Context, e eventstore.Event) error {
		if err := h(ctx, e); err != nil {
			return err
		}
		if e.Position == s.At {
			select {
			case <-s.Release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	})
}
