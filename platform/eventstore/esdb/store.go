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
//
// # Positions
//
// eventstore.Position is 2·commit+2, where commit is the event's $all commit position (equal to its
// prepare position for every event appended through gRPC). Even positions therefore name an event and
// odd ones (an event's position + 1, what a caller passes to resume after it) name the gap after it, so
// both map back to a position the server accepts: "after event c" subscribes from c, "from event c"
// looks up the event before c (one backwards read) and subscribes from there. Positions not handed out
// by this store, other than those two forms, are not meaningful and the server rejects them. Stream
// reads carry positions only on servers that populate them for stream reads (22.6 and later); older
// servers give 0.
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

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	esc "github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// Config says where the server is and how hard to try.
type Config struct {
	// URL is an EventStoreDB/KurrentDB connection string: esdb://, esdb+discover://, kurrentdb://,
	// kurrentdb+discover:// or kurrent:// (for example "esdb://admin:changeit@localhost:2113?tls=false").
	URL string
	// AppendRetries bounds how often an Any or StreamExists append re-reads the stream head after
	// another writer moved it between the read and the write (default 8).
	AppendRetries int
	// ResubscribeDelay is the pause before Subscribe re-subscribes after the server dropped the
	// subscription (default 1s).
	ResubscribeDelay time.Duration
	// SearchWindow is how many events the server scans for a filtered read before it reports a
	// checkpoint (default 32); ReadTenant stops at the first checkpoint past the end of $all.
	SearchWindow int
	// Namespace, when set, prefixes every stream name on the server ("{namespace}:t-acme.session-1"),
	// so several deployments (or test runs) can share one cluster without seeing each other's
	// streams. Empty in production: stream names are then exactly the port's.
	Namespace string
}

var namespacePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	if c.URL == "" {
		return errors.New("eventstoredb: URL is empty")
	}
	if _, err := clientURL(c.URL); err != nil {
		return err
	}
	if c.Namespace != "" && !namespacePattern.MatchString(c.Namespace) {
		return fmt.Errorf("eventstoredb: namespace %q must match %s", c.Namespace, namespacePattern)
	}
	if c.AppendRetries < 0 || c.SearchWindow < 0 || c.ResubscribeDelay < 0 {
		return errors.New("eventstoredb: AppendRetries, SearchWindow and ResubscribeDelay must not be negative")
	}
	return nil
}

func (c *Config) defaults() {
	if c.AppendRetries == 0 {
		c.AppendRetries = 8
	}
	if c.ResubscribeDelay == 0 {
		c.ResubscribeDelay = time.Second
	}
	if c.SearchWindow == 0 {
		c.SearchWindow = 32
	}
}

// clientURL rewrites the KurrentDB schemes to the esdb ones the v4 client parses.
func clientURL(raw string) (string, error) {
	for _, p := range []struct{ from, to string }{
		{"kurrentdb+discover://", "esdb+discover://"},
		{"kurrent+discover://", "esdb+discover://"},
		{"kurrentdb://", "esdb://"},
		{"kurrent://", "esdb://"},
		{"esdb+discover://", "esdb+discover://"},
		{"esdb://", "esdb://"},
	} {
		if strings.HasPrefix(raw, p.from) {
			return p.to + strings.TrimPrefix(raw, p.from), nil
		}
	}
	return "", fmt.Errorf("eventstoredb: URL %q must start with esdb://, esdb+discover://, kurrentdb:// or kurrentdb+discover://", redact(raw))
}

// redact hides a password in a connection string for error messages and logs.
func redact(raw string) string {
	at := strings.LastIndex(raw, "@")
	scheme := strings.Index(raw, "://")
	if at < 0 || scheme < 0 || at < scheme {
		return raw
	}
	creds := raw[scheme+3 : at]
	if i := strings.IndexByte(creds, ':'); i >= 0 {
		return raw[:scheme+3] + creds[:i] + ":***" + raw[at:]
	}
	return raw
}

// Options are the store's collaborators.
type Options struct {
	Log *slog.Logger
	// Now stamps appended events (default time.Now).
	Now func() time.Time
}

// Store is the EventStoreDB implementation of eventstore.Store. It is safe for concurrent use.
type Store struct {
	cfg    Config
	log    *slog.Logger
	now    func() time.Time
	conf   *esc.Configuration
	ns     string // "" or "{namespace}:", prepended to every server stream name
	closed atomic.Bool

	mu     sync.Mutex // serialises renew and Close
	client atomic.Pointer[esc.Client]
}

var _ eventstore.Store = (*Store)(nil)

// Open connects to the server in cfg.URL and checks that it answers (one backwards read of $all), so
// a wrong address fails at start-up rather than on the first request.
func Open(ctx context.Context, cfg Config, opts Options) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.defaults()
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	u, _ := clientURL(cfg.URL)
	conf, err := esc.ParseConnectionString(u)
	if err != nil {
		return nil, fmt.Errorf("eventstoredb: parse connection string %s: %w", redact(cfg.URL), err)
	}
	conf.Logger = clientLogger(opts.Log)
	client, err := esc.NewClient(conf)
	if err != nil {
		return nil, fmt.Errorf("eventstoredb: client for %s: %w", redact(cfg.URL), err)
	}
	s := &Store{cfg: cfg, log: opts.Log, now: opts.Now, conf: conf}
	s.client.Store(client)
	if cfg.Namespace != "" {
		s.ns = cfg.Namespace + ":"
	}
	if _, err := s.LastPosition(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("eventstoredb: connect to %s: %w", redact(cfg.URL), err)
	}
	return s, nil
}

// clientLogger carries the client's log lines into slog.
func clientLogger(log *slog.Logger) esc.LoggingFunc {
	return func(level esc.LogLevel, format string, args ...any) {
		lv := slog.LevelDebug
		switch level {
		case esc.LogInfo:
			lv = slog.LevelInfo
		case esc.LogWarn:
			lv = slog.LevelWarn
		case esc.LogError:
			lv = slog.LevelError
		}
		msg := fmt.Sprintf(format, args...)
		if strings.Contains(msg, "context canceled") {
			lv = slog.LevelDebug // every subscription the store ends on purpose reports itself "dropped"
		}
		log.Log(context.Background(), lv, msg, "component", "eventstoredb-client")
	}
}

// Close releases the connection. Calls after Close fail with eventstore.ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Swap(true) {
		return nil
	}
	return s.client.Load().Close()
}

// conn is the client for one call.
func (s *Store) conn() *esc.Client { return s.client.Load() }

// fail maps the error of a call made on c. The v4 client closes itself for good when it cannot
// rediscover a node after losing one (a restart longer than its discovery attempts); a store that
// was not closed then swaps in a new client, so the next call reconnects instead of failing forever.
func (s *Store) fail(c *esc.Client, op string, err error) error {
	if hasCode(err, esc.ErrorCodeConnectionClosed) {
		if s.closed.Load() {
			return fmt.Errorf("%s: %w", op, eventstore.ErrClosed)
		}
		s.renew(c)
	}
	return mapErr(op, err)
}

func (s *Store) renew(failed *esc.Client) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() || s.client.Load() != failed {
		return // closed, or another call renewed it already
	}
	fresh, err := esc.NewClient(s.conf)
	if err != nil {
		s.log.Error("eventstoredb: cannot create a new client", "err", err)
		return
	}
	s.client.Store(fresh)
	failed.Close()
	s.log.Warn("eventstoredb: the client lost the server and gave up; the next call connects afresh")
}

func (s *Store) checkOpen() error {
	if s.closed.Load() {
		return eventstore.ErrClosed
	}
	return nil
}

// LastPosition implements eventstore.Store: the position of the newest event in $all, whoever wrote it.
func (s *Store) LastPosition(ctx context.Context) (eventstore.Position, error) {
	if err := s.checkOpen(); err != nil {
		return 0, err
	}
	last, ok, err := s.lastAll(ctx)
	if err != nil || !ok {
		return 0, err
	}
	return encodePos(last.Commit), nil
}

// lastAll returns the $all position of the newest event, false when $all is empty.
func (s *Store) lastAll(ctx context.Context) (esc.Position, bool, error) {
	return s.allBefore(ctx, esc.End{})
}

// allBefore reads $all backwards one event from pos: the newest event strictly before it.
func (s *Store) allBefore(ctx context.Context, pos esc.AllPosition) (esc.Position, bool, error) {
	c := s.conn()
	rs, err := c.ReadAll(ctx, esc.ReadAllOptions{Direction: esc.Backwards, From: pos}, 1)
	if err != nil {
		return esc.Position{}, false, s.fail(c, "read $all backwards", err)
	}
	defer rs.Close()
	ev, err := recvRead(rs)
	if err != nil {
		if isEOF(err) {
			return esc.Position{}, false, nil
		}
		return esc.Position{}, false, s.fail(c, "read $all backwards", err)
	}
	return ev.OriginalEvent().Position, true, nil
}

// mapErr turns the client's errors into the port's vocabulary, keeping the client's text.
func mapErr(op string, err error) error {
	var e *esc.Error
	if errors.As(err, &e) {
		switch e.Code() {
		case esc.ErrorCodeStreamDeleted:
			return fmt.Errorf("%s: %w (%v)", op, eventstore.ErrStreamDeleted, err)
		}
	}
	return fmt.Errorf("%s: %w", op, err)
}

func hasCode(err error, code esc.ErrorCode) bool {
	var e *esc.Error
	return errors.As(err, &e) && e.Code() == code
}

// serverName is the server's name for a port stream: the same string behind the namespace. It is only
// ever built from a tenant.Stream, so every name carries its tenant.
func (s *Store) serverName(st tenant.Stream) string { return s.ns + st.String() }
