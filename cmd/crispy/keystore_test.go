package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/crispy-enigma/crispy/platform/eventstore/postgres/pgtest"
)

// --keystore postgres://… puts the data keys in that schema's data_keys table whatever the event
// store (here the embedded one): nothing under <data-dir>/keys, the key rows in PostgreSQL, and the
// sealed document still searchable (its key is read back from there).
func TestIntegrationKeyStoreFlagOnPostgres(t *testing.T) {
	url := pgtest.URL(t)
	schema := pgtest.Schema(t, url)
	dir := t.TempDir()
	cfg := config{DataDir: dir, EventStore: "embedded", KeyStore: pgtest.WithSchema(t, url, schema), Search: "embedded", Bus: "gochannel",
		RateLimitFail: "open", PluginsDir: filepath.Join(dir, "no-plugins"), LogLevel: "error", ShutdownTimeout: 5 * time.Second}
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	srv, stop := serveApp(t, cfg, buildOptions{})
	defer stop()
	if r := call(t, srv, "POST", "/ingest", map[string]any{"docId": "d1", "text": "a text about shared key stores"}); r.status != 200 {
		t.Fatalf("ingest: %d %s", r.status, r.raw)
	}
	if _, err := os.Stat(filepath.Join(dir, "keys")); !os.IsNotExist(err) {
		t.Fatalf("--keystore postgres://… still made <data-dir>/keys: %v", err)
	}
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(context.Background(), `SELECT count(*) FROM `+pgx.Identifier{schema, "data_keys"}.Sanitize()+` WHERE key IS NOT NULL`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("no data key in the --keystore schema after a sealed ingest")
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		r := call(t, srv, "POST", "/search", map[string]any{"query": "shared key stores", "answer": false})
		if r.status == 200 && strings.Contains(r.raw, `"d1"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("search never found the document sealed under a PostgreSQL key: %d %s", r.status, r.raw)
		}
	}
}

// --keystore takes embedded or a PostgreSQL URL; anything else is refused in one line naming it.
func TestKeyStoreFlagValidation(t *testing.T) {
	for _, ks := range []string{"", "embedded", "postgres://u@h:5432/db?sslmode=disable&schema=keys"} {
		cfg := config{DataDir: "d", EventStore: "embedded", KeyStore: ks, LogLevel: "error", RateLimitFail: "open"}
		if err := cfg.validate(); err != nil {
			t.Errorf("--keystore %q refused: %v", ks, err)
		}
	}
	for _, ks := range []string{"esdb://h:2113", "postgres://u@h/db?schema=Bad-Name", "file:///tmp/keys"} {
		cfg := config{DataDir: "d", EventStore: "embedded", KeyStore: ks, LogLevel: "error", RateLimitFail: "open"}
		err := cfg.validate()
		if err == nil || !strings.Contains(err.Error(), "--keystore") || strings.Contains(err.Error(), "\n") {
			t.Errorf("--keystore %q: %v, want one line naming --keystore", ks, err)
		}
	}
}

// F10: replicas of a shared event store (here PostgreSQL with --keystore embedded, as EventStoreDB
// is by default) that each keep the data keys in their own folder are refused: the first records
// its key store in the event store, the second, with another keys.db, stops in one line naming
// --keystore; with the shared --keystore postgres://… it starts, and the first restarts.
func TestIntegrationSecondEmbeddedKeyStoreOnASharedStoreIsRefused(t *testing.T) {
	url := pgtest.URL(t)
	store := pgtest.WithSchema(t, url, pgtest.Schema(t, url))
	auditKey := filepath.Join(t.TempDir(), "audit.key")
	ctx := context.Background()
	start := func(dir, keyStore string) error {
		t.Helper()
		cfg := deployCfg(dir, store, auditKey, false)
		cfg.KeyStore = keyStore
		a, err := build(ctx, cfg, slog.New(slog.DiscardHandler), buildOptions{})
		if err == nil {
			a.close()
		}
		return err
	}
	first, second := t.TempDir(), t.TempDir()
	if err := start(first, "embedded"); err != nil {
		t.Fatalf("first replica: %v", err)
	}
	err := start(second, "embedded")
	if err == nil || !strings.Contains(err.Error(), "--keystore postgres://") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("a second replica with its own keys.db on a shared store: %v, want one line naming --keystore postgres://", err)
	}
	if err := start(first, "embedded"); err != nil {
		t.Fatalf("the first replica restarting with its key store: %v", err)
	}
	if err := start(second, pgtest.WithSchema(t, url, pgtest.Schema(t, url))); err != nil {
		t.Fatalf("a replica with a shared PostgreSQL key store: %v", err)
	}
}
