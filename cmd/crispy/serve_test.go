package main

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/crispy-enigma/crispy/platform/bus"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/embedded"
	"github.com/crispy-enigma/crispy/platform/httpapi"
	"github.com/crispy-enigma/crispy/platform/httpapi/httpapitest"
	"github.com/crispy-enigma/crispy/platform/readmodel"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// serve listens once the bus runs, before the read models have caught up. While a checkpointed
// projection catches up, a route that reads it (Projection.View) is refused with 503 catching_up
// and a retry-after, while /health answers (catching_up, with the bus's progress) and so do public
// routes; once it has caught up the route answers.
func TestServeRefusesRoutesReadingAProjectionWhileItCatchesUp(t *testing.T) {
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
	type happened struct{ N int }
	b.Codec().Add("test.Happened", happened{})
	release := make(chan struct{})
	things := b.Projection("test.held", bus.ProjectionOptions{What: "test things", Version: 1})
	bus.Apply(things, func(ctx context.Context, tx *readmodel.Tx, _ bus.Envelope, ev happened) error {
		select {
		case <-release:
		case <-ctx.Done():
			return ctx.Err()
		}
		return tx.Bucket().Put([]byte("n"), []byte{byte(ev.N)})
	})
	srv, err := httpapi.New(httpapi.Config{}, httpapi.Deps{Guard: httpapitest.HeaderGuard{},
		Checks: map[string]httpapi.Check{"bus": b.Check}})
	if err != nil {
		t.Fatal(err)
	}
	type thingOut struct{ Body struct{ N int } }
	huma.Get(srv.API, "/things", func(ctx context.Context, _ *struct{}) (*thingOut, error) {
		out := &thingOut{}
		err := things.View(ctx, func(tx *readmodel.Tx) error {
			if v := tx.Bucket().Get([]byte("n")); len(v) == 1 {
				out.Body.N = int(v[0])
			}
			return nil
		})
		return out, err
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
	if w := httpapitest.Send(srv.Handler(), http.MethodGet, "/things", "acme", nil); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"N":1`) {
		t.Fatalf("GET /things once caught up: %d %s, want 200 with the applied event", w.Code, w.Body.String())
	}
	w = httpapitest.Send(srv.Handler(), http.MethodGet, "/health", "acme", nil)
	if err := json.Unmarshal(w.Body.Bytes(), &h); err != nil || h.Status != "ok" {
		t.Fatalf("GET /health once caught up: %d %s", w.Code, w.Body.String())
	}
}
