package conversation_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/crispy-enigma/crispy/modules/conversation"
	tenancyevents "github.com/crispy-enigma/crispy/modules/tenancy/events"
	"github.com/crispy-enigma/crispy/platform/ai"
	"github.com/crispy-enigma/crispy/platform/ai/aitest"
	"github.com/crispy-enigma/crispy/platform/ai/offline"
	"github.com/crispy-enigma/crispy/platform/bus"
	"github.com/crispy-enigma/crispy/platform/bus/bustest"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/httpapi"
	"github.com/crispy-enigma/crispy/platform/httpapi/httpapitest"
	"github.com/crispy-enigma/crispy/platform/keystore/keystoretest"
	"github.com/crispy-enigma/crispy/platform/sealing"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// sealers holds one key store per event store, so envs sharing a store (a restart, a second
// replica) share its keys as a deployment's replicas do.
var sealers sync.Map // eventstore.Store → *sealing.Sealer

// sealed is store behind the sealing decorator with the module's policy, as crispy serve wires it.
func sealed(store eventstore.Store) (*sealing.Store, *sealing.Sealer) {
	if s, ok := store.(*sealing.Store); ok {
		return s, s.Sealer()
	}
	v, _ := sealers.LoadOrStore(store, sealing.New(keystoretest.NewMemory()))
	sl := v.(*sealing.Sealer)
	return sealing.NewStore(store, sl, conversation.SealPolicy()).KeepPlain(conversation.PlainFields()), sl
}

type policy struct {
	mu sync.Mutex
	m  map[string]tenancyevents.TenantConfig
}

func (p *policy) Config(_ context.Context, t tenant.ID) (tenancyevents.TenantConfig, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.m[t.String()], nil
}

// clock is a settable fake clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

type env struct {
	t      testing.TB
	h      http.Handler
	mod    *conversation.Module
	store  eventstore.Store
	fake   *aitest.Provider
	down   *aitest.Provider
	router *ai.Router
	policy *policy
	clock  *clock
	bus    *bus.Bus
	raw    eventstore.Store // the store under the sealing decorator (store): what is at rest
	dir    string           // the bus's checkpoints and read models
	// cancel stops the bus (a replica going away; its read models stay in dir).
	cancel func()
}

type opts struct {
	store    eventstore.Store
	config   conversation.Config
	tenants  map[string]tenancyevents.TenantConfig
	speaker  ai.Speaker
	router   ai.RouterConfig
	fake     *aitest.Provider
	provider ai.Provider // replaces the fake under "fake" when set
	retr     conversation.Retriever
	tools    conversation.ToolRunner
	metrics  *metrics.Set
	// dir holds the bus's checkpoints and read models (default: a new temporary folder); a second
	// env on the same dir and store is a restart of the first.
	dir      string
	instance string // Deps.Instance
	// busConfig, when set, replaces the test bus (NATS tests); dir is still used for its folders.
	busConfig *bus.Config
	// guard replaces the header guard (tests that need an API key's credential).
	guard httpapi.Guard
	// policyOverride replaces the tenants policy given to the module (tenants is then unused).
	policyOverride conversation.TenantPolicy
	// pricer prices model calls (per-key USD budgets); nil: none.
	pricer conversation.Pricer
	// window is a shared tokens-per-minute log (Redis); nil: the module's own.
	window conversation.TokenWindow
}

func newEnv(t testing.TB, o opts) *env {
	t.Helper()
	raw := o.store
	if raw == nil {
		raw = eventstoretest.NewMemory()
	}
	store, sealer := sealed(raw)
	fake := o.fake
	if fake == nil {
		fake = aitest.New(aitest.Script{})
	}
	down := aitest.New(aitest.Script{FailBefore: aitest.Unavailable("down:m")})
	var fp ai.Provider = fake
	if o.provider != nil {
		fp = o.provider
	}
	router, err := ai.NewRouter(o.router, map[string]ai.Provider{"fake": fp, "down": down, offline.Name: offline.New()})
	if err != nil {
		t.Fatal(err)
	}
	pol := &policy{m: o.tenants}
	if pol.m == nil {
		pol.m = map[string]tenancyevents.TenantConfig{}
	}
	clk := &clock{t: time.Now()}
	cfg := o.config
	if cfg.DefaultModel == "" {
		cfg.DefaultModel = "fake:m"
	}
	if cfg.ResumeWindow == 0 {
		cfg.ResumeWindow = 2 * time.Second
	}
	var tp conversation.TenantPolicy = pol
	if o.policyOverride != nil {
		tp = o.policyOverride
	}
	d := conversation.Deps{Config: cfg, Store: store, Router: router, Policy: tp, Speaker: o.speaker, Now: clk.Now, Metrics: o.metrics,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Instance: o.instance, Sealer: sealer, Pricer: o.pricer, TokenWindow: o.window}
	if o.retr != nil {
		d.Retriever = o.retr
	}
	if o.tools != nil {
		d.Tools = o.tools
	}
	mod, err := conversation.New(d)
	if err != nil {
		t.Fatal(err)
	}
	var guard httpapi.Guard = httpapitest.HeaderGuard{}
	if o.guard != nil {
		guard = o.guard
	}
	srv, err := httpapi.New(httpapi.Config{}, httpapi.Deps{Guard: guard})
	if err != nil {
		t.Fatal(err)
	}
	dir := o.dir
	if dir == "" {
		dir = t.TempDir()
	}
	var b *bus.Bus
	if o.busConfig != nil {
		c := *o.busConfig
		c.CheckpointDir, c.ReadModelDir = dir+"/bus", dir+"/readmodels"
		if b, err = bus.New(c, bus.Deps{Store: store}); err != nil {
			t.Fatal(err)
		}
	} else {
		b = bustest.NewBusIn(t, store, dir)
	}
	mod.Register(srv.API, b)
	stop := bustest.Start(t, b)
	e := &env{t: t, h: srv.Handler(), mod: mod, store: store, raw: raw, fake: fake, down: down, router: router, policy: pol, clock: clk, bus: b, dir: dir}
	e.cancel = func() {
		if err := stop(); err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("bus: %v", err)
		}
	}
	return e
}

// sync waits until the module's read models have applied every event in the store.
func (e *env) sync() {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := e.bus.Sync(ctx); err != nil {
		e.t.Fatal(err)
	}
}

type resp struct {
	status int
	body   map[string]any
	raw    string
	header http.Header
}

func (e *env) do(method, path, tenantID string, body any, hdr ...string) resp {
	e.t.Helper()
	var rd io.Reader = bytes.NewReader(nil)
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	r := httptest.NewRequest(method, path, rd)
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("x-tenant-id", tenantID)
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, r)
	out := resp{status: w.Code, raw: w.Body.String(), header: w.Header()}
	_ = json.Unmarshal(w.Body.Bytes(), &out.body)
	return out
}

func (e *env) chat(tenantID, session, msg string, extra map[string]any) resp {
	e.t.Helper()
	body := map[string]any{"sessionId": session, "message": msg}
	for k, v := range extra {
		body[k] = v
	}
	return e.do("POST", "/chat", tenantID, body)
}

func (e *env) chatJSON(tenantID, session, msg string) resp {
	e.t.Helper()
	return e.chat(tenantID, session, msg, map[string]any{"stream": false})
}

type sseEvent struct {
	id, name string
	data     map[string]any
}

func parseSSE(t testing.TB, raw string) []sseEvent {
	t.Helper()
	var out []sseEvent
	var cur sseEvent
	sc := bufio.NewScanner(strings.NewReader(raw))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if cur.name != "" || cur.id != "" {
				out = append(out, cur)
			}
			cur = sseEvent{}
		case strings.HasPrefix(line, "id: "):
			cur.id = line[4:]
		case strings.HasPrefix(line, "event: "):
			cur.name = line[7:]
		case strings.HasPrefix(line, "data: "):
			if err := json.Unmarshal([]byte(line[6:]), &cur.data); err != nil {
				t.Fatalf("bad data line %q: %v", line, err)
			}
		default:
			t.Fatalf("unexpected SSE line %q", line)
		}
	}
	return out
}

func (e *env) history(tenantID, session string) resp {
	e.t.Helper()
	return e.do("GET", "/chat/"+session+"/history", tenantID, nil)
}

func messages(r resp) []map[string]any {
	ms, _ := r.body["messages"].([]any)
	out := make([]map[string]any, len(ms))
	for i, m := range ms {
		out[i] = m.(map[string]any)
	}
	return out
}

func (e *env) streamEvents(tenantID, session string) []eventstore.Event {
	e.t.Helper()
	evs, err := e.store.ReadStream(context.Background(), tenant.MustStream(tenant.MustParse(tenantID), "session", session), 0, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	return evs
}

func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never happened: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func wantProblem(t testing.TB, r resp, status int, code string) {
	t.Helper()
	if e, ok := r.body["error"].(map[string]any); ok {
		// /v1/ answers errors in OpenAI's envelope; the request id is in x-request-id.
		if r.status != status || (code != "" && e["code"] != code) || r.header.Get("x-request-id") == "" {
			t.Fatalf("got %d %v, want %d %s; body %s", r.status, e["code"], status, code, r.raw)
		}
		return
	}
	if r.status != status || (code != "" && r.body["code"] != code) {
		t.Fatalf("got %d %v, want %d %s; body %s", r.status, r.body["code"], status, code, r.raw)
	}
	if !strings.Contains(r.raw, "requestId") {
		t.Fatalf("problem without requestId: %s", r.raw)
	}
}

// readable is types of the events whose content is readable (not erased).
func readable(evs []eventstore.Event) string {
	var s []string
	for _, e := range evs {
		if !e.Erased {
			s = append(s, strings.TrimPrefix(e.Type, "conversation."))
		}
	}
	return strings.Join(s, ",")
}

// atRest reports whether text is in any event of the tenant as stored (under the sealing).
func (e *env) atRest(tenantID, text string) bool {
	e.t.Helper()
	evs, err := e.raw.ReadTenant(context.Background(), tenant.MustParse(tenantID), eventstore.Start, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, ev := range evs {
		if strings.Contains(string(ev.Data), text) {
			return true
		}
	}
	return false
}

func types(evs []eventstore.Event) string {
	var s []string
	for _, e := range evs {
		s = append(s, strings.TrimPrefix(e.Type, "conversation."))
	}
	return strings.Join(s, ",")
}
