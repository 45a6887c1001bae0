package postgres

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/crispy-enigma/crispy/platform/eventstore/postgres/pgtest"
	"github.com/crispy-enigma/crispy/platform/keystore"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// tableFile reads the key table's file after a CHECKPOINT (false when the test role may not read
// server files).
func tableFile(t *testing.T, conn *pgx.Conn, schema string) ([]byte, bool) {
	t.Helper()
	ctx := context.Background()
	if _, err := conn.Exec(ctx, "CHECKPOINT"); err != nil {
		return nil, false
	}
	var path string
	if err := conn.QueryRow(ctx, "SELECT pg_relation_filepath($1::regclass)", pgx.Identifier{schema, "data_keys"}.Sanitize()).Scan(&path); err != nil {
		t.Fatal(err)
	}
	var b []byte
	if err := conn.QueryRow(ctx, "SELECT pg_read_binary_file($1)", path).Scan(&b); err != nil {
		return nil, false
	}
	return b, true
}

// olderSnapshot is what destroyedUnderOlderSnapshot leaves to its caller, which commits tx to close
// the snapshot, reads the table through conn, and closes s.
type olderSnapshot struct {
	s      *Store
	key    []byte
	conn   *pgx.Conn // reads the table's file
	tx     pgx.Tx    // the older snapshot
	schema string
}

// destroyedUnderOlderSnapshot is where both VACUUM tests start: a store opened with opts, a key
// created and then destroyed while another connection holds a snapshot older than the destruction
// (a long report, pg_dump, a replica's catch-up), and one VACUUM that must not count as covering it.
func destroyedUnderOlderSnapshot(t *testing.T, opts Options) olderSnapshot {
	t.Helper()
	url := pgtest.URL(t)
	schema := pgtest.Schema(t, url)
	ctx, acme := context.Background(), tenant.MustParse("acme")
	s, err := OpenWith(ctx, url, schema, opts)
	if err != nil {
		t.Fatal(err)
	}
	k, err := s.Create(ctx, acme, "session/gone")
	if err != nil {
		s.Close()
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		s.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(ctx) })
	if _, ok := tableFile(t, conn, schema); !ok {
		s.Close()
		t.Skip("the test role cannot read the table's file (pg_read_binary_file)")
	}
	reader, err := pgx.Connect(ctx, url)
	if err != nil {
		s.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { reader.Close(ctx) })
	tx, err := reader.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
	if err != nil {
		s.Close()
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT count(*) FROM "+s.table); err != nil {
		s.Close()
		t.Fatal(err)
	}
	if err := s.Destroy(ctx, acme, "session/gone"); err != nil {
		s.Close()
		t.Fatal(err)
	}
	if done, err := s.vacuumOnce(ctx); err != nil || done {
		s.Close()
		t.Fatalf("a VACUUM with an older snapshot open counted as covering the destruction: done=%v err=%v", done, err)
	}
	return olderSnapshot{s: s, key: k, conn: conn, tx: tx, schema: schema}
}

// F4: a snapshot older than the destruction keeps VACUUM from removing the key's row version; the
// store keeps the destruction pending while it is open and vacuums again once it closed, after
// which the key's bytes are in no page of the table's file.
func TestIntegrationVacuumWaitsForOlderSnapshots(t *testing.T) {
	o := destroyedUnderOlderSnapshot(t, Options{VacuumRetry: 20 * time.Millisecond})
	s, k, conn, tx, schema, ctx := o.s, o.key, o.conn, o.tx, o.schema, context.Background()
	defer s.Close()
	if !s.Pending() {
		t.Fatal("the destruction is not pending while an older snapshot is open")
	}
	if b, _ := tableFile(t, conn, schema); !bytes.Contains(b, k) {
		t.Fatal("the key's bytes are gone while an older snapshot is open (the check below could not fail)")
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); s.Pending(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the destruction is still pending after the older snapshot closed")
		}
	}
	if b, _ := tableFile(t, conn, schema); bytes.Contains(b, k) {
		t.Fatal("the destroyed key's bytes are still in the table's file after the snapshot closed")
	}
}

// F19: the cache is used only while the listener hears its own heartbeats. When notifications stop
// arriving with the connection still up (PgBouncer in transaction pooling: LISTEN "works", nothing
// is delivered), the cache turns off and a key destroyed elsewhere is refused.
func TestIntegrationCacheOffWithoutHeartbeats(t *testing.T) {
	url := pgtest.URL(t)
	schema := pgtest.Schema(t, url)
	ctx, acme := context.Background(), tenant.MustParse("acme")
	s, err := OpenWith(ctx, url, schema, Options{HeartbeatEvery: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// destroySilently destroys a key the way a destruction whose notification is lost looks here.
	destroySilently := func(id string) {
		t.Helper()
		if _, err := conn.Exec(ctx, `UPDATE `+s.table+` SET key = NULL, destroyed_at = now() WHERE tenant = 'acme' AND id = $1`, id); err != nil {
			t.Fatal(err)
		}
	}
	for deadline := time.Now().Add(30 * time.Second); !s.Caching(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the cache never turned on")
		}
	}
	if _, err := s.Create(ctx, acme, "session/1"); err != nil {
		t.Fatal(err)
	}
	destroySilently("session/1")
	if _, err := s.Key(ctx, acme, "session/1"); err != nil {
		t.Fatalf("the cache is not used while heartbeats arrive (the check below could not fail): %v", err)
	}
	s.dropHeartbeats.Store(true)
	for deadline := time.Now().Add(30 * time.Second); s.Caching(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the cache stays on although no heartbeat comes back")
		}
	}
	if _, err := s.Key(ctx, acme, "session/1"); !errors.Is(err, keystore.ErrDestroyed) {
		t.Fatalf("a key destroyed while notifications were lost is still served: %v", err)
	}
}

// F19: the channel's name is fixed-length: a schema name of 60 bytes (pg_notify refuses channels of
// 64 bytes or more) still destroys keys, and the other replica hears it.
func TestIntegrationLongSchemaName(t *testing.T) {
	url := pgtest.URL(t)
	schema := pgtest.Schema(t, url) + "_" + string(bytes.Repeat([]byte("s"), 60-len("crispy_it_000000000000_")))
	if len(schema) != 60 {
		t.Fatalf("schema name of %d bytes", len(schema))
	}
	t.Cleanup(func() {
		conn, err := pgx.Connect(context.Background(), url)
		if err != nil {
			return
		}
		defer conn.Close(context.Background())
		_, _ = conn.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
	})
	ctx, acme := context.Background(), tenant.MustParse("acme")
	a, err := OpenWith(ctx, url, schema, Options{HeartbeatEvery: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Open(ctx, url, schema, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for deadline := time.Now().Add(30 * time.Second); !a.Caching(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the cache never turned on")
		}
	}
	if _, err := a.Create(ctx, acme, "session/1"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Key(ctx, acme, "session/1"); err != nil {
		t.Fatal(err)
	}
	if err := b.Destroy(ctx, acme, "session/1"); err != nil {
		t.Fatalf("destroy under a 60-byte schema name: %v", err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if _, err := a.Key(ctx, acme, "session/1"); errors.Is(err, keystore.ErrDestroyed) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the other replica still serves a key destroyed under a long schema name")
		}
	}
}

// F4 across a restart: a destruction whose VACUUM was still pending when the process stopped is
// covered by the VACUUM every open runs, so its key's bytes leave the table without another
// destruction.
func TestIntegrationOpenVacuumsWhatAStoppedProcessLeft(t *testing.T) {
	url := pgtest.URL(t)
	o := destroyedUnderOlderSnapshot(t, Options{VacuumRetry: time.Hour}) // no retry before the stop
	s, k, conn, tx, schema, ctx := o.s, o.key, o.conn, o.tx, o.schema, context.Background()
	if err := s.Close(); err != nil { // stops with the destruction pending
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if b, _ := tableFile(t, conn, schema); !bytes.Contains(b, k) {
		t.Fatal("the key's bytes left without a VACUUM after the snapshot closed (the check below could not fail)")
	}
	s2, err := OpenWith(ctx, url, schema, Options{VacuumRetry: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	for deadline := time.Now().Add(30 * time.Second); s2.Pending(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the VACUUM at open never covered the earlier destruction")
		}
	}
	if b, _ := tableFile(t, conn, schema); bytes.Contains(b, k) {
		t.Fatal("the destroyed key's bytes are still in the table's file after a restart")
	}
}
