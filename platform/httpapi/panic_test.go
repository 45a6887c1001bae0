package httpapi_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/crispy-enigma/crispy/platform/httpapi"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// panicServer serves handlers that panic before, and after, their response has begun, and one
// that aborts on purpose.
func panicServer(t *testing.T) (*httptest.Server, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	s, err := httpapi.New(httpapi.Config{}, httpapi.Deps{Guard: fakeGuard{}, Log: slog.New(slog.NewJSONHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	s.Mux().HandleFunc("GET /before", func(http.ResponseWriter, *http.Request) { panic("boom before") })
	s.Mux().HandleFunc("GET /after", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, `{"items":[1,2,`)
		w.(http.Flusher).Flush()
		panic("boom after")
	})
	s.Mux().HandleFunc("GET /abort", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "partial")
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	})
	srv := httptest.NewUnstartedServer(s.Handler())
	srv.Config.ErrorLog = nil
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, logs
}

func TestPanicBeforeTheResponseIsA500Problem(t *testing.T) {
	t.Parallel()
	srv, logs := panicServer(t)
	client := srv.Client()
	for range 2 { // and the connection stays usable
		resp, err := client.Get(srv.URL + "/before")
		if err != nil {
			t.Fatalf("connection dropped: %v", err)
		}
		var p map[string]any
		err = json.NewDecoder(resp.Body).Decode(&p)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 500 || p["code"] != "internal_error" || p["requestId"] == nil || p["requestId"] != resp.Header.Get("x-request-id") {
			t.Fatalf("%d %v %v", resp.StatusCode, p, err)
		}
		if strings.Contains(p["detail"].(string), "boom") {
			t.Fatalf("the panic value leaked: %v", p)
		}
	}
	if !strings.Contains(logs.String(), "boom before") {
		t.Fatalf("the panic was not logged: %s", logs)
	}
}

func TestPanicAfterTheResponseBeganAbortsIt(t *testing.T) {
	t.Parallel()
	srv, logs := panicServer(t)
	for _, path := range []string{"/after", "/abort"} {
		resp, err := srv.Client().Get(srv.URL + path)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		// A cut response must not look complete: the client's read fails.
		if err == nil {
			t.Fatalf("%s: a response cut by a panic read as complete: %d %q", path, resp.StatusCode, body)
		}
	}
	// Both are in the access log, marked aborted; only the unexpected panic is logged as one.
	l := logs.String()
	if strings.Count(l, `"aborted":true`) != 2 || !strings.Contains(l, "boom after") || strings.Count(l, "panic in handler") != 1 {
		t.Fatalf("logs: %s", l)
	}
	// The server goes on.
	resp, err := srv.Client().Get(srv.URL + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("after the aborts: %v %v", resp, err)
	}
	resp.Body.Close()
}
