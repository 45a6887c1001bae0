package main

import (
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/platform/erasuretest"
)

// TestDocumentsAreErasedFromTheWholeDataFolder is issue 12 §4 for documents, through the real
// binary and server: a document ingested by crispy ingest and one ingested over HTTP are sealed in
// every file of the data folder (event log, key store, index, read models, bus checkpoints), are
// found by search, and once deleted over HTTP are no longer found; no file of the folder holds
// their text at any point, and crispy verify still succeeds over the log.
func TestDocumentsAreErasedFromTheWholeDataFolder(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	fileMarker, httpMarker := "zebraquartz"+hex.EncodeToString(b), "yakpumice"+hex.EncodeToString(b)
	if err := os.MkdirAll(filepath.Join(root, "notes"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "notes", "plan.md"), []byte("# Plan\n\nThe "+fileMarker+" launch is in May.\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := runCrispy(t, root, nil, "ingest", "--tenant", "demo", "--data-dir", "data", "notes"); r.code != 0 {
		t.Fatalf("crispy ingest: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	data := filepath.Join(root, "data")
	if got := erasuretest.FilesHolding(t, data, []byte(fileMarker)); len(got) > 0 {
		t.Fatalf("crispy ingest left the text in plain in %v", got)
	}

	cfg := config{DataDir: data, EventStore: "embedded", Search: "embedded", Bus: "gochannel", RateLimitFail: "open",
		PluginsDir: filepath.Join(root, "no-plugins"), LogLevel: "error", ShutdownTimeout: 5 * time.Second}
	srv, stop := serveApp(t, cfg, buildOptions{})
	if r := call(t, srv, "POST", "/ingest", map[string]any{"docId": "memo", "title": "Memo " + httpMarker, "text": "The " + httpMarker + " budget is approved."}); r.status != 200 {
		t.Fatalf("ingest: %d %s", r.status, r.raw)
	}
	for _, m := range []string{fileMarker, httpMarker} {
		if r := call(t, srv, "POST", "/search", map[string]any{"query": "the " + m, "answer": false}); r.status != 200 || !strings.Contains(r.raw, m) {
			t.Fatalf("search for %s before the deletion: %d %s", m, r.status, r.raw)
		}
	}
	for _, id := range []string{"plan.md", "memo"} { // a file's id is relative to the folder given
		if r := call(t, srv, "DELETE", "/documents/"+url.PathEscape(id), nil); r.status != 200 {
			t.Fatalf("delete %s: %d %s", id, r.status, r.raw)
		}
	}
	for _, m := range []string{fileMarker, httpMarker} {
		if r := call(t, srv, "POST", "/search", map[string]any{"query": "the " + m, "answer": false}); r.status != 200 || strings.Contains(r.raw, m) {
			t.Fatalf("search for %s after the deletion: %d %s", m, r.status, r.raw)
		}
	}
	stop() // the index's last snapshot and the read models are written
	for _, m := range []string{fileMarker, httpMarker} {
		if got := erasuretest.FilesHolding(t, data, []byte(m)); len(got) > 0 {
			t.Fatalf("%s is still in plain in %v", m, got)
		}
	}
	// The search above can see the log: the deletions, which are not sealed, name the documents.
	if len(erasuretest.FilesHolding(t, filepath.Join(data, "events"), []byte("plan.md"))) == 0 {
		t.Fatal("the deletion of plan.md is in no file of the event store: the search for the texts saw nothing")
	}
	if r := runCrispy(t, root, nil, "verify", "--tenant", "demo", "--data-dir", "data"); r.code != 0 || !strings.Contains(r.stdout, "ok:") {
		t.Fatalf("crispy verify after the deletions: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
