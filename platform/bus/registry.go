// Package bus carries the store's events to the modules' handlers over Watermill. The store is the
// outbox: a forwarder tails it from a persisted checkpoint and publishes every event; handlers are
// idempotent by event id. Modules only see Registry.
//
// Guarantees, and how they are kept:
//   - The forwarder subscribes to the store (every tenant) from the position after its checkpoint
//     (CheckpointDir/forwarder.json, written by temp file + fsync + rename every CheckpointInterval
//     and at a clean stop) and publishes each event as a Watermill message: UUID = event id,
//     payload = the envelope JSON, metadata type, tenant, stream, position.
//   - GoChannel (default): publishing blocks until every On handler has finished the event, so each
//     handler sees the store's order and the forwarder's checkpoint never passes an unfinished
//     event. Each handler also records its own position after every event it handles (a 16-byte
//     pwrite, fsync'd with the forwarder's checkpoint), so after a crash the events re-forwarded
//     from the older forwarder checkpoint are skipped by the handlers that had finished them.
//   - NATS JetStream: one stream and subject "<prefix>-events" keeps the global order; each On
//     handler is a durable consumer shared by every replica (each event goes to one of them); the
//     broker's acks are the handler's checkpoint, and the JetStream message id (= event id) drops a
//     re-forwarded event within DuplicateWindow.
//   - Both: a handler is retried with backoff (Watermill Retry and Recoverer middleware), then the
//     failure is logged and counted and the event passed; recent event ids are remembered per
//     handler to drop redeliveries. A kill -9 between a handler's side effect and its checkpoint
//     write (or a power cut before the fsync) can still repeat an event: at least once.
//   - Project handlers are fed by their own store subscription from Start on every run, once per
//     event in global order; WaitCaughtUp returns when all have reached the store's position at
//     start.
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
