// Package postgres is the key store shared by the replicas of a deployment: a table data_keys in
// the deployment's schema (the event store's schema when the event store is PostgreSQL, or the
// schema of a --keystore postgres:// URL whatever the event store).
//
// What "destroyed" means in PostgreSQL, honestly: Destroy UPDATEs the row to a tombstone (key NULL,
// destroyed_at set) and DestroyTenant DELETEs the tenant's rows. PostgreSQL's MVCC does not
// overwrite the old row version: it stays in the table's pages as a dead tuple until VACUUM prunes
// it, and VACUUM cannot prune a row version that a snapshot still open anywhere in the database (a
// long read, pg_dump, a session idle in transaction, a replication slot) may see. So after
// destructions a background loop runs VACUUM on data_keys until one ran with no snapshot older than
// the last destruction open (checked against pg_stat_activity, pg_prepared_xacts and
// pg_replication_slots before each VACUUM), retrying with backoff while one is, warning while it
// waits; a restart does it once at open (destructions of a process that stopped midway). Then the key
// bytes leave the table's pages (the table has fillfactor 50 so pages have room for tombstones). What
// it cannot reach: the write-ahead log until its segments are recycled, WAL archives, base backups
// and streaming replicas (which replay the same WAL). Deployments that need erasure to hold there
// must keep WAL retention and backups short (or encrypted under keys they rotate), and say so in
// their records-of-processing.
//
// Reads are cached in memory (one query per key, not per sealed event read) only while this store
// knows it receives the schema's notifications: a destruction is committed together with its
// NOTIFY, every replica drops the key from its cache when the notification arrives (milliseconds
// later). The listener proves that end to end: every few seconds it NOTIFYs a heartbeat of its own
// through the pool and caches only while its last heartbeat came back recently, so a path where
// notifications are lost (a cut connection, or a PgBouncer in transaction pooling mode, where LISTEN
// "succeeds" but nothing is delivered) turns the cache off within about 2×listenCheck (6 s).
// Options.NoCache turns it off outright (every Key is a query).
package postgres

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
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
	channel string          // notifications of destructions: ChannelName(schema)
	noCache bool
	hbEvery time.Duration // the listener's heartbeat period (listenCheck)
	hb      string        // this store's heartbeat payload
	// dropHeartbeats (tests) stops sending heartbeats, as a pooler that swallows notifications.
	dropHeartbeats atomic.Bool

	cmu       sync.Mutex
	cache     map[string][]byte // "tenant id" → live key, only while listening
	gen       uint64            // bumped by every invalidation: a read that raced one is not cached
	listening bool

	vacuum    chan struct{} // a pending VACUUM request (capacity 1)
	vmu       sync.Mutex
	vacuumXID uint64 // the newest destruction's transaction id a VACUUM still has to cover (0: none)
	retry     time.Duration
	quit      chan struct{}
	done      chan struct{}
	closeOnce sync.Once

	listenDone chan struct{}
}

// maxCached bounds the cache: past it, it starts empty again.
const maxCached = 100_000

func cacheKey(t, id string) string { return t + " " + id } // neither holds a space

var _ keystore.Store = (*Store)(nil)

// Options tune a Store; the zero value is the default.
type Options struct {
	Log *slog.Logger
	// NoCache reads every key from the table (no notifications needed): for a connection through a
	// pooler that does not deliver LISTEN/NOTIFY (PgBouncer in transaction pooling mode), although
	// the heartbeat turns the cache off there by itself.
	NoCache bool
	// VacuumRetry is the first wait before VACUUM is tried again while a snapshot older than a
	// destruction is open (doubling up to a minute); default one second.
	VacuumRetry time.Duration
	// HeartbeatEvery is how often the listener proves it receives notifications (default 3 s).
	HeartbeatEvery time.Duration
}

// ChannelName is the notification channel of schema's key table: fixed length whatever the schema's
// name (a channel is an identifier, and pg_notify refuses one of 64 bytes or more).
func ChannelName(schema string) string {
	h := sha256.Sum256([]byte(schema))
	return "crispy_keys_" + hex.EncodeToString(h[:8])
}

// Open connects to rawURL (a postgres:// URL; a schema= parameter is ignored here, the schema is
// given) and creates the table in schema when missing.
func Open(ctx context.Context, rawURL, schema string, log *slog.Logger) (*Store, error) {
	return OpenWith(ctx, rawURL, schema, Options{Log: log})
}

// OpenWith is Open with options.
func OpenWith(ctx context.Context, rawURL, schema string, o Options) (*Store, error) {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.VacuumRetry <= 0 {
		o.VacuumRetry = time.Second
	}
	if o.HeartbeatEvery <= 0 {
		o.HeartbeatEvery = listenCheck
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
	var nonce [8]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		pool.Close()
		return nil, fmt.Errorf("keystore: random: %w", err)
	}
	s := &Store{pool: pool, table: pgx.Identifier{schema, "data_keys"}.Sanitize(), log: log,
		connCfg: cfg.ConnConfig, channel: ChannelName(schema), noCache: o.NoCache, hbEvery: o.HeartbeatEvery,
		hb: heartbeatPrefix + hex.EncodeToString(nonce[:]), cache: map[string][]byte{}, retry: o.VacuumRetry,
		vacuum: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{}), listenDone: make(chan struct{})}
	if err := s.createTable(ctx, schema); err != nil {
		pool.Close()
		return nil, err
	}
	// Destructions a previous process committed but did not see vacuumed are covered by one VACUUM
	// now (the table is small); newer ones request theirs.
	if err := s.pool.QueryRow(ctx, `SELECT txid_current()`).Scan(&s.vacuumXID); err != nil {
		pool.Close()
		return nil, fmt.Errorf("keystore: %w", err)
	}
	s.requestVacuum()
	go s.vacuumer()
	if s.noCache {
		close(s.listenDone)
	} else {
		go s.listen()
	}
	return s, nil
}

// heartbeatPrefix starts the listener's own notifications; no "tenant id" payload starts with it.
const heartbeatPrefix = "!hb "

// createTable creates the schema and the table when missing. Replicas starting together on a new
// schema would race in PostgreSQL's catalogue (CREATE … IF NOT EXISTS is not safe concurrently: a
// unique violation on pg_namespace or pg_type), so the DDL runs under a transaction-level advisory
// lock keyed by the schema: the same lock as the event store's migrations, which create the same
// schema when both live in it.
func (s *Store) createTable(ctx context.Context, schema string) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('crispy.eventstore'), hashtext($1))`, schema); err != nil {
			return fmt.Errorf("lock the schema: %w", err)
		}
		_, err := tx.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+pgx.Identifier{schema}.Sanitize())
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+s.table+` (
	tenant       text NOT NULL,
	id           text NOT NULL,
	key          bytea,
	created_at   timestamptz NOT NULL DEFAULT now(),
	destroyed_at timestamptz,
	PRIMARY KEY (tenant, id),
	CHECK ((key IS NULL) = (destroyed_at IS NOT NULL))
) WITH (fillfactor = 50)`)
		return err
	})
	if err != nil {
		return fmt.Errorf("keystore: create %s: %w", s.table, err)
	}
	return nil
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
	// The cache is used only while this listener's own heartbeats, sent through the pool like the
	// destructions' notifications, come back: that LISTEN succeeded proves nothing behind a pooler
	// that drops notifications, and a connection cut silently (no reset) would block a wait for as
	// long as TCP keepalive takes.
	var heard time.Time
	beat := func() error {
		if s.dropHeartbeats.Load() {
			return nil // tests: notifications lost on the way
		}
		bctx, cancel := context.WithTimeout(ctx, s.hbEvery)
		defer cancel()
		_, err := s.pool.Exec(bctx, `SELECT pg_notify($1, $2)`, s.channel, s.hb)
		return err
	}
	if err := beat(); err != nil {
		return err
	}
	next := time.Now().Add(s.hbEvery)
	for {
		wctx, cancel := context.WithDeadline(ctx, next)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil && n.Payload == s.hb:
			heard = time.Now()
			s.cmu.Lock()
			s.listening = true
			s.cmu.Unlock()
			continue
		case err == nil && strings.HasPrefix(n.Payload, heartbeatPrefix):
			continue // another replica's heartbeat
		case err == nil:
			s.invalidate(n.Payload, false)
			continue
		case ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded):
			return err
		}
		if time.Since(heard) > 2*s.hbEvery {
			return errors.New("no heartbeat came back through the notification channel")
		}
		if err := beat(); err != nil {
			return err
		}
		next = time.Now().Add(s.hbEvery)
	}
}

// Caching says whether Key serves from memory now (the listener hears its own heartbeats).
func (s *Store) Caching() bool {
	s.cmu.Lock()
	defer s.cmu.Unlock()
	return s.listening
}

// listenCheck is the default heartbeat period: lost notifications turn the cache off within about
// twice this.
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

// Destroy implements keystore.Store: the row becomes a tombstone, then the vacuumer is told.
func (s *Store) Destroy(ctx context.Context, t tenant.ID, id string) error {
	if err := keystore.Validate(t, id); err != nil {
		return err
	}
	// The tombstone and its notification commit together: no replica keeps the key cached past
	// the notification's arrival.
	var xid uint64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO `+s.table+` (tenant, id, key, destroyed_at) VALUES ($1, $2, NULL, now())
ON CONFLICT (tenant, id) DO UPDATE SET key = NULL, destroyed_at = COALESCE(`+s.table+`.destroyed_at, now())`, t.String(), id); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, s.channel, cacheKey(t.String(), id)); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `SELECT txid_current()`).Scan(&xid)
	})
	s.invalidate(cacheKey(t.String(), id), false) // this replica at once, whatever the outcome
	if err != nil {
		return fmt.Errorf("%w: keystore: destroy %s: %w", keystore.ErrUnavailable, id, err)
	}
	s.destroyed(xid)
	return nil
}

// DestroyTenant implements keystore.Store: the tenant's rows are deleted, then the vacuumer is told.
func (s *Store) DestroyTenant(ctx context.Context, t tenant.ID) error {
	if t.IsZero() {
		return fmt.Errorf("%w: no tenant", keystore.ErrInvalid)
	}
	var xid uint64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM `+s.table+` WHERE tenant = $1`, t.String()); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, s.channel, cacheKey(t.String(), "")); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `SELECT txid_current()`).Scan(&xid)
	})
	s.invalidate(cacheKey(t.String(), ""), false)
	if err != nil {
		return fmt.Errorf("%w: keystore: destroy tenant %s: %w", keystore.ErrUnavailable, t, err)
	}
	s.destroyed(xid)
	return nil
}

// Vacuum runs VACUUM on the key table now (tests, and the background vacuumer).
func (s *Store) Vacuum(ctx context.Context) error {
	if _, err := s.pool.Exec(ctx, `VACUUM `+s.table); err != nil {
		return fmt.Errorf("keystore: vacuum %s: %w", s.table, err)
	}
	return nil
}

// destroyed records that the transaction xid left a dead key row for VACUUM to remove.
func (s *Store) destroyed(xid uint64) {
	s.vmu.Lock()
	s.vacuumXID = max(s.vacuumXID, xid)
	s.vmu.Unlock()
	s.requestVacuum()
}

// Pending says whether a destruction still waits for a VACUUM that could remove its row versions.
func (s *Store) Pending() bool {
	s.vmu.Lock()
	defer s.vmu.Unlock()
	return s.vacuumXID != 0
}

func (s *Store) requestVacuum() {
	select {
	case s.vacuum <- struct{}{}:
	default: // one is pending already: it will cover this destruction too
	}
}

// olderSnapshots counts what can still see row versions that transaction xid made dead, so that
// VACUUM may not remove them: another backend of this database whose snapshot (backend_xmin) or
// own transaction (backend_xid) is not newer than xid, a prepared transaction, a replication slot.
// xid is a 64-bit txid; the 32-bit xids of the catalogue are compared through age(), which counts
// back from the current transaction in the same wraparound-aware way.
func (s *Store) olderSnapshots(ctx context.Context, xid uint64) (int, error) {
	var n int
	err := s.pool.QueryRow(ctx, `WITH d AS (SELECT age((($1::bigint) % 4294967296)::text::xid) AS a)
SELECT
  (SELECT count(*) FROM pg_stat_activity, d WHERE pid <> pg_backend_pid() AND datname = current_database()
     AND ((backend_xmin IS NOT NULL AND age(backend_xmin) >= d.a) OR (backend_xid IS NOT NULL AND age(backend_xid) >= d.a)))
+ (SELECT count(*) FROM pg_prepared_xacts, d WHERE database = current_database() AND age(transaction) >= d.a)
+ (SELECT count(*) FROM pg_replication_slots, d WHERE (xmin IS NOT NULL AND age(xmin) >= d.a)
     OR (catalog_xmin IS NOT NULL AND age(catalog_xmin) >= d.a))`, int64(xid)).Scan(&n)
	return n, err
}

// vacuumOnce runs VACUUM for the destructions up to now when nothing older holds their row
// versions, and says whether they are done (false: try again later).
func (s *Store) vacuumOnce(ctx context.Context) (bool, error) {
	s.vmu.Lock()
	xid := s.vacuumXID
	s.vmu.Unlock()
	if xid == 0 {
		return true, nil
	}
	n, err := s.olderSnapshots(ctx, xid)
	if err != nil {
		return false, fmt.Errorf("keystore: look for open snapshots: %w", err)
	}
	// VACUUM runs either way (it removes what it can, and autovacuum may never come to a table this
	// small); it counts as covering the destructions only when nothing could see them any more.
	if err := s.Vacuum(ctx); err != nil {
		return false, err
	}
	if n > 0 {
		return false, nil
	}
	s.vmu.Lock()
	if s.vacuumXID == xid {
		s.vacuumXID = 0
	}
	done := s.vacuumXID == 0
	s.vmu.Unlock()
	return done, nil
}

// vacuumer runs VACUUM after destructions until one covered them, retrying with backoff (up to a
// minute) while an older snapshot is open or VACUUM fails, and warning while keys wait.
func (s *Store) vacuumer() {
	defer close(s.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { <-s.quit; cancel() }()
	wait := s.retry
	var since time.Time // when the current wait for a VACUUM that covers the destructions began
	var retry <-chan time.Time
	for {
		select {
		case <-s.quit:
			return
		case <-s.vacuum:
		case <-retry:
		}
		retry = nil
		done, err := s.vacuumOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		if done {
			wait, since = s.retry, time.Time{}
			continue
		}
		if since.IsZero() {
			since = time.Now()
		}
		if err != nil {
			s.log.Warn("key store vacuum failed; destroyed keys stay in dead row versions until a later one succeeds", "err", err)
		} else if time.Since(since) >= time.Minute {
			s.log.Warn("key store: destroyed keys still wait for VACUUM: a transaction or snapshot older than their destruction is open in the database (pg_stat_activity backend_xmin, prepared transactions or replication slots); retrying", "waiting", time.Since(since).Round(time.Second).String())
		}
		retry = time.After(wait)
		wait = min(2*wait, time.Minute)
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
