// Package esdb is the eventstore.Store on EventStoreDB or KurrentDB, through the official gRPC client
// (github.com/EventStore/EventStore-Client-Go/v4). It is the production engine of DESIGN.md §3: the
// embedded store is the default, this one is chosen when a connection string is configured.
//
// # How the port maps onto the server
//
//   - A stream is the EventStoreDB stream of the same name (t-{tenant}.{category}-{id}). An event is
//     stored with its type as the event type, its data as JSON data, and the rest of its envelope (id,
//     time, request id, actor, causation, correlation, prev, hash) as JSON custom metadata, so an event
//     read back re-verifies with eventstore.ChainVerifier. The server's event id is the envelope id when
//     it is a UUID (it is: eventstore.Prepare makes UUIDv7s), else a name-based UUID derived from it.
//   - Append reads the stream's last event (backwards, one event) to continue the hash chain, then
//     appends with the exact revision it read, so a concurrent writer cannot slip between the read and
//     the write and break the chain. The caller's expectation (Any, NoStream, StreamExists, Exact) is
//     checked against what was read; Any and StreamExists are retried when another writer moved the
//     stream in between. The server's wrong-expected-version answer becomes *eventstore.ConflictError,
//     a deleted stream eventstore.ErrStreamDeleted.
//   - ReadTenant and Subscribe read $all with a SERVER-SIDE stream-prefix filter (t-{tenant}., or t- for
//     the all-tenant subscription, which also keeps the server's own $-streams out). The v4 client
//     offers filters only on subscriptions, not on ReadAll, so ReadTenant subscribes and stops at the
//     end of $all as it was when the call began (the last event, a checkpoint past it, or caught-up).
//   - $all reads ignore stream metadata on the server (truncated events stay in $all until a scavenge),
//     so ReadTenant and Subscribe hide events that $tb/$maxAge make unreadable themselves: they fetch each
//     stream's metadata once and follow later changes through the $$-metadata streams, which the same
//     filter lets through. ReadStream relies on the server, which applies $tb and $maxAge to stream reads.
//   - StreamMetadata maps to $maxAge (whole seconds, rounded up) and TruncateBefore to $tb.
//   - The v4 client closes itself for good when it cannot rediscover a node after losing it; the store
//     then starts a new client, so a server restart does not need a process restart.
//
// # Limits
//
//   - ReadTenant ends on the server's caught-up message (EventStoreDB 23.10 and later, KurrentDB) or on a
//     checkpoint past the end. An older server that sends neither at the end of a short catch-up keeps
//     the call waiting until its next checkpoint (or the caller's deadline).
//   - The position of each appended event is known only from reads: AppendResult carries the write's
//     position on its last event and in Position; the other events' Position is 0.
//   - Events written by other programs into t-… streams without our envelope read as
//     eventstore.ErrCorrupt, and an append cannot continue a chain whose last event is such an event.
//   - The connecting user needs read access to $all (on a secure node only $admins have it by default)
//     and to the $$ metadata streams of t-… streams.
//
// # Positions
//
// eventstore.Position is 2·commit+2, where commit is the event's $all commit position (equal to its
// prepare position for every event appended through gRPC). Even positions therefore name an event and
// odd ones (an event's position + 1, what a caller passes to resume after it) name the gap after it, so
// both map back to a position the server accepts: "after event c" subscribes from c, "from event c"
// looks up the event before c (one backwards read) and subscribes from there. Positions not handed out
// by this store, other than those two forms, are not meaningful and the server rejects them. Stream
// reads carry positions only on servers that populate them for stream reads (22.6 and later, per the
// server's change log); older servers give 0 there, and the acceptance suite's position checks on
// stream reads fail against them.
//
// # What is tested how
//
//   - TestContract… tests run the real client against an in-process gRPC server built from the
//     client's generated protobuf service (fake_test.go). They prove the requests this adapter sends
//     (stream names, expected revisions, event type, content type, envelope metadata, the prefix filter,
//     the start position) and how it maps the server's answers (wrong expected version, stream deleted,
//     stream not found, hidden events, caught-up). The fake is a test double, not EventStoreDB: it
//     implements only Append, Read and the few behaviours those tests need.
//   - TestContractAcceptanceSuiteOnTheDouble runs the port's acceptance suite through the real client
//     against that double (all but the truncation case, whose stream-read half is server behaviour):
//     the adapter's own logic under racing writers, paging, catch-up then live and tenant isolation.
//   - TestIntegrationEventStoreDB runs the eventstore acceptance suite (eventstoretest.Run) against a
//     real server when CRISPY_EVENTSTORE_URL is set (for example esdb://localhost:2113?tls=false). Only
//     it proves the server-side semantics: real positions, durability, concurrent optimistic
//     concurrency, $tb/$maxAge on reads, filtered subscriptions ending with caught-up or checkpoints.
package esdb
