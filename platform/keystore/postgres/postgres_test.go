package postgres_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/crispy-enigma/crispy/platform/eventstore/postgres/pgtest"
	"github.com/crispy-enigma/crispy/platform/keystore"
	"github.com/crispy-enigma/crispy/platform/keystore/keystoretest"
	"github.com/crispy-enigma/crispy/platform/keystore/postgres"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

func open(t *testing.T, url, schema string) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(context.Background(), url, schema, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestIntegrationSuite(t *testing.T) {
	url := pgtest.URL(t)
	keystoretest.Run(t, func(t *testing.T) keystore.Store { return open(t, url, pgtest.Schema(t, url)) })
}

// Two replicas share the table: a key created through one is read by the other (and cached by
// both), and destroyed through the other it is refused by the first as soon as the destruction's
// notification reaches it (polled: the delivery is asynchronous, milliseconds here).
func TestIntegrationReplicasShareKeys(t *testing.T) {
	url := pgtest.URL(t)
	schema := pgtest.Schema(t, url)
	a, b := open(t, url, schema), open(t, url, schema)
	defer a.Close()
	defer b.Close()
	ctx, acme := context.Background(), tenant.MustParse("acme")
	k, err := a.Create(ctx, acme, "session/1")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := b.Key(ctx, acme, "session/1"); err != nil || !bytes.Equal(got, k) {
		t.Fatalf("other replica: %x, %v", got, err)
	}
	if err := b.Destroy(ctx, acme, "session/1"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Key(ctx, acme, "session/1"); !errors.Is(err, keystore.ErrDestroyed) {
		t.Fatalf("the destroying replica still reads the key: %v", err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		_, err := a.Key(ctx, acme, "session/1")
		if errors.Is(err, keystore.ErrDestroyed) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the first replica still reads a key destroyed through the other: %v", err)
		}
	}
	// A whole tenant, likewise.
	if _, err := a.Create(ctx, acme, "session/2"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Key(ctx, acme, "session/2"); err != nil {
		t.Fatal(err)
	}
	if err := a.DestroyTenant(ctx, acme); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		_, err := b.Key(ctx, acme, "session/2")
		if errors.Is(err, keystore.ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the other replica still reads a key of a destroyed tenant: %v", err)
		}
	}
}

// After Destroy and VACUUM the key's bytes are in no page of the table's file (read through
// pg_read_binary_file after a CHECKPOINT; skipped when the test role may not read server files).
// The WAL still holds them until its segments are recycled: see the package documentation.
func TestIntegrationDestroyedKeyLeavesTheTable(t *testing.T) {
	url := pgtest.URL(t)
	schema := pgtest.Schema(t, url)
	s := open(t, url, schema)
	defer s.Close()
	ctx, acme := context.Background(), tenant.MustParse("acme")
	k, err := s.Create(ctx, acme, "session/gone")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	table := pgx.Identifier{schema, "data_keys"}.Sanitize()
	readPages := func() ([]byte, bool) {
		if _, err := conn.Exec(ctx, "CHECKPOINT"); err != nil {
			return nil, false
		}
		var path string
		if err := conn.QueryRow(ctx, "SELECT pg_relation_filepath($1::regclass)", table).Scan(&path); err != nil {
			return nil, false
		}
		var b []byte
		if err := conn.QueryRow(ctx, "SELECT pg_read_binary_file($1)", path).Scan(&b); err != nil {
			return nil, false
		}
		return b, true
	}
	if b, ok := readPages(); ok && !bytes.Contains(b, k) {
		t.Fatal("the live key is not in the table's file (the check below could not fail)")
	}
	if err := s.Destroy(ctx, acme, "session/gone"); err != nil {
		t.Fatal(err)
	}
	if err := s.Vacuum(ctx); err != nil {
		t.Fatal(err)
	}
	b, ok := readPages()
	if !ok {
		t.Skip("the test role cannot read the table's file (pg_read_binary_file); rows checked by the suite")
	}
	if bytes.Contains(b, k) {
		t.Fatal("the destroyed key's bytes are still in the table's file after VACUUM")
	}
}

// A database that cannot be reached is 503 storage_unavailable (keystore.ErrUnavailable), not an
// internal error: a write that needs a key is refused like one the event store refuses.
func TestIntegrationUnreachableDatabaseIsUnavailable(t *testing.T) {
	url := pgtest.URL(t)
	schema := pgtest.Schema(t, url)
	proxy := pgtest.NewProxy(t, url)
	s := open(t, proxy.Via(t, url), schema)
	defer s.Close()
	ctx, acme := context.Background(), tenant.MustParse("acme")
	if _, err := s.Create(ctx, acme, "session/1"); err != nil {
		t.Fatal(err)
	}
	proxy.Cut()
	if _, err := s.Create(ctx, acme, "session/2"); !errors.Is(err, keystore.ErrUnavailable) {
		t.Fatalf("Create with the database cut: %v, want ErrUnavailable", err)
	}
	// A key never read (not cached) cannot be read either. (One cached may still be served until
	// the store notices its listening connection is cut: no destruction can happen meanwhile.)
	if _, err := s.Key(ctx, acme, "session/3"); !errors.Is(err, keystore.ErrUnavailable) {
		t.Fatalf("Key with the database cut: %v, want ErrUnavailable", err)
	}
}

// BenchmarkIntegrationKey: one key read, what opening one sealed event costs on PostgreSQL (served
// from the cache while the store listens for destructions).
func BenchmarkIntegrationKey(b *testing.B) {
	url := pgtest.URL(b)
	s, err := postgres.Open(context.Background(), url, pgtest.Schema(b, url), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx, acme := context.Background(), tenant.MustParse("acme")
	if _, err := s.Create(ctx, acme, "session/1"); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.Key(ctx, acme, "session/1"); err != nil {
			b.Fatal(err)
		}
	}
}

// F17: replicas starting together on a new schema all open (the DDL is serialised by an advisory
// lock; unserialised, CREATE … IF NOT EXISTS races in the catalogue and some fail).
func TestIntegrationConcurrentOpensOnANewSchema(t *testing.T) {
	url := pgtest.URL(t)
	for round := 0; round < 5; round++ {
		schema := pgtest.Schema(t, url)
		errs := make(chan error, 4)
		for range 4 {
			go func() {
				s, err := postgres.Open(context.Background(), url, schema, nil)
				if err == nil {
					err = s.Close()
				}
				errs <- err
			}()
		}
		for range 4 {
			if err := <-errs; err != nil {
				t.Fatalf("round %d: a replica opening with others on a new schema failed: %v", round, err)
			}
		}
	}
}

// NoCache: every Key is a query, so a key destroyed without a notification reaching this replica
// is refused at once.
func TestIntegrationNoCache(t *testing.T) {
	url := pgtest.URL(t)
	schema := pgtest.Schema(t, url)
	ctx, acme := context.Background(), tenant.MustParse("acme")
	s, err := postgres.OpenWith(ctx, url, schema, postgres.Options{NoCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Create(ctx, acme, "session/1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Key(ctx, acme, "session/1"); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `UPDATE `+pgx.Identifier{schema, "data_keys"}.Sanitize()+` SET key = NULL, destroyed_at = now()`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Key(ctx, acme, "session/1"); !errors.Is(err, keystore.ErrDestroyed) {
		t.Fatalf("NoCache served a destroyed key: %v", err)
	}
	if s.Caching() {
		t.Fatal("NoCache reports caching")
	}
}
