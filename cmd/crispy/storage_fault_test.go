package main

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/embedded"
	keysembedded "github.com/crispy-enigma/crispy/platform/keystore/embedded"
	"github.com/crispy-enigma/crispy/platform/sealing"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// startApp builds and starts the whole server on embedded defaults in dataDir, with faults
// injected into its event store, and serves it on a test listener until stop or cleanup.
func startApp(t *testing.T, dataDir string, faults *embedded.Faults) (srv *httptest.Server, stop func()) {
	t.Helper()
	return serveApp(t, embeddedConfig(dataDir), buildOptions{storeFaults: faults})
}

// embeddedConfig is a server on embedded defaults in data (no plugins, quiet logs, a 5 s shutdown),
// which a test changes where it needs to.
func embeddedConfig(data string) config {
	return config{DataDir: data, EventStore: "embedded", Search: "embedded", Bus: "gochannel", RateLimitFail: "open",
		PluginsDir: filepath.Join(data, "no-plugins"), LogLevel: "error", ShutdownTimeout: 5 * time.Second}
}

// serveApp builds the whole server from cfg, starts it, waits until its read models caught up, and
// serves it on a test listener until stop or cleanup.
func serveApp(t *testing.T, cfg config, o buildOptions) (srv *httptest.Server, stop func()) {
	t.Helper()
	ctx := context.Background()
	a, err := build(ctx, cfg, slog.New(slog.DiscardHandler), o)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.start(ctx); err != nil {
		a.close()
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	g, gctx := errgroup.WithContext(runCtx)
	a.runAll(g, gctx)
	if err := a.ready(gctx); err != nil {
		cancel()
		_ = g.Wait()
		a.close()
		t.Fatal(err)
	}
	srv = httptest.NewServer(a.server.Handler())
	var once sync.Once
	stop = func() {
		once.Do(func() {
			srv.Close()
			cancel()
			_ = g.Wait()
			a.close()
		})
	}
	t.Cleanup(stop)
	return srv, stop
}

type answer struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

// call sends one request as tenant demo. A rate-limit refusal (the demo tenant allows 70 requests a
// minute, and a slow machine makes the test poll more) is waited out and retried, never returned.
func call(t *testing.T, srv *httptest.Server, method, path string, body any) answer {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		a := call1(t, srv, method, path, body)
		if a.status != http.StatusTooManyRequests {
			return a
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s %s: still rate limited after 3 minutes", method, path)
		}
		wait, _ := strconv.Atoi(a.header.Get("Retry-After"))
		time.Sleep(time.Duration(max(wait, 1)) * time.Second)
	}
}

// call1 sends one request as tenant demo, once.
func call1(t *testing.T, srv *httptest.Server, method, path string, body any) answer {
	t.Helper()
	return callAs(t, srv, "demo", method, path, body)
}

func backend(a answer, name string) string {
	b, _ := a.body["backends"].(map[string]any)
	e, _ := b[name].(map[string]any)
	s, _ := e["status"].(string)
	return s
}

// TestStorageFaultIs503AndHealsThroughHTTP: with the event store's disk full (ENOSPC, half a write
// landing) and then failing its fsyncs (EIO), writes through the API answer 503 storage_unavailable
// with retry-after as problem JSON, /health reports the event store degraded, reads keep working,
// and once the fault clears writes succeed again without a restart. After a restart exactly the
// acknowledged writes are there.
func TestStorageFaultIs503AndHealsThroughHTTP(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	faults := &embedded.Faults{}
	srv, stop := startApp(t, data, faults)
	ingest := func(id string) answer {
		return call(t, srv, "POST", "/ingest", map[string]any{"docId": id, "text": "a text about storage " + id})
	}
	chat := func() answer {
		return call(t, srv, "POST", "/chat", map[string]any{"sessionId": "0b0f6a2e-0c4b-4a57-9a65-3f5f0f3a1d2e", "message": "hello", "stream": false})
	}
	if r := ingest("before"); r.status != 200 {
		t.Fatalf("ingest before the fault: %d %s", r.status, r.raw)
	}

	for name, inject := range map[string]func(){
		"ENOSPC on write": func() { faults.FailWrites(syscall.ENOSPC, true) },
		"EIO on fsync":    func() { faults.FailSyncs(syscall.EIO) },
	} {
		inject()
		for what, r := range map[string]answer{"ingest": ingest("refused"), "chat": chat()} {
			if r.status != 503 || r.body["code"] != "storage_unavailable" || r.header.Get("Retry-After") == "" ||
				!strings.HasPrefix(r.header.Get("Content-Type"), "application/problem+json") || r.body["requestId"] == "" {
				t.Fatalf("%s: %s during the fault: %d retry-after %q %s", name, what, r.status, r.header.Get("Retry-After"), r.raw)
			}
		}
		h := call(t, srv, "GET", "/health", nil)
		if h.body["status"] == "ok" || backend(h, "eventstore") != "degraded" {
			t.Fatalf("%s: /health during the fault: %s", name, h.raw)
		}
		if r := call(t, srv, "POST", "/search", map[string]any{"query": "storage", "answer": false}); r.status != 200 || !strings.Contains(r.raw, "before") {
			t.Fatalf("%s: search during the fault: %d %s", name, r.status, r.raw)
		}

		faults.Clear()
		deadline := time.Now().Add(2 * time.Minute)
		for backend(call(t, srv, "GET", "/health", nil), "eventstore") != "ok" {
			if time.Now().After(deadline) {
				t.Fatalf("%s: /health never became ok again after the fault cleared", name)
			}
			time.Sleep(500 * time.Millisecond) // the healer retries every second; polls count against the rate limit
		}
		if r := ingest("after-" + strings.Fields(name)[0]); r.status != 200 {
			t.Fatalf("%s: ingest after the fault cleared: %d %s", name, r.status, r.raw)
		}
		if r := chat(); r.status != 200 {
			t.Fatalf("%s: chat after the fault cleared: %d %s", name, r.status, r.raw)
		}
	}
	stop()

	// Restart-free healing lost nothing acknowledged and kept nothing refused, and left no torn
	// tail: the log as the next start reads it, the server gone (not Live, so a torn tail shows).
	s, err := embedded.OpenReadOnly(filepath.Join(data, "events"), embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Live() {
		t.Fatal("the stopped server still holds the store")
	}
	// Documents are sealed: read them as the server does, with its data keys.
	keys, err := keysembedded.OpenReadOnly(filepath.Join(data, "keys", keysembedded.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer keys.Close()
	evs, err := sealStore(s, sealing.New(keys)).ReadTenant(context.Background(), tenant.MustParse("demo"), eventstore.Start, 0)
	if err != nil {
		t.Fatal(err)
	}
	docs := map[string]bool{}
	for _, e := range evs {
		var d struct {
			DocID string `json:"docId"`
		}
		if e.Type == "retrieval.DocumentIngested" && e.Decode(&d) == nil {
			docs[d.DocID] = true
		}
	}
	if !docs["before"] || !docs["after-ENOSPC"] || !docs["after-EIO"] || docs["refused"] || s.TornTail() != nil {
		t.Fatalf("documents recorded: %v (torn tail %v); want before, after-ENOSPC and after-EIO, not refused", docs, s.TornTail())
	}
}
