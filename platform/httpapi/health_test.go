package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/platform/health"
	"github.com/crispy-enigma/crispy/platform/httpapi"
)

// hungCheck blocks, ignoring its context, until the test ends; it counts its calls.
func hungCheck(t testing.TB, calls *atomic.Int32) httpapi.Check {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	return func(context.Context) error {
		calls.Add(1)
		<-release
		return nil
	}
}

// getHealth asks GET /health for acme, failing the test if no answer comes in a (generous) 30 s:
// a /health that waits for a hung backend never answers.
func getHealth(t testing.TB, s *httpapi.Server) map[string]any {
	t.Helper()
	type answer struct {
		code int
		body map[string]any
		raw  string
	}
	ch := make(chan answer, 1)
	go func() {
		r := httptest.NewRequest("GET", "/health", nil)
		r.Header.Set("x-tenant-id", "acme")
		w := httptest.NewRecorder()
		s.Handler().ServeHTTP(w, r)
		var m map[string]any
		_ = json.Unmarshal(w.Body.Bytes(), &m)
		ch <- answer{w.Code, m, w.Body.String()}
	}()
	select {
	case a := <-ch:
		if a.code != 200 {
			t.Fatalf("/health: %d %s", a.code, a.raw)
		}
		return a.body
	case <-time.After(30 * time.Second):
		t.Fatal("/health did not answer while a backend hangs")
		return nil
	}
}

func TestHealthAnswersWhateverHangs(t *testing.T) {
	t.Parallel()
	var hungCalls atomic.Int32
	s, err := httpapi.New(httpapi.Config{}, httpapi.Deps{Guard: fakeGuard{}, Checks: map[string]httpapi.Check{
		"eventstore": func(context.Context) error { return health.DegradedState("disk full: writes refused") },
		"search":     func(context.Context) error { return health.CatchingUpState("index rebuild", 1200, 5000) },
		"index":      func(context.Context) error { return health.CatchingUpState("consumer catching up", 0, 0) },
		"bus":        func(context.Context) error { return nil },
		"redis":      hungCheck(t, &hungCalls),
		"panicky":    func(context.Context) error { panic("check bug") },
	}})
	if err != nil {
		t.Fatal(err)
	}
	body := getHealth(t, s)
	b, _ := body["backends"].(map[string]any)
	get := func(n string) map[string]any { m, _ := b[n].(map[string]any); return m }
	if body["status"] != "down" || len(b) != 6 {
		t.Fatalf("health = %v", body)
	}
	if r := get("redis"); r["status"] != "down" || !strings.HasPrefix(r["error"].(string), "timeout") {
		t.Errorf("hung backend: %v", r)
	}
	if r := get("panicky"); r["status"] != "down" || !strings.Contains(r["error"].(string), "panicked") {
		t.Errorf("panicking check: %v", r)
	}
	if r := get("eventstore"); r["status"] != "degraded" || r["error"] != "disk full: writes refused" {
		t.Errorf("degraded backend: %v", r)
	}
	if r := get("index"); r["status"] != "catching_up" || r["progress"] != nil {
		t.Errorf("catching-up backend of unknown progress: %v, want no progress (not 0 of 0)", r)
	}
	if r := get("search"); r["status"] != "catching_up" || r["progress"] == nil {
		t.Errorf("catching-up backend: %v", r)
	} else if p := r["progress"].(map[string]any); p["done"] != 1200.0 || p["total"] != 5000.0 {
		t.Errorf("progress = %v", p)
	}
	if r := get("bus"); r["status"] != "ok" || r["error"] != nil || r["progress"] != nil {
		t.Errorf("ok backend: %v", r)
	}
	// Asked again while the hung call is still running: answered again, and the hung backend is not
	// called a second time (one stuck goroutine, not one per request).
	for range 3 {
		body = getHealth(t, s)
		if r, _ := body["backends"].(map[string]any)["redis"].(map[string]any); r["status"] != "down" {
			t.Fatalf("hung backend on a later call: %v", r)
		}
	}
	if n := hungCalls.Load(); n != 1 {
		t.Fatalf("the hung check was started %d times", n)
	}
}

func TestHealthStatusIsTheWorstBackend(t *testing.T) {
	t.Parallel()
	ok := func(context.Context) error { return nil }
	cases := []struct {
		want   string
		checks map[string]httpapi.Check
	}{
		{"ok", map[string]httpapi.Check{"a": ok, "b": ok}},
		{"catching_up", map[string]httpapi.Check{"a": ok, "b": func(context.Context) error { return health.CatchingUpState("x", 0, 0) }}},
		{"degraded", map[string]httpapi.Check{"a": func(context.Context) error { return health.CatchingUpState("x", 1, 2) },
			"b": func(context.Context) error { return health.DegradedState("y") }}},
		{"down", map[string]httpapi.Check{"a": func(context.Context) error { return health.DegradedState("y") },
			"b": func(context.Context) error { return errors.New("connection refused") }}},
		{"ok", nil},
	}
	for _, c := range cases {
		s, err := httpapi.New(httpapi.Config{}, httpapi.Deps{Guard: fakeGuard{}, Checks: c.checks})
		if err != nil {
			t.Fatal(err)
		}
		if body := getHealth(t, s); body["status"] != c.want {
			t.Errorf("%d checks: %v, want %s", len(c.checks), body, c.want)
		}
	}
}

// BenchmarkHealthWithAHungBackend measures /health's latency while one backend hangs for ever
// (target: under 500 ms; it is the 400 ms check budget).
func BenchmarkHealthWithAHungBackend(b *testing.B) {
	var calls atomic.Int32
	s, err := httpapi.New(httpapi.Config{}, httpapi.Deps{Guard: fakeGuard{}, Checks: map[string]httpapi.Check{
		"hung": hungCheck(b, &calls), "ok": func(context.Context) error { return nil },
	}})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		getHealth(b, s)
	}
}
