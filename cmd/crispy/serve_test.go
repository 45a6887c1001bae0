package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/crispy-enigma/crispy/platform/bus"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/embedded"
	"github.com/crispy-enigma/crispy/platform/httpapi"
	"github.com/crispy-enigma/crispy/platform/httpapi/httpapitest"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// serve answers before the read models have caught up. While an older in-memory read model
// (bus.Project) catches up, a tenant route is refused with 503 catching_up and a retry-after, while
// /health answers (catching_up, with progress) and so do public routes; once it has caught up the
// route answers.
func TestServeRefusesTenantRoutesWhileAnInMemoryReadModelCatchesUp(t *testing.T) {
	store, err := embedded.Open(t.TempDir(), embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ev, err := eventstore.NewEventData("test.Happened", map[string]int{"n": 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Append(context.Background(), tenant.MustStream(tenant.MustParse("acme"), "thing", "a"), eventstore.Any, ev); err != nil {
		t.Fatal(err)
	}
	b, err := bus.New(bus.Config{CheckpointDir: t.TempDir(), ReadModelDir: t.TempDir()}, bus.Deps{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	b.Project("test.held", nil, func(ctx context.Context, _ eventstore.Event) error {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	})
	srv, err := httpapi.New(httpapi.Config{}, httpapi.Deps{Guard: httpapitest.HeaderGuard{},
		Checks: map[string]httpapi.Check{"bus": b.Check}})
	if err != nil {
		t.Fatal(err)
	}
	a := &app{log: slog.New(slog.DiscardHandler), bus: b, server: srv}
	srv.API.UseMiddleware(a.memoryReadModelsGate)
	type thingOut struct{ Body struct{ N int } }
	huma.Get(srv.API, "/things", func(context.Context, *struct{}) (*thingOut, error) {
		out := &thingOut{}
		out.Body.N = 1
		return out, nil
	})

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("bus: %v", err)
		}
	}()
	wctx, wcancel := context.WithTimeout(context.Background(), time.Minute)
	defer wcancel()
	if err := b.WaitRunning(wctx); err != nil {
		t.Fatal(err)
	}

	w := httpapitest.Send(srv.Handler(), http.MethodGet, "/things", "acme", nil)
	var p struct {
		Status    int    `json:"status"`
		Code      string `json:"code"`
		RequestID string `json:"requestId"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil || w.Code != http.StatusServiceUnavailable || p.Code != "catching_up" ||
		p.RequestID == "" || w.Header().Get("Retry-After") == "" || w.Header().Get("Content-Type") != "application/problem+json" {
		t.Fatalf("GET /things while catching up: %d %s %q (retry-after %q), want 503 catching_up problem JSON with retry-after",
			w.Code, w.Header().Get("Content-Type"), w.Body.String(), w.Header().Get("Retry-After"))
	}
	if w := httpapitest.Send(srv.Handler(), http.MethodGet, "/things", "", nil); w.Code != http.StatusNotFound {
		t.Fatalf("GET /things with no tenant while catching up: %d %s, want the guard's 404 first", w.Code, w.Body.String())
	}
	w = httpapitest.Send(srv.Handler(), http.MethodGet, "/health", "acme", nil)
	var h struct {
		Status   string `json:"status"`
		Backends map[string]struct {
			Status   string                        `json:"status"`
			Progress *struct{ Done, Total uint64 } `json:"progress"`
		} `json:"backends"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &h); err != nil || w.Code != http.StatusOK || h.Status != "catching_up" ||
		h.Backends["bus"].Progress == nil || h.Backends["bus"].Progress.Total == 0 {
		t.Fatalf("GET /health while catching up: %d %s, want 200 catching_up with the bus's progress", w.Code, w.Body.String())
	}
	if w := httpapitest.Send(srv.Handler(), http.MethodGet, "/healthz", "", nil); w.Code != http.StatusOK {
		t.Fatalf("GET /healthz while catching up: %d %s", w.Code, w.Body.String())
	}

	close(release)
	if err := b.WaitCaughtUp(wctx); err != nil {
		t.Fatal(err)
	}
	if w := httpapitest.Send(srv.Handler(), http.MethodGet, "/things", "acme", nil); w.Code != http.StatusOK {
		t.Fatalf("GET /things once caught up: %d %s", w.Code, w.Body.String())
	}
	w = httpapitest.Send(srv.Handler(), http.MethodGet, "/health", "acme", nil)
	if err := json.Unmarshal(w.Body.Bytes(), &h); err != nil || h.Status != "ok" {
		t.Fatalf("GET /health once caught up: %d %s", w.Code, w.Body.String())
	}
}
