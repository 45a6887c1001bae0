// Package bus carries the store's events to the modules over Watermill. The store is the outbox: a
// forwarder tails it and publishes every event; modules consume them through two kinds of consumer,
// named as such:
//
//   - Projections (Consumers.Projection, Apply): read models every replica keeps for itself (tool
//     statistics, session lists, usage …). Each is a bbolt file under ReadModelDir (platform/readmodel)
//     holding its state and the position it reflects, written in one transaction. They consume
//     through the replica's in-process Watermill transport (GoChannel): fan-out by construction.
//   - Processors (Consumers.Processor, Handle): act once per deployment (webhooks, retention sweeps,
//     writes to an external index). They consume through the shared transport: a NATS JetStream
//     durable consumer shared by every replica with --bus nats://…, the in-process GoChannel
//     otherwise.
//
// Handlers are typed: the bus decodes an event's data once, with the one codec (platform/bus/codec)
// where each module's events package registers its types, and calls the handler registered for that
// Go type with the envelope (no data: nothing left to decode by hand) and the value. A handler that
// needs a few fields of a type takes a view of it (ApplyView, HandleView: a struct of those fields,
// checked against the type by codec.CheckView); a cursor decodes each event once into each Go type
// its consumers take (ApplyEnvelope: none), so when they all take the same view the rest of the data
// is skipped, never copied out.
//
// Guarantees, and how they are kept:
//   - One forwarder, and cursors, one store subscription each. The processors' cursor starts after
//     its own checkpoint (CheckpointDir/forwarder.json, written by temp file + fsync + rename every
//     CheckpointInterval and at a clean stop) and publishes each event as a message (UUID = event
//     id, payload = envelope JSON, metadata type, tenant, stream, position) to the shared transport.
//     The projections ride on projection cursors (fanout.go), which read batches of events, decode
//     them once for the projections they feed and hand each batch to each projection's inbox (a
//     channel of inboxBatches batches), from which it is published to that projection's own topic
//     on the in-process transport. Separate from the processors' cursor, so that a broker outage
//     does not stall the read models, and a read model rebuilt from zero does not publish the
//     history to the broker again (past its duplicate window, processors would act on it again).
//   - A slow projection does not pace the others. At start the projections are grouped by
//     checkpoint: those within CatchUpCommitEvery of each other share a cursor from the lowest of
//     them; one far behind (new, or rebuilt) gets a cursor of its own, so the others are caught up
//     at once. A cursor waits for a projection whose inbox is full only while no other projection
//     of its group is idle (has applied every batch it was handed): then that projection is
//     inboxBatches batches behind it and is detached onto a cursor of its own, from the last event
//     it was handed, decoding only the types it handles (it re-embeds documents, say; the others go
//     on at their pace). A cursor other than the main one (the one furthest ahead at start) hands
//     its projections to the main cursor once it has handed them the live end and they are idle,
//     if the main cursor has handed out nothing after that position (else it asks again when a
//     projection next becomes idle): at rest the store is read once for every read model. Memory
//     stays bounded by the inboxes, whatever the history: a projection far behind reads the store
//     itself rather than having the history buffered for it. The cursors of projections with
//     OwnCursor start once every shared read model has caught up (or is stuck): on a first start
//     the shared ones have the cores first (startCursors).
//   - Caught up is a fact: the store subscription reports its live end (SubscribeOptions.CaughtUp);
//     a projection cursor passes that position to its projections behind the events before it, so
//     a projection is caught up once it has applied (and committed) every event up to the live end
//     of the cursor it is on. Nothing is guessed from a quiet spell. Each projection says so for
//     itself: Projection.WaitCaughtUp, Ready (503 catching_up for its own queries) and Check
//     (/health catching_up with progress) report it, while the projections already caught up
//     answer; Bus.WaitCaughtUp and Bus.Check wait for or report them all.
//   - A projection applies events in order, skipping positions at or below its checkpoint, in
//     batched write transactions: while catching up it commits every CatchUpCommitEvery events and
//     at the live end; once live, at the end of every forwarded batch (before the batch is
//     acknowledged; Bus.Sync waits for that). A crash loses only uncommitted work, which is applied
//     again from the checkpoint: never twice, never lost. The same skip makes the moves between
//     cursors safe: a batch handed again after a join is applied once.
//   - A projection file that is missing or unreadable is rebuilt from the start of the store (with a
//     log line); one whose checkpoint is ahead of the store's last position (the store was restored
//     from an older backup, or --eventstore names another store) makes Run refuse to start: its
//     state would describe events the store does not have.
//   - Processors on GoChannel: publishing blocks until every processor has finished the event, so
//     each sees the store's order (an event no processor handles is passed over, not published); each records its position after every event (a 16-byte pwrite,
//     fsync'd with the forwarder's checkpoint) and skips what it had finished after a crash. On NATS
//     JetStream: one stream and subject "<prefix>-events" keeps the global order; each processor is
//     a durable consumer shared by every replica (each event goes to one of them); the broker's acks
//     are its checkpoint, and the JetStream message id (= event id) drops a re-forwarded event within
//     DuplicateWindow. Both: recent event ids are remembered per processor to drop redeliveries; a
//     kill -9 between a side effect and its checkpoint can repeat an event (at least once), so a
//     side effect is keyed by the envelope's ID or Position.
//   - A failing handler is retried with backoff (MaxRetries, RetryInitial … RetryMax), then the
//     failure is logged and counted and the event passed; a panic is a failure. A handler whose
//     error is a dependency fault (Unavailable: an apperr Unavailable, a storage fault, a degraded
//     health.State) is instead retried with capped backoff until it succeeds or the bus stops, with
//     /health degraded meanwhile, so that an event is never passed because an index or provider
//     was down (on NATS the event is given back before its ack wait and comes again). A projection
//     handler's failed attempt is rolled back with its transaction (the events before it in the
//     batch are applied again, one transaction each), so a failure never leaves half an event.
package bus

import (
	"time"

	"github.com/crispy-enigma/crispy/platform/bus/codec"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// Consumers is what a module registers its projections and processors on, before the bus runs.
// *Bus implements it; a module's component test runs a real bus on GoChannel (bustest.NewBus).
type Consumers interface {
	// Codec is where a module registers the events packages whose events it consumes.
	Codec() *codec.Registry
	// Projection registers a checkpointed read model; add its handlers with Apply.
	Projection(name string, o ProjectionOptions) *Projection
	// Processor registers a consumer that acts once per deployment; add its handlers with Handle.
	Processor(name string) *Processor
}

// Envelope is an event without its data: who, where, when and in which order. Handlers get the
// data decoded, as their typed argument.
type Envelope struct {
	ID            string // UUIDv7: the key of a processor's side effect
	Type          string
	Tenant        tenant.ID
	Stream        string
	Revision      uint64
	Position      eventstore.Position // global order: a projection's checkpoint
	Time          time.Time
	RequestID     string
	Actor         string // the authenticated credential's id
	User          string // the user id the client asserted, unverified
	CausationID   string
	CorrelationID string
	// Hash is the event's stored per-stream hash-chain value (hex SHA-256 over Prev and the event's
	// canonical bytes as stored): the tenant-wide Merkle log (platform/auditlog) takes it as its leaf.
	Hash string
	// Erased: the event's content was sealed under a key since destroyed (platform/sealing); its
	// data holds only the fields kept plain.
	Erased bool
	// Unreadable (with Erased): the sealed content did not open with its key (damage, logged by
	// platform/sealing), read as erased so one tenant's damage stops no consumer.
	Unreadable bool
}

func envelopeOf(e eventstore.Event) Envelope {
	return Envelope{ID: e.ID, Type: e.Type, Tenant: e.Tenant, Stream: e.Stream, Revision: e.Revision, Position: e.Position,
		Time: e.Time, RequestID: e.RequestID, Actor: e.Actor, User: e.User, CausationID: e.CausationID, CorrelationID: e.CorrelationID, Hash: e.Hash, Erased: e.Erased, Unreadable: e.Unreadable}
}
