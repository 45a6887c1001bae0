package tenancy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/danielgtaylor/huma/v2"

	"github.com/crispy-enigma/crispy/modules/tenancy"
	"github.com/crispy-enigma/crispy/platform/bus"
	"github.com/crispy-enigma/crispy/platform/bus/bustest"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/httpapi"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// Keys of the test tenants; the file holds only their hashes.
const (
	keyA  = "ce_acmeKeyNumberOne"
	keyA2 = "ce_acmeKeyNumberTwo"
	keyB  = "ce_betaKeyNumberOne"
)

var epoch = time.Unix(1_800_000_000, 0)

// tenantsYAML has acme (two keys, hosts, CORS, tight limit), beta (a key, a host) and open (keyless).
func tenantsYAML() string {
	return `tenants:
  - id: acme
    hosts: [acme.example]
    apiKeys: ["` + tenancy.HashAPIKey(keyA) + `", "` + tenancy.HashAPIKey(keyA2) + `"]
    rateLimit: {perMinute: 3, burst: 3, windowSec: 60}
    cors: {allowedOrigins: ["https://app.acme.example"]}
    features: {rag: true}
  - id: beta
    hosts: [beta.example]
    apiKeys: ["` + tenancy.HashAPIKey(keyB) + `"]
  - id: open
    hosts: [open.example]
`
}

func writeFile(t testing.TB, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tenants.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// lockedBuffer collects log output written from request goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// fixedClock is a settable clock.
type fixedClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fixedClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fixedClock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// harness is the module on an in-memory store and a real bus (its tenant directory read model),
// behind the real HTTP floor, with one test operation (GET /probe) that echoes the tenant the guard
// admitted.
type harness struct {
	store   eventstore.Store
	mod     *tenancy.Module
	handler http.Handler
	clock   *fixedClock
	log     *lockedBuffer
	metrics *metrics.Set
	bus     *bus.Bus     // nil without a bus
	stopBus func() error // nil without a bus
}

type probeOut struct {
	Body struct {
		Tenant string `json:"tenant"`
	}
}

// setup varies how a harness is built.
type setup struct {
	store    eventstore.Store // the module's store (nil: a new in-memory store)
	busStore eventstore.Store // the bus's store (nil: the module's)
	busDir   string           // the bus's checkpoints and read models (empty: a new temporary folder)
	noBus    bool             // Start without Register, as the command-line tools do
}

func newHarness(t testing.TB, store eventstore.Store, cfg tenancy.Config) (*harness, error) {
	t.Helper()
	return build(t, cfg, setup{store: store})
}

func build(t testing.TB, cfg tenancy.Config, su setup) (*harness, error) {
	t.Helper()
	if su.store == nil {
		su.store = eventstoretest.NewMemory()
	}
	if su.busStore == nil {
		su.busStore = su.store
	}
	if su.busDir == "" {
		su.busDir = t.TempDir()
	}
	h := &harness{store: su.store, clock: &fixedClock{t: epoch}, log: &lockedBuffer{}, metrics: metrics.NewSet()}
	log := slog.New(slog.NewJSONHandler(h.log, nil))
	mod, err := tenancy.New(tenancy.Deps{Config: cfg, Store: su.store, Log: log, Metrics: h.metrics, Now: h.clock.Now})
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { _ = mod.Close() })
	h.mod = mod
	if !su.noBus {
		h.bus = bustest.NewBusIn(t, su.busStore, su.busDir)
		mod.Register(h.bus)
		h.stopBus = bustest.Start(t, h.bus)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := mod.Start(ctx); err != nil {
		return h, err
	}
	if !su.noBus {
		// As serve runs it: Run records the removals once the directory has caught up.
		rctx, stop := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- mod.Run(rctx) }()
		t.Cleanup(func() {
			stop()
			if err := <-done; err != nil {
				t.Errorf("tenancy Run: %v", err)
			}
		})
		if err := mod.WaitSynced(ctx); err != nil {
			return h, err
		}
	}
	srv, err := httpapi.New(httpapi.Config{}, httpapi.Deps{Guard: mod.Guard(), Now: h.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	huma.Register(srv.API, huma.Operation{OperationID: "get-probe", Method: http.MethodGet, Path: "/probe"},
		func(ctx context.Context, _ *struct{}) (*probeOut, error) {
			out := &probeOut{}
			id, _ := tenant.FromContext(ctx)
			out.Body.Tenant = id.String()
			return out, nil
		})
	h.handler = srv.Handler()
	return h, nil
}

func mustHarness(t testing.TB, cfg tenancy.Config) *harness {
	t.Helper()
	h, err := newHarness(t, nil, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// req describes a request's tenant-selecting headers.
type req struct {
	tenant, host, key, bearer, user, origin string
}

type resp struct {
	status int
	header http.Header
	body   map[string]any
}

func (h *harness) get(t testing.TB, r req) resp {
	t.Helper()
	hr := httptest.NewRequest(http.MethodGet, "/probe", nil)
	if r.host != "" {
		hr.Host = r.host
	}
	for k, v := range map[string]string{"x-tenant-id": r.tenant, "x-api-key": r.key, "x-user-id": r.user, "Origin": r.origin} {
		if v != "" {
			hr.Header.Set(k, v)
		}
	}
	if r.bearer != "" {
		hr.Header.Set("Authorization", "Bearer "+r.bearer)
	}
	w := httptest.NewRecorder()
	h.handler.ServeHTTP(w, hr)
	out := resp{status: w.Code, header: w.Header()}
	_ = json.Unmarshal(w.Body.Bytes(), &out.body)
	return out
}

// metric returns the text exposition line of a series, "" when absent.
func (h *harness) metric(name string) string {
	var b bytes.Buffer
	h.metrics.WritePrometheus(&b)
	for _, l := range strings.Split(b.String(), "\n") {
		if strings.HasPrefix(l, name+" ") {
			return l
		}
	}
	return ""
}

func writeFileAt(path, body string) error { return os.WriteFile(path, []byte(body), 0o600) }

func admission(tenantID string) httpapi.Admission { return httpapi.Admission{TenantHeader: tenantID} }
