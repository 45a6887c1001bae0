package main

import (
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/platform/eventstore/postgres/pgtest"
)

// startAppOn builds and starts the whole server with its event store at eventStore (the rest on
// embedded defaults in dataDir) and serves it on a test listener until stop or cleanup.
// auditKey is the audit signing key file, shared by servers on one store (--audit-key).
func startAppOn(t *testing.T, dataDir, eventStore, auditKey string) (srv *httptest.Server, stop func()) {
	t.Helper()
	cfg := config{DataDir: dataDir, EventStore: eventStore, AuditKey: auditKey, Search: "embedded", Bus: "gochannel", RateLimitFail: "open",
		PluginsDir: filepath.Join(dataDir, "no-plugins"), LogLevel: "error", ShutdownTimeout: 5 * time.Second}
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	return serveApp(t, cfg, buildOptions{})
}

// TestIntegrationServeOnPostgres: the server runs on the PostgreSQL event store. When the database
// goes away mid-run, writes answer 503 storage_unavailable (problem JSON with retry-after) and
// /health reports the event store down; when it is back the same process writes again, without a
// restart. A second server started on an empty data folder and the same database finds everything
// acknowledged (the database, not the data folder, holds the log) and nothing refused.
func TestIntegrationServeOnPostgres(t *testing.T) {
	url := pgtest.URL(t)
	schema := pgtest.Schema(t, url)
	proxy := pgtest.NewProxy(t, url)
	auditKey := filepath.Join(t.TempDir(), "audit-signing.key") // the servers share the store, so its key
	srv, stop := startAppOn(t, t.TempDir(), pgtest.WithSchema(t, proxy.Via(t, url), schema), auditKey)
	ingest := func(id string) answer {
		return call(t, srv, "POST", "/ingest", map[string]any{"docId": id, "text": "a text about replicas " + id})
	}
	if r := ingest("before"); r.status != 200 {
		t.Fatalf("ingest: %d %s", r.status, r.raw)
	}

	proxy.Cut()
	r := ingest("refused")
	if r.status != 503 || r.body["code"] != "storage_unavailable" || r.header.Get("Retry-After") == "" ||
		!strings.HasPrefix(r.header.Get("Content-Type"), "application/problem+json") || r.body["requestId"] == "" {
		t.Fatalf("ingest with the database cut: %d retry-after %q %s", r.status, r.header.Get("Retry-After"), r.raw)
	}
	if h := call(t, srv, "GET", "/health", nil); backend(h, "eventstore") != "down" {
		t.Fatalf("/health with the database cut: %s", h.raw)
	}

	proxy.Restore(t)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		r := ingest("after")
		if r.status == 200 {
			break
		}
		if r.status != 503 || time.Now().After(deadline) {
			t.Fatalf("ingest after the database came back: %d %s", r.status, r.raw)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for backend(call(t, srv, "GET", "/health", nil), "eventstore") != "ok" {
		if time.Now().After(deadline) {
			t.Fatal("/health never reported the event store ok again")
		}
		time.Sleep(500 * time.Millisecond)
	}
	stop()

	srv2, _ := startAppOn(t, t.TempDir(), pgtest.WithSchema(t, url, schema), auditKey)
	for {
		r := call(t, srv2, "POST", "/search", map[string]any{"query": "replicas", "answer": false})
		if r.status == 200 {
			if !strings.Contains(r.raw, `"before"`) || !strings.Contains(r.raw, `"after"`) || strings.Contains(r.raw, `"refused"`) {
				t.Fatalf("search on a fresh data folder: %s; want before and after, not refused", r.raw)
			}
			break
		}
		if r.status != 503 || time.Now().After(deadline.Add(time.Minute)) {
			t.Fatalf("search on a fresh data folder: %d %s", r.status, r.raw)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
