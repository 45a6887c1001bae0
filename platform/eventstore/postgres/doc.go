// Package postgres is the eventstore.Store on PostgreSQL, through pgx (github.com/jackc/pgx/v5,
// pgxpool). It is the shareable engine that runs on our machines (DESIGN.md §3): several crispy
// replicas append to and subscribe from one database. Selected by --eventstore postgres://… (or
// postgresql://…).
//
// # Tables
//
// In one schema (Config.Schema or ?schema= in the URL, default "crispy"; created on first use):
// events (one row per event, UNIQUE (stream, revision), an index on (tenant, position)), streams (a
// stream's head: last revision and hash, and its retention metadata) and positions (one row: the last
// position handed out). Migrations are versioned in schema_migrations and applied at Open under an
// advisory lock, so replicas that start together migrate once; a schema newer than the binary is
// refused.
//
// # Global order, and the sequence-visibility trap
//
// The port promises a global order a subscriber can follow with a cursor. The classic way to number
// rows, a sequence (bigserial), breaks that promise: transaction A takes position 10, transaction B
// takes 11 and commits first; a reader that sees 11 moves its cursor past 10, and when A commits, 10
// is never delivered.
//
// This store hands out positions from a single-row counter, updated inside the appending transaction
// (UPDATE positions SET last = last + n RETURNING last). The row stays locked until COMMIT, so the
// next appender waits for it and positions commit in the order they are taken; a rolled-back append
// also rolls back the counter, so positions have no gaps. Any snapshot therefore sees a prefix of the
// log — if it sees position p it sees every position below p — and a cursor can never pass an event
// that commits later. A reader needs no visibility filtering, and the committed counter is the exact
// LastPosition (Subscribe reports it as the live end).
//
// We chose this over the alternative, positions from a sequence plus xid8 filtering (read only rows
// whose transaction is older than pg_snapshot_xmin(pg_current_snapshot())), because that one orders the
// log by transaction id rather than by position, makes every reader wait for the OLDEST transaction of
// the whole server (a long transaction anywhere in the cluster stalls every subscription), and leaves
// gaps that LastPosition cannot account for. Its advantage is that appends do not serialise.
//
// The cost of the counter is that appends serialise on it from the moment they take positions to the
// end of their COMMIT (the WAL flush). Two measures keep that short: the stream locks and head reads
// come first, in their own round trip, and the positions, inserts, stream updates, NOTIFY and COMMIT
// go in one pipelined round trip; and each process groups its concurrent appends (up to MaxBatch) into
// one transaction, so they share one flush. Every request in a group is checked against its own
// expected revision and fails or succeeds alone. README's Measured table has the numbers
// (BenchmarkIntegrationAppend…).
//
// Streams are locked with SELECT … FOR UPDATE in name order (after an INSERT … ON CONFLICT DO NOTHING,
// so that even a stream's first append has a row to lock), which makes expected revisions exact under
// concurrent appenders in any number of processes, and lets the hash chain continue from the head it
// read. UNIQUE (stream, revision) is the backstop.
//
// # Subscriptions
//
// A subscription reads pages in position order; at the end it reports CaughtUp with the counter read
// just before its last page, then waits for a wake-up. Wake-ups come from the store's one LISTEN
// connection (every append transaction NOTIFYs "<schema>.events" on commit), from this process's own
// appends, and from a poll every PollInterval, the safety net for notifications lost while the
// listener's connection was down. Health reports degraded while the listener is down.
//
// # Durability and failures
//
// An append returns after COMMIT with synchronous_commit on (set for every session of the store
// unless the URL sets a stronger level; synchronous_commit=off is refused), so an acknowledged event
// is in the server's flushed WAL. With replicas, an acknowledged append survives a failover only if
// the standby was synchronous: set synchronous_standby_names on the primary and synchronous_commit =
// on (or remote_apply) for the store; with asynchronous replication, events acknowledged just before
// a failover can be lost, and the promoted server hands their positions out again, which subscribers'
// checkpoints would not notice.
//
// A database that cannot be reached (refused, broken or timed-out connections, shutdown, out of disk
// or memory, a read-only standby) answers eventstore.ErrStorageUnavailable (503 storage_unavailable);
// an append whose connection broke after its COMMIT was sent answers eventstore.ErrStorageOutcomeUnknown
// (it may have been recorded). The pool reconnects by itself when the server is back (connections idle
// for a second are pinged before use), subscriptions retry with back-off and resume from their cursor,
// and the listener reconnects. Health: down while the server does not answer, degraded on a standby
// or while live notifications are cut.
//
// # What is tested how
//
// TestIntegration… tests run against a real server when CRISPY_POSTGRES_URL is set (.ci/run sets it),
// each in its own schema, dropped afterwards: the acceptance suite (eventstoretest.Run), the forced
// late-commit interleaving, a database cut and restored under a running subscription (through a TCP
// proxy the test controls), migrations, and grouped appends with conflicts. They skip, saying why,
// when it is not set.
package postgres
