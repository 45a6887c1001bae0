package observability_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	convevents "github.com/crispy-enigma/crispy/modules/conversation/events"
	"github.com/crispy-enigma/crispy/modules/observability"
	toolevents "github.com/crispy-enigma/crispy/modules/tooling/events"
	"github.com/crispy-enigma/crispy/platform/bus"
	"github.com/crispy-enigma/crispy/platform/bus/bustest"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/httpapi"
	"github.com/crispy-enigma/crispy/platform/httpapi/httpapitest"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

var (
	acme  = tenant.MustParse("acme")
	beta  = tenant.MustParse("beta")
	epoch = time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
)

// clock is a settable clock shared by the store and the module.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Set(t time.Time)         { c.mu.Lock(); c.now = t; c.mu.Unlock() }
func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

type env struct {
	t     testing.TB
	store *eventstoretest.Memory
	clk   *clock
	bus   *bus.Bus
	stop  func() error // stops the bus (also at the test's end)
	dir   string       // the bus's checkpoints and read models
	set   *metrics.Set // the bus's metrics
	mod   *observability.Module
	h     http.Handler
}

type opts struct {
	deps  func(*observability.Deps)
	store *eventstoretest.Memory
	clk   *clock
	// dir holds the bus's checkpoints and read models: a second env on the first one's dir (after
	// stopping it) is a restart; empty: a fresh folder (a first start, or a rebuild from zero).
	dir string
	// cfg adjusts the bus's configuration (the NATS transport).
	cfg func(*bus.Config)
	// register adds other consumers to the bus before it starts (the audit log's projection).
	register func(bus.Consumers)
}

// newBus is bustest.NewBusIn with a metric set (to count what the projections were delivered).
func newBus(t testing.TB, store eventstore.Store, dir string, set *metrics.Set, adjust func(*bus.Config)) *bus.Bus {
	t.Helper()
	cfg := bus.Config{CheckpointDir: dir + "/bus", ReadModelDir: dir + "/readmodels",
		RetryInitial: time.Millisecond, RetryMax: 10 * time.Millisecond, MaxRetries: 2, CheckpointInterval: 50 * time.Millisecond}
	if adjust != nil {
		adjust(&cfg)
	}
	b, err := bus.New(cfg, bus.Deps{Store: store, Metrics: set})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newEnv(t testing.TB, o opts) *env {
	t.Helper()
	store := o.store
	if store == nil {
		store = eventstoretest.NewMemory()
	}
	clk := o.clk
	if clk == nil {
		clk = &clock{now: epoch}
	}
	store.SetClock(clk.Now)
	d := observability.Deps{Store: store, Now: clk.Now, Config: observability.Config{WebhookSecret: "s3cret", WebhookBackoff: time.Millisecond, WebhookAllowInternal: true}}
	if o.deps != nil {
		o.deps(&d)
	}
	mod, err := observability.New(d)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := httpapi.New(httpapi.Config{}, httpapi.Deps{Guard: httpapitest.HeaderGuard{}, OnRequest: mod.RecordRequest, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	dir := o.dir
	if dir == "" {
		dir = t.TempDir()
	}
	set := metrics.NewSet()
	b := newBus(t, store, dir, set, o.cfg)
	mod.Register(srv.API, b)
	if o.register != nil {
		o.register(b)
	}
	stop := bustest.Start(t, b)
	return &env{t: t, store: store, clk: clk, bus: b, stop: stop, dir: dir, set: set, mod: mod, h: srv.Handler()}
}

// sync waits until the bus has delivered every event in the store (projections applied them,
// in-process processors finished them).
func (e *env) sync() {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := e.bus.Sync(ctx); err != nil {
		e.t.Fatal(err)
	}
}

// projected is how many events the bus has applied to the projection name since it started.
func (e *env) projected(name string) uint64 {
	return e.set.GetOrCreateCounter(fmt.Sprintf(`crispy_bus_projected_events_total{consumer=%q}`, name)).Get()
}

type resp struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

// do calls the API as tenantID; key, when non-empty, is sent as x-api-key.
func (e *env) do(method, path, tenantID, key string, body any) resp {
	e.t.Helper()
	var rd *bytes.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	r := httptest.NewRequest(method, path, rd)
	r.Header.Set("Content-Type", "application/json")
	if tenantID != "" {
		r.Header.Set("x-tenant-id", tenantID)
	}
	if key != "" {
		r.Header.Set("x-api-key", key)
	}
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, r)
	out := resp{status: w.Code, header: w.Header(), raw: w.Body.String()}
	_ = json.Unmarshal(w.Body.Bytes(), &out.body)
	return out
}

func (e *env) get(path, tenantID string) resp {
	e.t.Helper()
	e.sync()
	return e.do(http.MethodGet, path, tenantID, "", nil)
}

func (e *env) append(t tenant.ID, category, id, typ string, v any) eventstore.Event {
	e.t.Helper()
	ev, err := eventstore.NewEventData(typ, v)
	if err != nil {
		e.t.Fatal(err)
	}
	res, err := e.store.Append(context.Background(), tenant.MustStream(t, category, id), eventstore.Any, ev)
	if err != nil {
		e.t.Fatal(err)
	}
	return res.Events[0]
}

// turn records a completed chat turn in session sid of t at the clock's time.
func (e *env) turn(t tenant.ID, sid, model string, prompt, completion, cached, reasoning int) {
	e.t.Helper()
	e.append(t, "session", sid, convevents.TypeUserMessageAdded, convevents.UserMessageAdded{SessionID: sid, TurnID: "t", Content: "hello"})
	e.append(t, "session", sid, convevents.TypeAssistantMessageCompleted, convevents.AssistantMessageCompleted{
		SessionID: sid, TurnID: "t", Content: "hi", Model: model, LatencyMs: 100, TTFTMs: 20,
		Usage: convevents.Usage{PromptTokens: prompt, CompletionTokens: completion, TotalTokens: prompt + completion, CachedTokens: cached, ReasoningTokens: reasoning}})
}

func (e *env) failedTurn(t tenant.ID, sid, model string, cancelled bool) {
	e.t.Helper()
	code := convevents.CodeAllModelsFailed
	if cancelled {
		code = convevents.CodeCancelled
	}
	e.append(t, "session", sid, convevents.TypeAssistantMessageFailed, convevents.AssistantMessageFailed{
		SessionID: sid, TurnID: "t", Code: code, Cancelled: cancelled, Model: model, LatencyMs: 300,
		Usage: convevents.Usage{PromptTokens: 10, Estimated: true}})
}

func (e *env) tool(t tenant.ID, name string, ok bool, ms float64) {
	e.t.Helper()
	if ok {
		e.append(t, "tool-audit", "", toolevents.TypeToolSucceeded, toolevents.ToolSucceeded{Tenant: t.String(), Tool: name, Success: true, DurationMs: ms})
	} else {
		e.append(t, "tool-audit", "", toolevents.TypeToolFailed, toolevents.ToolFailed{Tenant: t.String(), Tool: name, DurationMs: ms, ErrorCode: "EXECUTION_ERROR"})
	}
}

func wantProblem(t testing.TB, r resp, status int, code string) {
	t.Helper()
	if r.status != status || (code != "" && r.body["code"] != code) {
		t.Fatalf("got %d %v, want %d %s; body %s", r.status, r.body["code"], status, code, r.raw)
	}
	if !strings.Contains(r.raw, "requestId") {
		t.Fatalf("problem without requestId: %s", r.raw)
	}
}

func num(t testing.TB, m map[string]any, path ...string) float64 {
	t.Helper()
	var cur any = m
	for _, p := range path {
		mm, ok := cur.(map[string]any)
		if !ok {
			t.Fatalf("%v: %v is not an object", path, cur)
		}
		cur = mm[p]
	}
	f, ok := cur.(float64)
	if !ok {
		t.Fatalf("%v = %v (%T), want a number", path, cur, cur)
	}
	return f
}

func approx(a, b float64) bool {
	d := a - b
	if d < 0 {
		d = -d
	}
	return d < 1e-9
}
