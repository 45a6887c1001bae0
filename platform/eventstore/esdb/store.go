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
	// The client's discovery retries (ten attempts, each waiting up to its gossip timeout) do not
	// all honour ctx: against an address that accepts connections and never answers, the first
	// read took 50 s whatever ctx's deadline. Wait for it only as long as ctx allows.
	checked := make(chan error, 1)
	go func() {
		_, err := s.LastPosition(ctx)
		checked <- err
	}()
	select {
	case err = <-checked:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
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
		if s.renew(c) {
			return fmt.Errorf("%w: %w", errRenewed, mapErr(op, err))
		}
	}
	return mapErr(op, err)
}

// errRenewed marks a call that failed only because its client had given up (it never reached a
// server) and a fresh client is now in place: a read may simply be made again.
var errRenewed = errors.New("eventstoredb client renewed")

// retryRenewed runs a read once more when it failed on a client that was then renewed, so the first
// call after a long server outage succeeds instead of reporting the old client's state.
func retryRenewed[T any](read func() (T, error)) (T, error) {
	v, err := read()
	if errors.Is(err, errRenewed) {
		return read()
	}
	return v, err
}

// renew swaps in a new client for failed; it reports whether a fresh client is in place (made here
// or by a concurrent call).
func (s *Store) renew(failed *esc.Client) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return false
	}
	if s.client.Load() != failed {
		return true // another call renewed it already
	}
	fresh, err := esc.NewClient(s.conf)
	if err != nil {
		s.log.Error("eventstoredb: cannot create a new client", "err", err)
		return false
	}
	s.client.Store(fresh)
	failed.Close()
	s.log.Warn("eventstoredb: the client lost the server and gave up; the next call connects afresh")
	return true
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
