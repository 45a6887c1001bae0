// Package bus carries the store's events to the modules' handlers over Watermill. The store is the
// outbox: a forwarder tails it from a persisted checkpoint and publishes every event; handlers are
// idempotent by event id. Modules only see Registry.
package bus

import (
	"context"

	"github.com/crispy-enigma/crispy/platform/eventstore"
)

// Handler handles one event. Delivery is at-least-once; the bus drops redeliveries of an event id a
// handler has already handled, but a handler must still tolerate a repeat after a restart.
type Handler func(ctx context.Context, e eventstore.Event) error

// Registry is what modules register their event handlers on.
type Registry interface {
	// On registers a handler under a durable name (it is the consumer group: never rename it) for
	// events whose type is one of types (every event when types is empty).
	On(name string, types []string, h Handler)

	// Project registers an in-memory read model (session list, usage): on every start it is fed every
	// matching event from the beginning of the store, then live events, in global order. Use it for
	// state that lives in memory and must be rebuilt by replay; use On for side effects (webhooks,
	// index updates) that must happen once per event across restarts.
	Project(name string, types []string, h Handler)
}
