// Package postgres is the key store shared by the replicas of a deployment whose event store is
// PostgreSQL: a table data_keys in the deployment's schema.
//
// What "destroyed" means in PostgreSQL, honestly: Destroy UPDATEs the row to a tombstone (key NULL,
// destroyed_at set) and DestroyTenant DELETEs the tenant's rows. PostgreSQL's MVCC does not
// overwrite the old row version: it stays in the table's pages as a dead tuple until VACUUM prunes
// it, and in the write-ahead log until its segments are recycled (and in any WAL archive, base
// backup or streaming replica). What this store does about the part it can reach: after every
// destruction it runs VACUUM on data_keys (in the background, at most one at a time), which prunes the
// dead tuples and compacts each page, so the key bytes leave the table's live pages within seconds;
// the table is created with fillfactor 50 so pages have room for tombstones and stay few. It cannot
// reach the WAL, archives, backups or replicas: deployments that need erasure to hold there must
// keep WAL retention and backups short (or encrypted under keys they rotate), and say so in their
// records-of-processing.
//
// Reads are cached in memory (one query per key, not per sealed event read) only while this store
// listens on the schema's notification channel: a destruction is committed together with its
// NOTIFY, every replica drops the key from its cache when the notification arrives (milliseconds
// later), and a replica whose listening connection is down caches nothing and reads every key from
// the table (a connection cut silently is noticed within about 6 s: the wait is bounded and the
// connection pinged). So a key destroyed through one replica is refused by the others as soon as the
// notification reaches them.
package postgres

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/crispy-enigma/crispy/platform/keystore"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// Store is the PostgreSQL key store.
type Store struct {
	pool  *pgxpool.Pool
	table string // "schema".data_keys, sanitized
	log   *slog.Logger

	connCfg *pgx.ConnConfig // for the listening connection
	channel string          // notifications of destructions: "<schema>_data_keys"

	cmu       sync.Mutex
	cache     map[string][]byte // "tenant id" → live key, only while listening
	gen       uint64            // bumped by every invalidation: a read that raced one is not cached
	listening bool

	vacuum    chan struct{} // a pending VACUUM request (capacity 1)
	quit      chan struct{}
	done      chan struct{}
	closeOnce sync.Once

	listenDone chan struct{}
}

// maxCached bounds the cache: past it, it starts empty again.
const maxCached = 100_000

func cacheKey(t, id string) string { return t + " " + id } // neither holds a space

var _ keystore.Store = (*Store)(nil)

// Open connects to rawURL (a postgres:// URL; a schema= parameter is ignored here, the schema is
// given) and creates the table in schema when missing.
func Open(ctx context.Context, rawURL, schema string, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("keystore: postgres URL does not parse")
	}
	q := u.Query()
	q.Del("schema")
	u.RawQuery = q.Encode()
	cfg, err := pgxpool.ParseConfig(u.String())
	if err != nil {
		return nil, fmt.Errorf("keystore: postgres URL: %w", err)
	}
	cfg.MaxConns = 4
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("keystore: postgres pool: %w", err)
	}
	s := &Store{pool: pool, table: pgx.Identifier{schema, "data_keys"}.Sanitize(), log: log,
		connCfg: cfg.ConnConfig, channel: schema + "_data_keys", cache: map[string][]byte{},
		vacuum: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{}), listenDone: make(chan struct{})}
	ddl := `CREATE SCHEMA IF NOT EXISTS ` + pgx.Identifier{schema}.Sanitize() + `;
CREATE TABLE IF NOT EXISTS ` + s.table + ` (
	tenant       text NOT NULL,
	id           text NOT NULL,
	key          bytea,
	created_at   timestamptz NOT NULL DEFAULT now(),
	destroyed_at timestamptz,
	PRIMARY KEY (tenant, id),
	CHECK ((key IS NULL) = (destroyed_at IS NOT NULL))
) WITH (fillfactor = 50)`
	if _, err := pool.Exec(ctx, ddl); err != nil {
		pool.Close()
		return nil, fmt.Errorf("keystore: create %s: %w", s.table, err)
	}
	go s.vacuumer()
	go s.listen()
	return s, nil
}

// listen keeps a connection listening on the channel, dropping each destroyed key from the cache;
// while it is down the cache is empty and unused.
func (s *Store) listen() {
	defer close(s.listenDone)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { <-s.quit; cancel() }()
	for {
		err := s.listenOnce(ctx)
		s.invalidate("", true)
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("key store: notifications of destroyed keys cut; reading every key from the table until they are back", "err", err)
		select {
		case <-s.quit:
			return
		case <-time.After(time.Second):
		}
	}
}

func (s *Store) listenOnce(ctx context.Context) error {
	conn, err := pgx.ConnectConfig(ctx, s.connCfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{s.channel}.Sanitize()); err != nil {
		return err
	}
	s.cmu.Lock()
	s.listening = true
	s.cmu.Unlock()
	for {
		// A connection cut silently (no reset) would block here for as long as TCP keepalive
		// takes: the wait is bounded and the connection pinged, so the cache is dropped within
		// about listenCheck of losing the notifications.
		wctx, cancel := context.WithTimeout(ctx, listenCheck)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		if err == nil {
			s.invalidate(n.Payload, false)
			continue
		}
		if ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		pctx, cancel := context.WithTimeout(ctx, listenCheck)
		err = conn.Ping(pctx)
		cancel()
		if err != nil {
			return err
		}
	}
}

// listenCheck bounds how long a lost listening connection goes unnoticed (twice this at most).
const listenCheck = 3 * time.Second

// invalidate drops the key named by payload ("tenant id"), or every key of a tenant ("tenant "),
// or, with stop, everything (and the cache stays unused until listening again).
func (s *Store) invalidate(payload string, stop bool) {
	s.cmu.Lock()
	defer s.cmu.Unlock()
	s.gen++
	switch {
	case stop:
		s.listening = false
		clear(s.cache)
	case strings.HasSuffix(payload, " "):
		for k, v := range s.cache {
			if strings.HasPrefix(k, payload) {
				clear(v)
				delete(s.cache, k)
			}
		}
	default:
		clear(s.cache[payload])
		delete(s.cache, payload)
	}
}

// Key implements keystore.Store.
func (s *Store) Key(ctx context.Context, t tenant.ID, id string) ([]byte, error) {
	if err := keystore.Validate(t, id); err != nil {
		return nil, err
	}
	ck := cacheKey(t.String(), id)
	s.cmu.Lock()
	if k, ok := s.cache[ck]; ok && s.listening {
		s.cmu.Unlock()
		return append([]byte(nil), k...), nil
	}
	gen, listening := s.gen, s.listening
	s.cmu.Unlock()
	var key []byte
	err := s.pool.QueryRow(ctx, `SELECT key FROM `+s.table+` WHERE tenant = $1 AND id = $2`, t.String(), id).Scan(&key)
	if err == nil && key != nil && listening {
		s.cmu.Lock()
		if s.listening && s.gen == gen { // no destruction was notified while we read
			if len(s.cache) >= maxCached {
				clear(s.cache)
			}
			s.cache[ck] = append([]byte(nil), key...)
		}
		s.cmu.Unlock()
	}
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, keystore.ErrNotFound
	case err != nil:
		return nil, fmt.Errorf("%w: keystore: read %s: %w", keystore.ErrUnavailable, id, err)
	case key == nil:
		return nil, keystore.ErrDestroyed
	}
	return key, nil
}

// Create implements keystore.Store: INSERT … ON CONFLICT DO NOTHING, then the row that won, so
// replicas creating the same key at once agree on one. Committed (WAL flushed) before it returns.
func (s *Store) Create(ctx context.Context, t tenant.ID, id string) ([]byte, error) {
	if k, err := s.Key(ctx, t, id); !errors.Is(err, keystore.ErrNotFound) {
		return k, err
	}
	key := make([]byte, keystore.KeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("keystore: random key: %w", err)
	}
	if _, err := s.pool.Exec(ctx, `INSERT INTO `+s.table+` (tenant, id, key) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`, t.String(), id, key); err != nil {
		return nil, fmt.Errorf("%w: keystore: create %s: %w", keystore.ErrUnavailable, id, err)
	}
	return s.Key(ctx, t, id)
}

// Destroy implements keystore.Store: the row becomes a tombstone, then VACUUM is requested.
func (s *Store) Destroy(ctx context.Context, t tenant.ID, id string) error {
	if err := keystore.Validate(t, id); err != nil {
		return err
	}
	// The tombstone and its notification commit together: no replica keeps the key cached past
	// the notification's arrival.
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO `+s.table+` (tenant, id, key, destroyed_at) VALUES ($1, $2, NULL, now())
ON CONFLICT (tenant, id) DO UPDATE SET key = NULL, destroyed_at = COALESCE(`+s.table+`.destroyed_at, now())`, t.String(), id); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, s.channel, cacheKey(t.String(), id))
		return err
	})
	s.invalidate(cacheKey(t.String(), id), false) // this replica at once, whatever the outcome
	if err != nil {
		return fmt.Errorf("%w: keystore: destroy %s: %w", keystore.ErrUnavailable, id, err)
	}
	s.requestVacuum()
	return nil
}

// DestroyTenant implements keystore.Store: the tenant's rows are deleted, then VACUUM is requested.
func (s *Store) DestroyTenant(ctx context.Context, t tenant.ID) error {
	if t.IsZero() {
		return fmt.Errorf("%w: no tenant", keystore.ErrInvalid)
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM `+s.table+` WHERE tenant = $1`, t.String()); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, s.channel, cacheKey(t.String(), ""))
		return err
	})
	s.invalidate(cacheKey(t.String(), ""), false)
	if err != nil {
		return fmt.Errorf("%w: keystore: destroy tenant %s: %w", keystore.ErrUnavailable, t, err)
	}
	s.requestVacuum()
	return nil
}

// Vacuum runs VACUUM on the key table now (tests, and the background vacuumer).
func (s *Store) Vacuum(ctx context.Context) error {
	if _, err := s.pool.Exec(ctx, `VACUUM `+s.table); err != nil {
		return fmt.Errorf("keystore: vacuum %s: %w", s.table, err)
	}
	return nil
}

func (s *Store) requestVacuum() {
	select {
	case s.vacuum <- struct{}{}:
	default: // one is pending already: it will cover this destruction too
	}
}

func (s *Store) vacuumer() {
	defer close(s.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { <-s.quit; cancel() }()
	for {
		select {
		case <-s.quit:
			return
		case <-s.vacuum:
			if err := s.Vacuum(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("key store vacuum failed; destroyed keys stay in dead tuples until the next one", "err", err)
			}
		}
	}
}

// Close stops the vacuumer and closes the pool.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.quit)
		<-s.done
		<-s.listenDone
		s.pool.Close()
	})
	return nil
}
