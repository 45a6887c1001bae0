package main

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/embedded"
	"github.com/crispy-enigma/crispy/platform/sealing"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// A data folder whose event log holds sealed content but whose keys/ is missing (not restored with
// it, or --data-dir pointing at a copy without it) must not start with an empty key store, where
// everything reads as erased and fresh keys get made under the old ids. serve, ingest and replay
// refuse in one line naming the cause and the fix (--new-key-store) and leave no empty keys.db behind; with
// --new-key-store they start. Before: both started without a word.
func TestMissingKeyStoreBesideSealedContentRefusesToStart(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "notes"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "notes", "plan.md"), []byte("# Plan\n\nThe zebra launch is in May.\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := runCrispy(t, root, nil, "ingest", "--tenant", "demo", "--data-dir", "data", "notes"); r.code != 0 {
		t.Fatalf("crispy ingest: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	data := filepath.Join(root, "data")
	keysDir := filepath.Join(data, "keys")
	if err := os.Rename(keysDir, filepath.Join(root, "keys-elsewhere")); err != nil {
		t.Fatal(err)
	}
	keysGone := func(what string) {
		t.Helper()
		if _, err := os.Stat(keysPath(config{DataDir: data})); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("%s left a key store behind (%v): the next start would take it", what, err)
		}
	}

	r := runCrispy(t, root, nil, "ingest", "--tenant", "demo", "--data-dir", "data", "notes")
	last := strings.TrimSpace(r.stderr)
	if r.code == 0 || strings.Contains(last, "\n") || !strings.Contains(last, "--new-key-store") || !strings.Contains(last, "keys") ||
		!strings.Contains(last, "sealed content") {
		t.Fatalf("crispy ingest without keys/: exit %d, stderr %q; want one line naming the missing key store and --new-key-store", r.code, r.stderr)
	}
	keysGone("the refused ingest")
	r = runCrispy(t, root, nil, "replay", "--tenant", "demo", "--data-dir", "data")
	last = strings.TrimSpace(r.stderr)
	if r.code == 0 || strings.Contains(last, "\n") || !strings.Contains(last, "keys") || !strings.Contains(last, "sealed content") {
		t.Fatalf("crispy replay without keys/: exit %d, stderr %q; want one line naming the missing key store", r.code, r.stderr)
	}

	cfg := config{DataDir: data, EventStore: "embedded", Search: "embedded", Bus: "gochannel", RateLimitFail: "open",
		PluginsDir: filepath.Join(root, "no-plugins"), LogLevel: "error", ShutdownTimeout: 5 * time.Second, AuditInterval: time.Hour}
	for range 2 { // refused again: the first refusal left nothing that would let the second start
		_, err := build(context.Background(), cfg, slog.New(slog.DiscardHandler), buildOptions{})
		if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "--new-key-store") || !strings.Contains(err.Error(), "tenant demo") {
			t.Fatalf("serve without keys/: %v; want one line naming the missing key store and --new-key-store", err)
		}
		keysGone("the refused serve")
	}

	// The real keys come back: it starts and the document is found.
	if err := os.RemoveAll(keysDir); err != nil { // the empty folder the refused opens made
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(root, "keys-elsewhere"), keysDir); err != nil {
		t.Fatal(err)
	}
	srv, stop := serveApp(t, cfg, buildOptions{})
	if r := searchCaughtUp(t, srv); r.status != 200 || !strings.Contains(r.raw, "zebra") {
		t.Fatalf("search with the keys restored: %d %s", r.status, r.raw)
	}
	stop()

	// Told so, it starts with an empty key store (the old content reads as erased).
	if err := os.RemoveAll(keysDir); err != nil {
		t.Fatal(err)
	}
	cfg.NewKeyStore = true
	srv, stop = serveApp(t, cfg, buildOptions{})
	defer stop()
	// The index may still be catching up (503 catching_up, as it must rather than answer partly):
	// the own-cursor projections start once the shared read models have caught up (4cd3ac0).
	if r := searchCaughtUp(t, srv); r.status != 200 || strings.Contains(r.raw, "zebra") {
		t.Fatalf("search over an empty key store: %d %s", r.status, r.raw)
	}
}

// searchCaughtUp searches "zebra launch" once the index answers: while it catches up after a start
// it answers 503 catching_up, as it must rather than answer partly (the index's own cursor starts
// once the shared read models have caught up).
func searchCaughtUp(t *testing.T, srv *httptest.Server) answer {
	t.Helper()
	var r answer
	waitUntil(t, "the search index has caught up", func() bool {
		r = call(t, srv, "POST", "/search", map[string]any{"query": "zebra launch", "answer": false})
		return r.status != 503
	})
	return r
}

// firstSealed on the embedded store: nothing sealed (and, when the log holds no run of the sealed
// envelope's first bytes, no event read at all) is nil; events whose data holds those bytes
// without being sealed (nested in another object) are read and found not sealed; the first sealed
// event is found whatever comes before it.
func TestFirstSealedOnTheEmbeddedStore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, err := embedded.Open(t.TempDir(), embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	acme := tenant.MustParse("acme")
	put := func(entity, data string) {
		t.Helper()
		if _, err := s.Append(ctx, tenant.MustStream(acme, "session", entity), eventstore.Any,
			eventstore.EventData{Type: "test.Said", Data: []byte(data)}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 20 {
		put("plain", `{"text":"a plain message quoting {\"sealed\":{ in its text","n":`+strings.Repeat("1", i+1)+`}`)
	}
	if held, err := s.MayHold(ctx, sealing.Marker()); err != nil || held {
		t.Fatalf("MayHold on plain events = %v, %v", held, err)
	}
	if found, err := firstSealed(ctx, s); err != nil || found != nil {
		t.Fatalf("plain events: firstSealed = %+v, %v", found, err)
	}
	put("nested", `{"copy":{"sealed":{"k":"session/x","n":"AA==","c":"AA=="}}}`)
	if found, err := firstSealed(ctx, s); err != nil || found != nil {
		t.Fatalf("sealed bytes nested in a plain event: firstSealed = %+v, %v", found, err)
	}
	put("secret", `{"sealed":{"k":"session/secret","n":"AA==","c":"AA=="}}`)
	put("plain", `{"text":"after"}`)
	found, err := firstSealed(ctx, s)
	if err != nil || found == nil || found.Stream != tenant.MustStream(acme, "session", "secret").String() {
		t.Fatalf("firstSealed = %+v, %v; want the event of session secret", found, err)
	}
}
