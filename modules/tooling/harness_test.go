package tooling_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"go.opentelemetry.io/otel/trace"

	tenancyevents "github.com/crispy-enigma/crispy/modules/tenancy/events"
	"github.com/crispy-enigma/crispy/modules/tooling"
	"github.com/crispy-enigma/crispy/platform/bus/bustest"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/httpapi"
	"github.com/crispy-enigma/crispy/platform/httpapi/httpapitest"
	"github.com/crispy-enigma/crispy/platform/keystore/keystoretest"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// testBin is the test plugin binary, built once per test binary; pidDir receives the pids of hanging
// plugins.
var testBin, pidDir string

func TestMain(m *testing.M) {
	if dir := os.Getenv(childHostEnv); dir != "" {
		os.Exit(childHost(dir))
	}
	os.Exit(func() int {
		dir, err := os.MkdirTemp("", "tooling-test-")
		if err != nil {
			fmt.Println(err)
			return 1
		}
		defer os.RemoveAll(dir)
		testBin = filepath.Join(dir, "testplugin")
		out, err := exec.Command("go", "build", "-o", testBin, "github.com/crispy-enigma/crispy/plugins/sdk/internal/testplugin").CombinedOutput()
		if err != nil {
			fmt.Printf("build test plugin: %v\n%s", err, out)
			return 1
		}
		pidDir = filepath.Join(dir, "pids")
		_ = os.Mkdir(pidDir, 0o755)
		os.Setenv("CRISPY_TESTPLUGIN_PIDDIR", pidDir)
		return m.Run()
	}())
}

// pluginsDir makes a plugins folder holding the test plugin under the given persona names.
func pluginsDir(t testing.TB, personas ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, p := range personas {
		if err := os.Link(testBin, filepath.Join(dir, p)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

type policy map[string]tenancyevents.TenantConfig

func (p policy) Config(_ context.Context, t tenant.ID) (tenancyevents.TenantConfig, error) {
	return p[t.String()], nil
}

// fakeIndex records which tenant every callback reached.
type fakeIndex struct {
	mu      sync.Mutex
	tenants []string
}

func (f *fakeIndex) Ingest(_ context.Context, t tenant.ID, d tooling.Document) (tooling.IngestResult, error) {
	f.mu.Lock()
	f.tenants = append(f.tenants, t.String())
	f.mu.Unlock()
	return tooling.IngestResult{DocID: d.DocID, Chunks: 1, EmbeddingModel: "test:embed"}, nil
}

func (f *fakeIndex) Complete(_ context.Context, t tenant.ID, r tooling.Completion) (tooling.CompletionResult, error) {
	f.mu.Lock()
	f.tenants = append(f.tenants, t.String())
	f.mu.Unlock()
	return tooling.CompletionResult{Text: "model says hi to " + t.String(), Model: "test:chat"}, nil
}

func (f *fakeIndex) seen() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.tenants...)
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

type env struct {
	t      testing.TB
	h      http.Handler
	mod    *tooling.Module
	store  *eventstoretest.Memory
	keys   *keystoretest.Memory
	index  *fakeIndex
	logs   *syncBuf
	cancel context.CancelFunc
	done   chan struct{}
}

type opts struct {
	policy  policy
	config  tooling.Config
	tracer  trace.Tracer
	metrics *metrics.Set
}

func newEnv(t testing.TB, dir string, o opts) *env {
	t.Helper()
	store := eventstoretest.NewMemory()
	logs := &syncBuf{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	idx := &fakeIndex{}
	cfg := o.config
	cfg.PluginsDir = dir
	keys := keystoretest.NewMemory()
	d := tooling.Deps{Config: cfg, Store: store, Keys: keys, Completer: idx, Ingester: idx, Log: log, Tracer: o.tracer, Metrics: o.metrics}
	if o.policy != nil {
		d.Policy = o.policy
	}
	mod, err := tooling.New(d)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := httpapi.New(httpapi.Config{}, httpapi.Deps{Guard: httpapitest.HeaderGuard{}, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := bustest.NewBus(t, store)
	mod.Register(srv.API, b)
	e := &env{t: t, h: srv.Handler(), mod: mod, store: store, keys: keys, index: idx, logs: logs, cancel: cancel, done: make(chan struct{})}
	go func() { _ = mod.Run(ctx); close(e.done) }()
	t.Cleanup(e.stop)
	bustest.Start(t, b)
	return e
}

func (e *env) stop() {
	e.cancel()
	<-e.done
}

type resp struct {
	status int
	body   map[string]any
	raw    string
}

func (e *env) do(method, path, tenantID string, body any) resp {
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
	r.Header.Set("x-tenant-id", tenantID)
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, r)
	out := resp{status: w.Code, raw: w.Body.String()}
	_ = json.Unmarshal(w.Body.Bytes(), &out.body)
	return out
}

func (e *env) exec(tenantID, tool string, params any) resp {
	e.t.Helper()
	return e.do("POST", "/tools/execute", tenantID, map[string]any{"tool_name": tool, "params": params})
}

func (e *env) audit(tenantID string) []eventstore.Event {
	e.t.Helper()
	evs, err := e.store.ReadStream(context.Background(), tenant.MustStream(tenant.MustParse(tenantID), "tool-audit", ""), 0, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	return evs
}

// eventually polls cond (the read model is fed asynchronously, like the real bus).
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never happened: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func wantProblem(t testing.TB, r resp, status int, code string) {
	t.Helper()
	if r.status != status || r.body["code"] != code {
		t.Fatalf("got %d %v, want %d %s; body %s", r.status, r.body["code"], status, code, r.raw)
	}
	if !strings.Contains(r.raw, "requestId") {
		t.Fatalf("problem without requestId: %s", r.raw)
	}
}

// paramsHMAC is the fingerprint the audit should hold for params in tenant tid: HMAC-SHA256 under
// the tenant's secret as the key store holds it (the test's own computation, not the module's).
func (e *env) paramsHMAC(tid string, params []byte) string {
	e.t.Helper()
	secret, err := e.keys.Key(context.Background(), tenant.MustParse(tid), "tenant/hmac")
	if err != nil {
		e.t.Fatalf("tenant %s params secret: %v", tid, err)
	}
	m := hmac.New(sha256.New, secret)
	m.Write(params)
	return hex.EncodeToString(m.Sum(nil))
}
