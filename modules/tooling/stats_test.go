package tooling_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/modules/tooling"
	"github.com/crispy-enigma/crispy/modules/tooling/events"
	"github.com/crispy-enigma/crispy/platform/bus"
	"github.com/crispy-enigma/crispy/platform/bus/bustest"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/embedded"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/httpapi"
	"github.com/crispy-enigma/crispy/platform/httpapi/httpapitest"
	"github.com/crispy-enigma/crispy/platform/keystore/keystoretest"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// statsServer is the tooling module's HTTP API on b, for the statistics endpoint.
type statsServer struct {
	t   testing.TB
	srv *httpapi.Server
}

func newStatsServer(t testing.TB, store eventstore.Store, b *bus.Bus) statsServer {
	t.Helper()
	mod, err := tooling.New(tooling.Deps{Store: store, Keys: keystoretest.NewMemory(), Config: tooling.Config{PluginsDir: t.TempDir()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mod.Close)
	srv, err := httpapi.New(httpapi.Config{}, httpapi.Deps{Guard: httpapitest.HeaderGuard{}})
	if err != nil {
		t.Fatal(err)
	}
	mod.Register(srv.API, b)
	return statsServer{t: t, srv: srv}
}

func (s statsServer) metrics(tenantID string) (int, map[string]any, string) {
	r := httptest.NewRequest("GET", "/metrics/tools/execution?period=1h", nil)
	r.Header.Set("x-tenant-id", tenantID)
	w := httptest.NewRecorder()
	s.srv.Handler().ServeHTTP(w, r)
	var body map[string]any
	_ = json.Unmarshal(w.Body.Bytes(), &body)
	return w.Code, body, w.Header().Get("retry-after")
}

func executions(body map[string]any) any {
	if tot, ok := body["totals"].(map[string]any); ok {
		return tot["executions"]
	}
	return nil
}

// appendCalls records n finished calls of tool for tenantID in its audit, as the execute use case
// does (every third one failed).
func appendCalls(t testing.TB, store eventstore.Store, tenantID, tool string, n int) {
	t.Helper()
	tid := tenant.MustParse(tenantID)
	batch := make([]eventstore.EventData, 0, n)
	for i := range n {
		var d eventstore.EventData
		var err error
		if i%3 == 2 {
			d, err = eventstore.NewEventData(events.TypeToolFailed, events.ToolFailed{InvocationID: fmt.Sprint(i), Tenant: tenantID,
				Tool: tool, Version: "1", ErrorCode: "EXECUTION_ERROR", DurationMs: 4})
		} else if i%3 == 1 && i%2 == 1 {
			// Every sixth call is refused for the caller's fault: a call, not an error of the tool.
			d, err = eventstore.NewEventData(events.TypeToolFailed, events.ToolFailed{InvocationID: fmt.Sprint(i), Tenant: tenantID,
				Tool: tool, Version: "1", ErrorCode: "VALIDATION_FAILED", DurationMs: 2})
		} else {
			d, err = eventstore.NewEventData(events.TypeToolSucceeded, events.ToolSucceeded{InvocationID: fmt.Sprint(i), Tenant: tenantID,
				Tool: tool, Version: "1", Success: true, DurationMs: 2})
		}
		if err != nil {
			t.Fatal(err)
		}
		batch = append(batch, d)
		if len(batch) == 500 || i == n-1 {
			if _, err := store.Append(context.Background(), tenant.MustStream(tid, events.AuditCategory, ""), eventstore.Any, batch...); err != nil {
				t.Fatal(err)
			}
			batch = batch[:0]
		}
	}
}

// subscriptions records where every store subscription starts.
type subscriptions struct {
	eventstore.Store
	mu   sync.Mutex
	from []eventstore.Position
}

func (s *subscriptions) Subscribe(ctx context.Context, opts eventstore.SubscribeOptions, h eventstore.Handler) error {
	s.mu.Lock()
	s.from = append(s.from, opts.From)
	s.mu.Unlock()
	return s.Store.Subscribe(ctx, opts, h)
}

func (s *subscriptions) starts() []eventstore.Position {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]eventstore.Position(nil), s.from...)
}

// The statistics survive a restart from their checkpoint: the second start answers them at once,
// and its store subscriptions start after the events already counted, not at position 1.
func TestExecutionStatsResumeFromTheirCheckpoint(t *testing.T) {
	t.Parallel()
	mem := eventstoretest.NewMemory()
	dir := t.TempDir()
	store := &subscriptions{Store: mem}
	b := bustest.NewBusIn(t, store, dir)
	s := newStatsServer(t, store, b)
	stop := bustest.Start(t, b)
	appendCalls(t, mem, "acme", "echo", 6)
	appendCalls(t, mem, "bravo", "echo", 2)
	if err := b.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if code, body, _ := s.metrics("acme"); code != 200 || executions(body) != float64(6) {
		t.Fatalf("before the restart: %d %v", code, body)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	store2 := &subscriptions{Store: mem}
	b2 := bustest.NewBusIn(t, store2, dir)
	s2 := newStatsServer(t, store2, b2)
	bustest.Start(t, b2)
	code, body, _ := s2.metrics("acme")
	if code != 200 || executions(body) != float64(6) {
		t.Fatalf("after the restart: %d %v", code, body)
	}
	tools := body["tools"].([]any)
	if len(tools) != 1 || tools[0].(map[string]any)["errors"] != float64(2) || tools[0].(map[string]any)["meanDurationMs"] != float64(8)/3 {
		t.Fatalf("after the restart: %v", body)
	}
	if code, body, _ := s2.metrics("bravo"); code != 200 || executions(body) != float64(2) {
		t.Fatalf("bravo after the restart: %d %v", code, body)
	}
	for _, from := range store2.starts() {
		if from != 9 {
			t.Fatalf("after the restart a subscription started at %d, want 9 (after the 8 events counted): %v", from, store2.starts())
		}
	}
	appendCalls(t, mem, "acme", "echo", 3)
	if err := b2.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, body, _ := s2.metrics("acme"); executions(body) != float64(9) {
		t.Fatalf("live after the restart: %v", body)
	}
}

// While the statistics catch up they answer 503 catching_up with retry-after, never a partial count.
func TestExecutionStatsAnswerCatchingUpUntilCaughtUp(t *testing.T) {
	t.Parallel()
	mem := eventstoretest.NewMemory()
	appendCalls(t, mem, "acme", "echo", 10)
	store := eventstoretest.Stalled{Store: mem, At: 5, Release: make(chan struct{})}
	b := bustest.NewBus(t, store)
	s := newStatsServer(t, store, b)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	defer func() { cancel(); <-done }()
	// Long enough that a quiet-spell guess (1 s) would have called it caught up.
	time.Sleep(1500 * time.Millisecond)
	code, body, retry := s.metrics("acme")
	if code != 503 || body["code"] != "catching_up" || retry == "" {
		t.Fatalf("while catching up: %d %v (retry-after %q); want 503 catching_up", code, body, retry)
	}
	close(store.Release)
	wctx, wcancel := context.WithTimeout(ctx, time.Minute)
	defer wcancel()
	if err := b.WaitCaughtUp(wctx); err != nil {
		t.Fatal(err)
	}
	if code, body, _ := s.metrics("acme"); code != 200 || executions(body) != float64(10) {
		t.Fatalf("caught up: %d %v", code, body)
	}
}

// BenchmarkExecutionStatsStart is the start of the execution statistics over 100,000 tool calls in
// the embedded store: from position 1 (a first start, or a rebuild) and from the checkpoint of a
// previous run. Reported: ms from Run to caught up.
func BenchmarkExecutionStatsStart(b *testing.B) {
	dir := b.TempDir()
	store, err := embedded.Open(dir+"/events", embedded.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	for i := range 7 {
		appendCalls(b, store, fmt.Sprintf("t%d", i), fmt.Sprintf("tool%d", i%3), 100_000/7+1)
	}
	run := func(b *testing.B, busDir string) float64 {
		bs := bustest.NewBusIn(b, store, busDir)
		newStatsServer(b, store, bs)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		begin := time.Now()
		go func() { done <- bs.Run(ctx) }()
		if err := bs.WaitCaughtUp(ctx); err != nil {
			b.Fatal(err)
		}
		ms := float64(time.Since(begin).Microseconds()) / 1000
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		return ms
	}
	b.Run("from-1", func(b *testing.B) {
		var ms float64
		for b.Loop() {
			ms = run(b, b.TempDir())
		}
		b.ReportMetric(ms, "ms-to-ready")
	})
	b.Run("from-checkpoint", func(b *testing.B) {
		warm := b.TempDir()
		run(b, warm)
		var ms float64
		for b.Loop() {
			ms = run(b, warm)
		}
		b.ReportMetric(ms, "ms-to-ready")
	})
}
