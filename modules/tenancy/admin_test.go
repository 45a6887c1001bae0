package tenancy_test

import (
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

	"github.com/danielgtaylor/huma/v2"

	"github.com/crispy-enigma/crispy/modules/tenancy"
	"github.com/crispy-enigma/crispy/platform/bus/bustest"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/httpapi"
	"github.com/crispy-enigma/crispy/platform/request"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

const adminKey = "cea_test-admin-key"

func adminHash() string {
	h := tenancy.HashAPIKey(adminKey)
	return strings.TrimPrefix(h, "sha256:")
}

// adminServer is the module behind the real HTTP floor with the admin API, the scope middleware
// and probe operations under each scope's paths (they echo the tenant, the actor and the user).
type adminServer struct {
	mod     *tenancy.Module
	handler http.Handler
	clock   *fixedClock
	erased  []tenant.ID
	fails   int // erasures to fail before one succeeds
	mu      sync.Mutex
	stop    func() // ends the module's Run (a replica shutting down)
}

func (s *adminServer) erasedIDs() []tenant.ID {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]tenant.ID(nil), s.erased...)
}

type probeEcho struct {
	Body struct {
		Tenant string `json:"tenant"`
		Actor  string `json:"actor"`
		User   string `json:"user"`
	}
}

func newAdminServer(t testing.TB, store eventstore.Store, file string, opts ...func(*tenancy.Config)) *adminServer {
	t.Helper()
	return newAdminServerOn(t, store, file, true, opts...)
}

// newAdminServerOn is newAdminServer that, without waitCaughtUp, returns while the bus and the
// read models may still be catching up (a replica just started).
func newAdminServerOn(t testing.TB, store eventstore.Store, file string, waitCaughtUp bool, opts ...func(*tenancy.Config)) *adminServer {
	t.Helper()
	if store == nil {
		store = eventstoretest.NewMemory()
	}
	s := &adminServer{clock: &fixedClock{t: time.Now()}}
	cfg := tenancy.Config{TenantsFile: file, AdminKeySHA256: adminHash()}
	for _, o := range opts {
		o(&cfg)
	}
	mod, err := tenancy.New(tenancy.Deps{Config: cfg, Store: store,
		Log: slog.New(slog.DiscardHandler), Now: s.clock.Now,
		Erase: func(_ context.Context, id tenant.ID) error {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.fails > 0 {
				s.fails--
				return errors.New("key store down")
			}
			s.erased = append(s.erased, id)
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	s.mod = mod
	b := bustest.NewBusIn(t, store, t.TempDir())
	mod.Register(b)
	if waitCaughtUp {
		bustest.Start(t, b)
	} else {
		bctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- b.Run(bctx) }()
		t.Cleanup(func() { cancel(); <-done })
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := mod.Start(ctx); err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mod.Run(rctx) }()
	var once sync.Once
	s.stop = func() { once.Do(func() { stop(); <-done }) }
	t.Cleanup(s.stop)
	if waitCaughtUp {
		if err := mod.WaitSynced(ctx); err != nil {
			t.Fatal(err)
		}
	}
	srv, err := httpapi.New(httpapi.Config{}, httpapi.Deps{Guard: mod.Guard()})
	if err != nil {
		t.Fatal(err)
	}
	srv.API.UseMiddleware(mod.Middleware(srv.API, "GET /metrics"))
	mod.Mount(srv.API)
	for _, p := range []string{"/chat/probe", "/search/probe", "/ingest/probe", "/audit/probe", "/usage/probe"} {
		huma.Register(srv.API, huma.Operation{OperationID: "probe" + strings.ReplaceAll(p, "/", "-"), Method: http.MethodGet, Path: p},
			func(ctx context.Context, _ *struct{}) (*probeEcho, error) {
				out := &probeEcho{}
				id, _ := tenant.FromContext(ctx)
				info := request.From(ctx)
				out.Body.Tenant, out.Body.Actor, out.Body.User = id.String(), info.Actor, info.User
				return out, nil
			})
	}
	op := huma.Operation{OperationID: "metrics", Method: http.MethodGet, Path: "/metrics"}
	httpapi.Public(&op)
	huma.Register(srv.API, op, func(context.Context, *struct{}) (*probeEcho, error) { return &probeEcho{}, nil })
	s.handler = srv.Handler()
	return s
}

type call struct {
	method, path string
	body         any
	admin        string // bearer admin key
	key          string // x-api-key
	tenant       string // x-tenant-id
	user         string
}

func (s *adminServer) do(t testing.TB, c call) resp {
	t.Helper()
	var rd io.Reader
	switch b := c.body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	if c.method == "" {
		c.method = http.MethodGet
	}
	r := httptest.NewRequest(c.method, c.path, rd)
	if rd != nil {
		r.Header.Set("Content-Type", "application/json")
	}
	if c.admin != "" {
		r.Header.Set("Authorization", "Bearer "+c.admin)
	}
	for k, v := range map[string]string{"x-api-key": c.key, "x-tenant-id": c.tenant, "x-user-id": c.user} {
		if v != "" {
			r.Header.Set(k, v)
		}
	}
	w := httptest.NewRecorder()
	s.handler.ServeHTTP(w, r)
	out := resp{status: w.Code, header: w.Header()}
	_ = json.Unmarshal(w.Body.Bytes(), &out.body)
	return out
}

func want(t testing.TB, r resp, status int, code string) {
	t.Helper()
	if r.status != status || (code != "" && r.body["code"] != code) {
		t.Fatalf("got %d %v, want %d %s", r.status, r.body, status, code)
	}
}

func (s *adminServer) newKey(t testing.TB, tenantID string, body map[string]any) (secret, id string) {
	t.Helper()
	r := s.do(t, call{method: http.MethodPost, path: "/admin/tenants/" + tenantID + "/keys", admin: adminKey, body: body})
	want(t, r, 201, "")
	return r.body["secret"].(string), r.body["id"].(string)
}

func TestAdminAPICreatesTenantsAndKeysThatAuthenticate(t *testing.T) {
	s := newAdminServer(t, nil, "")
	// No admin key, a wrong one, a tenant key: all refused.
	want(t, s.do(t, call{path: "/admin/tenants"}), 401, "admin_key_required")
	want(t, s.do(t, call{path: "/admin/tenants", admin: "nope"}), 401, "invalid_admin_key")

	r := s.do(t, call{method: http.MethodPost, path: "/admin/tenants", admin: adminKey,
		body: map[string]any{"id": "acme", "hosts": []string{"acme.example"}, "rateLimit": map[string]any{"perMinute": 100, "burst": 50}}})
	want(t, r, 201, "")
	if r.body["origin"] != "api" {
		t.Fatalf("origin = %v", r.body)
	}
	want(t, s.do(t, call{method: http.MethodPost, path: "/admin/tenants", admin: adminKey, body: map[string]any{"id": "acme"}}), 409, "tenant_exists")

	// A keyless tenant made through the API is served at once.
	want(t, s.do(t, call{path: "/chat/probe", tenant: "acme"}), 200, "")

	secret, id := s.newKey(t, "acme", map[string]any{"name": "ci"})
	if !strings.HasPrefix(id, "key:") || !strings.HasPrefix(secret, "ce_") {
		t.Fatalf("id %q secret %q", id, secret)
	}
	// Now the tenant needs a key; the key authenticates and is the actor.
	want(t, s.do(t, call{path: "/chat/probe", tenant: "acme"}), 401, "api_key_required")
	r = s.do(t, call{path: "/chat/probe", key: secret})
	want(t, r, 200, "")
	if r.body["tenant"] != "acme" || r.body["actor"] != id {
		t.Fatalf("probe = %v", r.body)
	}
	// Listing shows the key (default scopes, last used) but never the secret.
	r = s.do(t, call{path: "/admin/tenants/acme/keys", admin: adminKey})
	want(t, r, 200, "")
	raw, _ := json.Marshal(r.body)
	if strings.Contains(string(raw), secret) || strings.Contains(string(raw), "sha256:") {
		t.Fatalf("key list shows a secret or hash: %s", raw)
	}
	k := r.body["keys"].([]any)[0].(map[string]any)
	if k["id"] != id || k["name"] != "ci" || len(k["scopes"].([]any)) != 5 || k["lastUsedAt"] == nil {
		t.Fatalf("key = %v", k)
	}
	// Tenant keys never authorise /admin.
	want(t, s.do(t, call{path: "/admin/tenants", admin: secret}), 401, "invalid_admin_key")

	// Update and read back; unknown tenant 404.
	want(t, s.do(t, call{method: http.MethodPut, path: "/admin/tenants/acme", admin: adminKey, body: map[string]any{"hosts": []string{"acme.test"}}}), 200, "")
	r = s.do(t, call{path: "/admin/tenants/acme", admin: adminKey})
	if hosts := r.body["config"].(map[string]any)["hosts"].([]any); len(hosts) != 1 || hosts[0] != "acme.test" {
		t.Fatalf("read back = %v", r.body)
	}
	want(t, s.do(t, call{path: "/admin/tenants/nobody", admin: adminKey}), 404, "tenant_not_found")
	want(t, s.do(t, call{method: http.MethodPost, path: "/admin/tenants/nobody/keys", admin: adminKey, body: map[string]any{}}), 404, "tenant_not_found")
	want(t, s.do(t, call{method: http.MethodPost, path: "/admin/tenants/acme/keys/key:000000000000/revoke", admin: adminKey}), 404, "key_not_found")
	r = s.do(t, call{path: "/admin/tenants", admin: adminKey})
	if ts := r.body["tenants"].([]any); len(ts) != 2 { // demo and acme
		t.Fatalf("tenants = %v", r.body)
	}
}

func TestAdminAPIValidatesLikeTheTenantsFile(t *testing.T) {
	s := newAdminServer(t, nil, "")
	for _, c := range []struct {
		body  any
		field string
	}{
		{map[string]any{"id": "Bad Id"}, "body.id"},
		{map[string]any{"id": "x", "rateLimit": map[string]any{"perMinute": -1}}, "body.rateLimit.perMinute"},
		{map[string]any{"id": "x", "nonsense": 1}, "body.nonsense"},
		{map[string]any{"id": "x", "apiKeys": []string{"sha256:00"}}, "body.apiKeys"},
		{"[1,2]", "body"},
	} {
		r := s.do(t, call{method: http.MethodPost, path: "/admin/tenants", admin: adminKey, body: c.body})
		if r.status != 422 && r.status != 400 {
			t.Fatalf("%v: status %d %v", c.body, r.status, r.body)
		}
		if r.body["requestId"] == nil {
			t.Fatalf("%v: no request id: %v", c.body, r.body)
		}
		raw, _ := json.Marshal(r.body)
		if !strings.Contains(string(raw), c.field) {
			t.Fatalf("%v: problem does not name %s: %s", c.body, c.field, raw)
		}
	}
	want(t, s.do(t, call{method: http.MethodPost, path: "/admin/tenants", admin: adminKey, body: map[string]any{"id": "acme"}}), 201, "")
	for _, body := range []map[string]any{{"scopes": []string{"root"}}, {"expiresAt": "2001-01-01T00:00:00Z"}, {"limits": map[string]any{"perMinute": -3}}} {
		r := s.do(t, call{method: http.MethodPost, path: "/admin/tenants/acme/keys", admin: adminKey, body: body})
		if r.status != 422 && r.status != 400 {
			t.Fatalf("%v: %d %v", body, r.status, r.body)
		}
	}
}

func TestKeyScopesAreEnforcedOnEveryTenantRoute(t *testing.T) {
	s := newAdminServer(t, nil, "")
	want(t, s.do(t, call{method: http.MethodPost, path: "/admin/tenants", admin: adminKey, body: map[string]any{"id": "acme"}}), 201, "")
	chatOnly, _ := s.newKey(t, "acme", map[string]any{"scopes": []string{"chat"}})
	auditor, _ := s.newKey(t, "acme", map[string]any{"scopes": []string{"audit"}})
	def, _ := s.newKey(t, "acme", map[string]any{})
	want(t, s.do(t, call{path: "/chat/probe", key: chatOnly}), 200, "")
	r := s.do(t, call{path: "/search/probe", key: chatOnly})
	want(t, r, 403, "scope_required")
	if !strings.Contains(r.body["detail"].(string), `"search"`) {
		t.Fatalf("detail does not name the scope: %v", r.body)
	}
	want(t, s.do(t, call{path: "/audit/probe", key: def}), 403, "scope_required") // default: all but audit
	want(t, s.do(t, call{path: "/usage/probe", key: def}), 200, "")
	want(t, s.do(t, call{path: "/audit/probe", key: auditor}), 200, "")
	want(t, s.do(t, call{path: "/chat/probe", key: auditor}), 403, "scope_required")
}

func TestKeylessTenantsAreAuditedWithAnAuditKeyOrAnAdminKey(t *testing.T) {
	s := newAdminServer(t, nil, writeFile(t, tenantsYAML()))
	// open is keyless: its chat stays open, its audit needs a credential since admin keys exist.
	want(t, s.do(t, call{path: "/chat/probe", tenant: "open"}), 200, "")
	want(t, s.do(t, call{path: "/audit/probe", tenant: "open"}), 401, "api_key_required")
	r := s.do(t, call{path: "/audit/probe", tenant: "open", key: adminKey})
	want(t, r, 200, "")
	if r.body["tenant"] != "open" || !strings.HasPrefix(r.body["actor"].(string), "admin:") {
		t.Fatalf("admin audit = %v", r.body)
	}
	// An admin key is no tenant key elsewhere, and must name its tenant.
	want(t, s.do(t, call{path: "/chat/probe", tenant: "open", key: adminKey}), 401, "invalid_api_key")
	want(t, s.do(t, call{path: "/audit/probe", key: adminKey}), 404, "tenant_not_found")
	// An audit-only key of the keyless tenant audits it, and does not close its chat.
	auditor, _ := s.newKey(t, "open", map[string]any{"scopes": []string{"audit"}})
	want(t, s.do(t, call{path: "/audit/probe", key: auditor}), 200, "")
	want(t, s.do(t, call{path: "/chat/probe", tenant: "open"}), 200, "")
	want(t, s.do(t, call{path: "/audit/probe", tenant: "open"}), 401, "api_key_required")
}

func TestRevokedExpiredAndRotatedKeys(t *testing.T) {
	s := newAdminServer(t, nil, "")
	want(t, s.do(t, call{method: http.MethodPost, path: "/admin/tenants", admin: adminKey, body: map[string]any{"id": "acme"}}), 201, "")
	exp := s.clock.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	expiring, _ := s.newKey(t, "acme", map[string]any{"expiresAt": exp})
	revoked, rid := s.newKey(t, "acme", map[string]any{})
	rotated, roid := s.newKey(t, "acme", map[string]any{"scopes": []string{"chat"}})

	want(t, s.do(t, call{path: "/chat/probe", key: expiring}), 200, "")
	want(t, s.do(t, call{method: http.MethodPost, path: "/admin/tenants/acme/keys/" + rid + "/revoke", admin: adminKey}), 200, "")
	want(t, s.do(t, call{path: "/chat/probe", key: revoked}), 401, "key_revoked")

	r := s.do(t, call{method: http.MethodPost, path: "/admin/tenants/acme/keys/" + roid + "/rotate", admin: adminKey, body: map[string]any{"graceSeconds": 60}})
	want(t, r, 200, "")
	fresh := r.body["secret"].(string)
	if r.body["id"] != roid || r.body["previousValidUntil"] == nil || fresh == rotated {
		t.Fatalf("rotate = %v", r.body)
	}
	// Both secrets work during the grace period, as the same key with the same scopes.
	for _, k := range []string{rotated, fresh} {
		r := s.do(t, call{path: "/chat/probe", key: k})
		want(t, r, 200, "")
		if r.body["actor"] != roid {
			t.Fatalf("actor = %v", r.body)
		}
		want(t, s.do(t, call{path: "/search/probe", key: k}), 403, "scope_required")
	}
	s.clock.Set(s.clock.Now().Add(2 * time.Minute))
	want(t, s.do(t, call{path: "/chat/probe", key: rotated}), 401, "key_expired")
	want(t, s.do(t, call{path: "/chat/probe", key: fresh}), 200, "")
	s.clock.Set(s.clock.Now().Add(2 * time.Hour))
	want(t, s.do(t, call{path: "/chat/probe", key: expiring}), 401, "key_expired")
	r = s.do(t, call{path: "/admin/tenants/acme/keys", admin: adminKey})
	for _, k := range r.body["keys"].([]any) {
		k := k.(map[string]any)
		if (k["id"] == rid) != (k["revoked"] == true) {
			t.Fatalf("revoked flag: %v", k)
		}
	}
}

func TestKeyBoundToAUserActsAsThatUser(t *testing.T) {
	s := newAdminServer(t, nil, "")
	want(t, s.do(t, call{method: http.MethodPost, path: "/admin/tenants", admin: adminKey, body: map[string]any{"id": "acme"}}), 201, "")
	k, _ := s.newKey(t, "acme", map[string]any{"user": "u-7"})
	r := s.do(t, call{path: "/chat/probe", key: k, user: "someone-else"})
	want(t, r, 200, "")
	if r.body["user"] != "u-7" {
		t.Fatalf("user = %v", r.body)
	}
}

func TestTenantIsolationOfKeysAndAdmin(t *testing.T) {
	s := newAdminServer(t, nil, writeFile(t, tenantsYAML()))
	aKey, aID := s.newKey(t, "acme", map[string]any{"scopes": []string{"chat", "audit"}})
	// beta's key cannot act for acme, list or revoke acme's keys.
	want(t, s.do(t, call{path: "/chat/probe", tenant: "acme", key: keyB}), 401, "invalid_api_key")
	want(t, s.do(t, call{path: "/admin/tenants/acme/keys", admin: keyB}), 401, "invalid_admin_key")
	want(t, s.do(t, call{path: "/admin/tenants/acme/keys", key: keyB, tenant: "beta"}), 401, "invalid_admin_key")
	want(t, s.do(t, call{method: http.MethodPost, path: "/admin/tenants/acme/keys/" + aID + "/revoke", key: keyB}), 401, "invalid_admin_key")
	// acme's own key (even with audit) cannot reach /admin.
	want(t, s.do(t, call{path: "/admin/tenants", admin: aKey}), 401, "invalid_admin_key")
	want(t, s.do(t, call{path: "/admin/tenants", key: aKey}), 401, "invalid_admin_key")
	// An acme key id does not exist under beta.
	want(t, s.do(t, call{method: http.MethodPost, path: "/admin/tenants/beta/keys/" + aID + "/revoke", admin: adminKey}), 404, "key_not_found")
	want(t, s.do(t, call{path: "/chat/probe", key: aKey}), 200, "")
	// /metrics needs an admin key.
	want(t, s.do(t, call{path: "/metrics"}), 401, "admin_key_required")
	want(t, s.do(t, call{path: "/metrics", key: aKey}), 401, "invalid_admin_key")
	want(t, s.do(t, call{path: "/metrics", admin: adminKey}), 200, "")
}

func TestTenantsFileSyncLeavesAPIKeysAndTenants(t *testing.T) {
	file := writeFile(t, tenantsYAML())
	s := newAdminServer(t, nil, file)
	apiKey, _ := s.newKey(t, "acme", map[string]any{})
	want(t, s.do(t, call{method: http.MethodPost, path: "/admin/tenants", admin: adminKey, body: map[string]any{"id": "gamma"}}), 201, "")
	// The file drops acme's second key and beta (a reload: SIGHUP runs Start again).
	body := strings.Replace(tenantsYAML(), `, "`+tenancy.HashAPIKey(keyA2)+`"`, "", 1)
	body = body[:strings.Index(body, "  - id: beta")] + body[strings.Index(body, "  - id: open"):]
	if err := writeFileAt(file, body); err != nil {
		t.Fatal(err)
	}
	if err := s.mod.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.mod.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	want(t, s.do(t, call{path: "/chat/probe", key: keyA2}), 401, "key_revoked")
	want(t, s.do(t, call{path: "/chat/probe", key: keyA}), 200, "")
	want(t, s.do(t, call{path: "/chat/probe", key: apiKey}), 200, "")
	want(t, s.do(t, call{path: "/chat/probe", tenant: "beta"}), 404, "tenant_not_found")
	want(t, s.do(t, call{path: "/chat/probe", tenant: "gamma"}), 200, "")
}

func TestApplyRecordsATenantsFileThroughTheAdminAPI(t *testing.T) {
	s := newAdminServer(t, nil, "")
	yaml := "tenants:\n  - id: zeta\n    apiKeys: [\"" + tenancy.HashAPIKey(keyB) + "\"]\n"
	r := s.do(t, call{method: http.MethodPost, path: "/admin/apply", admin: adminKey, body: yaml})
	want(t, r, 200, "")
	if r.body["registered"] != float64(1) || r.body["keysAdded"] != float64(1) {
		t.Fatalf("apply = %v", r.body)
	}
	r = s.do(t, call{path: "/chat/probe", key: keyB})
	if r.status != 200 || r.body["tenant"] != "zeta" {
		t.Fatalf("applied key = %d %v", r.status, r.body)
	}
	want(t, s.do(t, call{method: http.MethodPost, path: "/admin/apply", admin: adminKey, body: "tenants: 3"}), 400, "invalid_tenants_file")
	want(t, s.do(t, call{method: http.MethodPost, path: "/admin/apply", key: keyB, body: yaml}), 401, "invalid_admin_key")
	want(t, s.do(t, call{method: http.MethodPost, path: "/admin/apply", body: yaml}), 401, "admin_key_required")
}

func TestDeleteTenantErasesAndStopsServingIt(t *testing.T) {
	s := newAdminServer(t, nil, "")
	want(t, s.do(t, call{method: http.MethodPost, path: "/admin/tenants", admin: adminKey, body: map[string]any{"id": "acme"}}), 201, "")
	k, _ := s.newKey(t, "acme", map[string]any{})
	want(t, s.do(t, call{path: "/chat/probe", key: k}), 200, "")
	r := s.do(t, call{method: http.MethodDelete, path: "/admin/tenants/acme", admin: adminKey})
	want(t, r, 200, "")
	if e := s.erasedIDs(); r.body["erased"] != true || len(e) == 0 || e[0].String() != "acme" {
		t.Fatalf("delete = %v, erased %v", r.body, e)
	}
	want(t, s.do(t, call{path: "/chat/probe", key: k}), 401, "invalid_api_key")
	want(t, s.do(t, call{path: "/chat/probe", tenant: "acme"}), 404, "tenant_not_found")
	want(t, s.do(t, call{method: http.MethodDelete, path: "/admin/tenants/acme", admin: adminKey}), 404, "tenant_not_found")
	// It can be made again, from a clean slate: the old key stays dead.
	want(t, s.do(t, call{method: http.MethodPost, path: "/admin/tenants", admin: adminKey, body: map[string]any{"id": "acme"}}), 201, "")
	want(t, s.do(t, call{path: "/chat/probe", key: k}), 401, "invalid_api_key")
}

// A deletion whose erasure fails (the key store is down) is still acknowledged as recorded (503
// erasure_pending), and the tenancy.eraser processor erases from the event once it can.
func TestDeletionErasesAgainFromTheEvent(t *testing.T) {
	s := newAdminServer(t, nil, "")
	want(t, s.do(t, call{method: http.MethodPost, path: "/admin/tenants", admin: adminKey, body: map[string]any{"id": "acme"}}), 201, "")
	s.mu.Lock()
	s.fails = 2
	s.mu.Unlock()
	want(t, s.do(t, call{method: http.MethodDelete, path: "/admin/tenants/acme", admin: adminKey}), 503, "erasure_pending")
	want(t, s.do(t, call{path: "/chat/probe", tenant: "acme"}), 404, "tenant_not_found")
	eventually(t, "the processor erased acme", func() bool {
		e := s.erasedIDs()
		return len(e) > 0 && e[0].String() == "acme"
	})
}

// Two replicas on one store, each with its own bus and tenant directory: what the admin API records
// on one is served by the other without a restart.
func TestAnotherReplicaSeesKeyChanges(t *testing.T) {
	store := eventstoretest.NewMemory()
	a := newAdminServer(t, store, "")
	b := newAdminServer(t, store, "")
	want(t, a.do(t, call{method: http.MethodPost, path: "/admin/tenants", admin: adminKey, body: map[string]any{"id": "acme"}}), 201, "")
	k, id := a.newKey(t, "acme", map[string]any{})
	eventually(t, "replica b admits the new key", func() bool { return b.do(t, call{path: "/chat/probe", key: k}).status == 200 })
	want(t, a.do(t, call{method: http.MethodPost, path: "/admin/tenants/acme/keys/" + id + "/revoke", admin: adminKey}), 200, "")
	start := time.Now()
	eventually(t, "replica b refuses the revoked key", func() bool {
		r := b.do(t, call{path: "/chat/probe", key: k})
		return r.status == 401 && r.body["code"] == "key_revoked"
	})
	t.Logf("revocation seen by the other replica after %s", time.Since(start).Round(time.Millisecond))
}

func eventually(t testing.TB, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 20 s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The tenants file may name a key and choose its scopes ({hash, name, scopes}); changing them in the
// file changes the key (same id), and an unknown scope is refused with its line.
func TestTenantsFileKeyScopes(t *testing.T) {
	file := writeFile(t, "tenants:\n  - id: acme\n    apiKeys:\n      - {hash: \""+tenancy.HashAPIKey(keyA)+"\", name: ops, scopes: [chat, audit]}\n      - \""+tenancy.HashAPIKey(keyA2)+"\"\n")
	s := newAdminServer(t, nil, file)
	want(t, s.do(t, call{path: "/audit/probe", key: keyA}), 200, "")
	want(t, s.do(t, call{path: "/search/probe", key: keyA}), 403, "scope_required")
	want(t, s.do(t, call{path: "/audit/probe", key: keyA2}), 403, "scope_required")
	want(t, s.do(t, call{path: "/search/probe", key: keyA2}), 200, "")
	if err := writeFileAt(file, "tenants:\n  - id: acme\n    apiKeys:\n      - {hash: \""+tenancy.HashAPIKey(keyA)+"\", scopes: [search]}\n"); err != nil {
		t.Fatal(err)
	}
	if err := s.mod.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	want(t, s.do(t, call{path: "/search/probe", key: keyA}), 200, "")
	want(t, s.do(t, call{path: "/audit/probe", key: keyA}), 403, "scope_required")
	want(t, s.do(t, call{path: "/search/probe", key: keyA2}), 401, "key_revoked")
	err := tenancy.ValidateTenantsFile(writeFile(t, "tenants:\n  - id: acme\n    apiKeys:\n      - {hash: \""+tenancy.HashAPIKey(keyA)+"\", scopes: [root]}\n"))
	if err == nil || !strings.Contains(err.Error(), `:4: tenants[0].apiKeys[0].scopes[0]: unknown scope "root"`) {
		t.Fatalf("unknown scope: %v", err)
	}
}
