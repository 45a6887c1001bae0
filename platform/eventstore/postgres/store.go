package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/health"
)

// Options are the store's collaborators.
type Options struct {
	Log *slog.Logger
	// Now stamps appended events and judges max-age (default time.Now).
	Now func() time.Time
}

// Store is the PostgreSQL implementation of eventstore.Store. It is safe for concurrent use.
type Store struct {
	cfg     resolved
	log     *slog.Logger
	now     func() time.Time
	pool    *pgxpool.Pool
	sql     statements
	channel string // the NOTIFY channel: "<schema>.events"

	reqs       chan *appendReq // to the committer; unbuffered, so a send after Close cannot strand a request
	quit       chan struct{}   // closed by Close
	writerDone chan struct{}
	closeOnce  sync.Once
	closed     atomic.Bool

	notify       *notifier
	listenOnce   sync.Once
	listenCtx    context.Context
	listenCancel context.CancelFunc
	listenDone   chan struct{}
	listenOn     atomic.Bool // started: its state counts for Health
	listening    atomic.Bool // LISTEN is active on a live connection

	hooks hooks
}

// hooks let tests stop the store at the points where interleavings matter. Nil in production.
type hooks struct {
	// beforeCommit runs inside an append transaction, after its positions are taken and its events
	// inserted, before COMMIT is sent.
	beforeCommit func(ctx context.Context)
	// polled runs after a live subscription has read the table and found nothing more to deliver.
	polled func()
}

var _ eventstore.Store = (*Store)(nil)
var _ eventstore.HealthChecker = (*Store)(nil)

// Open connects to the database, checks that it answers, and creates or upgrades the schema, so a
// wrong address or a missing permission fails at start-up rather than on the first request.
func Open(ctx context.Context, cfg Config, opts Options) (*Store, error) {
	rc, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	pool, err := pgxpool.NewWithConfig(ctx, rc.pool)
	if err != nil {
		return nil, fmt.Errorf("postgres: pool for %s: %w", Redact(rc.URL), err)
	}
	s := &Store{
		cfg: rc, log: opts.Log, now: opts.Now, pool: pool,
		sql:     newStatements(pgx.Identifier{rc.Schema}.Sanitize()),
		channel: rc.Schema + ".events",
		reqs:    make(chan *appendReq), quit: make(chan struct{}), writerDone: make(chan struct{}),
		notify: newNotifier(), listenDone: make(chan struct{}),
	}
	s.listenCtx, s.listenCancel = context.WithCancel(context.Background())
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: connect to %s: %w", Redact(rc.URL), err)
	}
	if err := migrate(ctx, pool, rc.Schema); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: %s: %w", Redact(rc.URL), err)
	}
	go s.committer()
	return s, nil
}

// errSchemaNewer marks a schema written by a newer binary: this one would misread it.
var errSchemaNewer = errors.New("schema newer than this binary")

// Schema is the schema that holds the store's tables.
func (s *Store) Schema() string { return s.cfg.Schema }

// Close stops the committer after the appends it accepted, ends subscriptions with ErrClosed and
// closes the pool. Appends after Close fail with eventstore.ErrClosed. Safe to call more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		close(s.quit)
		<-s.writerDone
		s.listenCancel()
		if s.listenOn.Load() {
			<-s.listenDone
		}
		s.notify.wake()
		s.pool.Close()
	})
	return nil
}

// LastPosition implements eventstore.Store: positions are gapless and the counter moves inside the
// appending transaction, so the committed counter is the newest visible event.
func (s *Store) LastPosition(ctx context.Context) (eventstore.Position, error) {
	if s.closed.Load() {
		return 0, eventstore.ErrClosed
	}
	var last int64
	if err := s.pool.QueryRow(ctx, s.sql.lastPosition).Scan(&last); err != nil {
		return 0, s.mapErr(ctx, "last position", err)
	}
	return eventstore.Position(last), nil
}

// Health implements eventstore.HealthChecker: down when the database does not answer; degraded when
// it answers but cannot take appends (a read-only standby) or when live notifications are cut (the
// subscriptions then only poll).
func (s *Store) Health(ctx context.Context) error {
	if s.closed.Load() {
		return eventstore.ErrClosed
	}
	var standby bool
	if err := s.pool.QueryRow(ctx, `SELECT pg_is_in_recovery()`).Scan(&standby); err != nil {
		// The reason reaches tenants through /health: the cause, never the address or the user.
		return fmt.Errorf("the PostgreSQL event store is not answering (%s)", shortCause(err))
	}
	if standby {
		return health.DegradedState("the PostgreSQL server is a read-only standby: reads work, appends are refused")
	}
	if s.listenOn.Load() && !s.listening.Load() {
		return health.DegradedState(fmt.Sprintf("live notifications from PostgreSQL are interrupted: subscriptions poll every %s until they are back", s.cfg.PollInterval))
	}
	return nil
}

// mapErr puts err into the port's vocabulary. A database that cannot be reached or cannot work right
// now (connection lost, shutting down, out of resources, read-only) is eventstore.ErrStorageUnavailable
// (503 storage_unavailable); the caller's own cancellation stays itself.
func (s *Store) mapErr(ctx context.Context, op string, err error) error {
	switch {
	case err == nil:
		return nil
	case s.closed.Load() && !errors.Is(err, context.Canceled):
		return fmt.Errorf("%s: %w", op, eventstore.ErrClosed)
	case ctx.Err() != nil:
		return fmt.Errorf("%s: %w", op, ctx.Err())
	case errors.Is(err, eventstore.ErrCorrupt), errors.Is(err, eventstore.ErrInvalid), errors.Is(err, eventstore.ErrConflict):
		return fmt.Errorf("%s: %w", op, err) // already the port's word for it
	}
	if transient(err) {
		return fmt.Errorf("%s: %w: %w", op, eventstore.ErrStorageUnavailable, err)
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && strings.HasPrefix(pe.Code, "22") {
		return fmt.Errorf("%s: %w: %v", op, eventstore.ErrInvalid, err) // a value the database refuses (a NUL in text)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// transient reports whether err means that the database cannot be used right now but may be soon:
// every failure that is not the server's considered answer to the statement, and those server answers
// that are about the server's state rather than the statement.
func transient(err error) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		// Not an answer from the server: a connection that failed, broke or timed out.
		return !errors.Is(err, context.Canceled)
	}
	switch {
	case strings.HasPrefix(pe.Code, "08"), // connection exception
		strings.HasPrefix(pe.Code, "53"),                                               // insufficient resources: disk full, out of memory, too many connections
		strings.HasPrefix(pe.Code, "57P"),                                              // admin or crash shutdown, cannot connect now
		strings.HasPrefix(pe.Code, "58"),                                               // system error: I/O
		pe.Code == "25006",                                                             // read-only transaction: a standby, or default_transaction_read_only
		pe.Code == "40001", pe.Code == "40P01", pe.Code == "55P03", pe.Code == "57014": // serialization, deadlock, lock or statement timeout
		return true
	}
	return false
}

// shortCause names what failed without addresses or credentials.
func shortCause(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return fmt.Sprintf("%s, SQLSTATE %s", pe.Message, pe.Code)
	}
	var errno syscall.Errno
	switch {
	case errors.As(err, &errno):
		return errno.Error()
	case errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err):
		return "timed out"
	}
	return "connection failed"
}

// statements are the store's SQL with its schema filled in.
type statements struct {
	lastPosition, placeholders, lockStreams, takePositions, insertEvents, advanceStreams, notify string
	readStream, readTenant, pageAll, pageTenant                                                  string
	setMetadata, getMetadata                                                                     string
}

// eventCols are the columns decode reads, in its order.
const eventCols = `e.position, e.tenant, e.stream, e.revision, e.id, e.type, e.time_ns, e.request_id, e.actor, e.causation_id, e.correlation_id, e.data, e.prev, e.hash, e.user_id`

func newStatements(q string) statements {
	// An event is readable unless its stream's metadata hides it: before truncate_before, or older
	// than max_age at the caller's now (the parameter named by %s).
	readable := func(now string) string {
		return `(st.truncate_before IS NULL OR e.revision >= st.truncate_before) AND (st.max_age_ns IS NULL OR e.time_ns >= ` + now + ` - st.max_age_ns)`
	}
	from := ` FROM ` + q + `.events e JOIN ` + q + `.streams st ON st.stream = e.stream `
	return statements{
		lastPosition: `SELECT last FROM ` + q + `.positions`,
		// A row for every stream of the group, so that even a stream's first append has a row to
		// lock: a second appender of a new stream waits on the first one's insert, then sees its
		// committed row, instead of both seeing no stream.
		placeholders: `INSERT INTO ` + q + `.streams (stream, tenant) SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT (stream) DO NOTHING`,
		// Locked in name order, so that two transactions never wait on each other's streams.
		lockStreams: `SELECT stream, last_revision, last_hash FROM ` + q + `.streams WHERE stream = ANY($1::text[]) ORDER BY stream FOR UPDATE`,
		// The single counter row: taking positions locks it until COMMIT, so transactions that
		// append commit in position order (see the package documentation).
		takePositions: `UPDATE ` + q + `.positions SET last = last + $1 RETURNING last`,
		insertEvents: `INSERT INTO ` + q + `.events (position, tenant, stream, revision, id, type, time_ns, request_id, actor, causation_id, correlation_id, data, prev, hash, user_id)
SELECT p.last - $1 + u.ord, u.tenant, u.stream, u.revision, u.id, u.type, u.time_ns, u.request_id, u.actor, u.causation_id, u.correlation_id, u.data, u.prev, u.hash, u.user_id
FROM ` + q + `.positions p,
     unnest($2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::bigint[], $8::text[], $9::text[], $10::text[], $11::text[], $12::bytea[], $13::text[], $14::text[], $15::text[])
     WITH ORDINALITY AS u(tenant, stream, revision, id, type, time_ns, request_id, actor, causation_id, correlation_id, data, prev, hash, user_id, ord)`,
		advanceStreams: `UPDATE ` + q + `.streams st SET last_revision = u.rev, last_hash = u.hash
FROM unnest($1::text[], $2::bigint[], $3::text[]) AS u(stream, rev, hash) WHERE st.stream = u.stream`,
		notify:     `SELECT pg_notify($1, last::text) FROM ` + q + `.positions`,
		readStream: `SELECT ` + eventCols + from + `WHERE e.stream = $1 AND e.revision >= $2 AND ` + readable("$3") + ` ORDER BY e.revision LIMIT $4`,
		readTenant: `SELECT ` + eventCols + from + `WHERE e.tenant = $1 AND e.position >= $2 AND ` + readable("$3") + ` ORDER BY e.position LIMIT $4`,
		pageAll:    `SELECT ` + eventCols + from + `WHERE e.position >= $1 AND ` + readable("$2") + ` ORDER BY e.position LIMIT $3`,
		pageTenant: `SELECT ` + eventCols + from + `WHERE e.tenant = $1 AND e.position >= $2 AND ` + readable("$3") + ` ORDER BY e.position LIMIT $4`,
		setMetadata: `INSERT INTO ` + q + `.streams (stream, tenant, max_age_ns, truncate_before) VALUES ($1, $2, $3, $4)
ON CONFLICT (stream) DO UPDATE SET max_age_ns = EXCLUDED.max_age_ns, truncate_before = EXCLUDED.truncate_before`,
		getMetadata: `SELECT max_age_ns, truncate_before FROM ` + q + `.streams WHERE stream = $1`,
	}
}
