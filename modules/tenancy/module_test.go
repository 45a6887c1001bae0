package tenancy_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/crispy-enigma/crispy/modules/tenancy"
	"github.com/crispy-enigma/crispy/modules/tenancy/events"
	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/embedded"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

func TestResolutionOverHTTP(t *testing.T) {
	t.Parallel()
	h := mustHarness(t, tenancy.Config{TenantsFile: writeFile(t, tenantsYAML())})
	cases := []struct {
		name   string
		r      req
		status int
		want   string // tenant on success, problem code otherwise
	}{
		{"header and key", req{tenant: "acme", key: keyA}, 200, "acme"},
		{"header and second key", req{tenant: "acme", key: keyA2}, 200, "acme"},
		{"bearer token", req{tenant: "beta", bearer: keyB}, 200, "beta"},
		{"host and key", req{host: "beta.example:8080", key: keyB}, 200, "beta"},
		{"host case-insensitive", req{host: "ACME.example", key: keyA}, 200, "acme"},
		{"key alone", req{key: keyB}, 200, "beta"},
		{"keyless tenant by header", req{tenant: "open"}, 200, "open"},
		{"keyless tenant by host", req{host: "open.example"}, 200, "open"},
		{"missing key", req{tenant: "acme"}, 401, "api_key_required"},
		{"missing key by host", req{host: "acme.example"}, 401, "api_key_required"},
		{"wrong key", req{tenant: "acme", key: "ce_guess"}, 401, "invalid_api_key"},
		{"unknown key alone", req{key: "ce_guess"}, 401, "invalid_api_key"},
		{"key on a keyless tenant", req{tenant: "open", key: keyA}, 401, "invalid_api_key"},
		{"unknown tenant", req{tenant: "ghost"}, 404, "tenant_not_found"},
		{"unknown tenant with a valid key", req{tenant: "ghost", key: keyA}, 404, "tenant_not_found"},
		{"nothing names a tenant", req{}, 404, "tenant_not_found"},
		{"invalid tenant id", req{tenant: "Bad_ID"}, 400, "invalid_tenant_id"},
		{"user id too long", req{tenant: "open", user: strings.Repeat("u", 257)}, 400, "invalid_user_id"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := h.get(t, c.r)
			if r.status != c.status {
				t.Fatalf("status %d, want %d: %v", r.status, c.status, r.body)
			}
			if c.status == 200 {
				if r.body["tenant"] != c.want {
					t.Fatalf("handler saw tenant %v, want %s", r.body["tenant"], c.want)
				}
				return
			}
			if r.body["code"] != c.want || r.body["requestId"] == "" || r.body["requestId"] != r.header.Get("x-request-id") {
				t.Fatalf("problem %v, want code %s with the request id", r.body, c.want)
			}
		})
	}
}

// TestTenantIsolationKeysAndHosts: a key authenticates only its own tenant, whichever way the
// request names a tenant; nothing about another tenant's existence or keys leaks through the answer.
func TestTenantIsolationKeysAndHosts(t *testing.T) {
	t.Parallel()
	h := mustHarness(t, tenancy.Config{TenantsFile: writeFile(t, tenantsYAML())})
	attacks := []struct {
		name string
		r    req
	}{
		{"beta's key with acme's header", req{tenant: "acme", key: keyB}},
		{"beta's key with acme's host", req{host: "acme.example", key: keyB}},
		{"beta's bearer with acme's host", req{host: "acme.example", bearer: keyB}},
		{"acme's header, beta's host and beta's key", req{tenant: "acme", host: "beta.example", key: keyB}},
		{"acme's key with beta's header", req{tenant: "beta", key: keyA}},
		{"acme's key with beta's host", req{host: "beta.example", key: keyA}},
	}
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			r := h.get(t, a.r)
			if r.status != 401 || r.body["code"] != "invalid_api_key" {
				t.Fatalf("got %d %v, want 401 invalid_api_key", r.status, r.body)
			}
			if r.body["tenant"] != nil || r.header.Get("x-ratelimit-limit") != "" {
				t.Fatalf("a refused request reached the handler or the limiter: %v %v", r.body, r.header)
			}
		})
	}
	// A wrong key and another tenant's key are indistinguishable to the caller.
	other := h.get(t, req{tenant: "acme", key: keyB})
	wrong := h.get(t, req{tenant: "acme", key: "ce_guess"})
	if other.body["detail"] != wrong.body["detail"] || other.body["code"] != wrong.body["code"] {
		t.Fatalf("other tenant's key %v differs from a wrong key %v", other.body, wrong.body)
	}
	// The owners still get in.
	if r := h.get(t, req{host: "beta.example", key: keyB}); r.status != 200 || r.body["tenant"] != "beta" {
		t.Fatalf("beta by host: %d %v", r.status, r.body)
	}
}

func TestRateLimitHeadersAnd429(t *testing.T) {
	t.Parallel()
	h := mustHarness(t, tenancy.Config{TenantsFile: writeFile(t, tenantsYAML())})
	// acme: perMinute 3 (per user and, by default, per key), burst 3; the tenant's total is 30.
	for i := 0; i < 3; i++ {
		r := h.get(t, req{tenant: "acme", key: keyA})
		if r.status != 200 || r.header.Get("x-ratelimit-limit") != "3" || r.header.Get("x-ratelimit-remaining") != fmt.Sprint(2-i) ||
			r.header.Get("x-ratelimit-reset") != "61" {
			t.Fatalf("request %d: %d %v", i, r.status, r.header)
		}
	}
	h.clock.Set(epoch.Add(20 * time.Second))
	r := h.get(t, req{tenant: "acme", key: keyA})
	if r.status != 429 || r.body["code"] != "rate_limited" {
		t.Fatalf("fourth: %d %v", r.status, r.body)
	}
	// The three leave the minute together, 60 s after their second (61 s after epoch): 41 s from now.
	if r.header.Get("retry-after") != "41" || r.header.Get("x-ratelimit-remaining") != "0" || r.header.Get("x-ratelimit-limit") != "3" ||
		r.header.Get("x-ratelimit-reset") != "41" {
		t.Fatalf("429 headers: %v", r.header)
	}
	// Another user of the same key is held by the key's ceiling: a new x-user-id buys nothing.
	if r := h.get(t, req{tenant: "acme", key: keyA, user: "bob"}); r.status != 429 || !strings.Contains(fmt.Sprint(r.body["detail"]), "API key") {
		t.Fatalf("bob on the same key: %d %v", r.status, r.body)
	}
	// The tenant's other key has a ceiling of its own.
	if r := h.get(t, req{tenant: "acme", key: keyA2, user: "bob"}); r.status != 200 || r.header.Get("x-ratelimit-remaining") != "2" {
		t.Fatalf("bob on the other key: %d %v", r.status, r.header)
	}
	// Another tenant is untouched by acme's traffic.
	if r := h.get(t, req{tenant: "beta", key: keyB}); r.status != 200 || r.header.Get("x-ratelimit-limit") != "60" {
		t.Fatalf("beta: %d %v", r.status, r.header)
	}
	if got := h.metric(`crispy_tenancy_rate_limited_total{tenant="acme"}`); !strings.HasSuffix(got, " 2") {
		t.Fatalf("rate-limit metric: %q", got)
	}
	if got := h.metric(`crispy_tenancy_rate_limited_total{tenant="beta"}`); !strings.HasSuffix(got, " 0") {
		t.Fatalf("beta's rate-limit metric: %q", got)
	}
	// At retry-after it fits again.
	h.clock.Set(epoch.Add(61 * time.Second))
	if r := h.get(t, req{tenant: "acme", key: keyA}); r.status != 200 {
		t.Fatalf("after retry-after: %d %v", r.status, r.body)
	}
}

func TestAuthRefusalMetrics(t *testing.T) {
	t.Parallel()
	h := mustHarness(t, tenancy.Config{TenantsFile: writeFile(t, tenantsYAML())})
	h.get(t, req{tenant: "acme", key: keyB})
	h.get(t, req{tenant: "acme"})
	h.get(t, req{tenant: "ghost"})
	h.get(t, req{tenant: "ghost-2"})
	h.get(t, req{key: "ce_guess"})
	for series, want := range map[string]string{
		`crispy_tenancy_auth_refusals_total{reason="invalid_api_key",tenant="acme"}`:  "1",
		`crispy_tenancy_auth_refusals_total{reason="api_key_required",tenant="acme"}`: "1",
		`crispy_tenancy_auth_refusals_total{reason="tenant_not_found"}`:               "2",
		`crispy_tenancy_auth_refusals_total{reason="invalid_api_key"}`:                "1",
		`crispy_tenancy_auth_refusals_total{reason="invalid_api_key",tenant="beta"}`:  "0",
	} {
		if got := h.metric(series); got != series+" "+want {
			t.Errorf("%s = %q, want %s", series, got, want)
		}
	}
	// Unknown tenant ids never become label values.
	if got := h.metric(`crispy_tenancy_auth_refusals_total{reason="tenant_not_found",tenant="ghost"}`); got != "" {
		t.Fatalf("unconfigured tenant labelled: %s", got)
	}
}

func TestCORS(t *testing.T) {
	t.Parallel()
	h := mustHarness(t, tenancy.Config{TenantsFile: writeFile(t, tenantsYAML())})
	r := h.get(t, req{tenant: "acme", key: keyA, origin: "https://app.acme.example"})
	if r.header.Get("Access-Control-Allow-Origin") != "https://app.acme.example" ||
		!strings.Contains(r.header.Get("Access-Control-Expose-Headers"), "x-ratelimit-remaining") {
		t.Fatalf("allowed origin: %v", r.header)
	}
	// A refusal of a named tenant still lets its browser read the problem.
	if r := h.get(t, req{tenant: "acme", origin: "https://app.acme.example"}); r.status != 401 || r.header.Get("Access-Control-Allow-Origin") == "" {
		t.Fatalf("refusal: %d %v", r.status, r.header)
	}
	for _, x := range []req{
		{tenant: "acme", key: keyA, origin: "https://evil.example"},
		{tenant: "beta", key: keyB, origin: "https://app.acme.example"}, // acme's origin is not beta's
	} {
		if r := h.get(t, x); r.header.Get("Access-Control-Allow-Origin") != "" {
			t.Fatalf("origin %s for %s allowed: %v", x.origin, x.tenant, r.header)
		}
	}
}

func TestDemoTenantWithoutFile(t *testing.T) {
	t.Parallel()
	h := mustHarness(t, tenancy.Config{})
	if !strings.Contains(h.log.String(), "no tenants file: serving the single keyless tenant demo") {
		t.Fatalf("log does not announce the demo tenant:\n%s", h.log.String())
	}
	for _, r := range []req{{}, {tenant: "demo"}, {host: "localhost:8080"}, {tenant: "demo", user: "ann"}} {
		if got := h.get(t, r); got.status != 200 || got.body["tenant"] != "demo" || got.header.Get("x-ratelimit-limit") == "" {
			t.Fatalf("%+v: %d %v %v", r, got.status, got.body, got.header)
		}
	}
	if r := h.get(t, req{tenant: "acme"}); r.status != 404 || r.body["code"] != "tenant_not_found" {
		t.Fatalf("other tenant in demo mode: %d %v", r.status, r.body)
	}
	if r := h.get(t, req{key: "ce_anything"}); r.status != 401 {
		t.Fatalf("a key on the keyless demo: %d %v", r.status, r.body)
	}
	ctx := context.Background()
	if c, err := h.mod.Config(ctx, tenant.MustParse("demo")); err != nil || c.ID != "demo" || c.RetentionDays() != 30 {
		t.Fatalf("demo config = %+v, %v", c, err)
	}
	if ids := h.mod.Tenants(); len(ids) != 1 || ids[0].String() != "demo" {
		t.Fatalf("tenants = %v", ids)
	}
	evs, err := h.store.ReadStream(ctx, tenant.MustStream(tenant.MustParse("demo"), "tenant", ""), 0, 0)
	if err != nil || len(evs) != 1 || evs[0].Type != events.TypeTenantRegistered || evs[0].Actor != "system:tenancy" {
		t.Fatalf("demo stream = %+v, %v", evs, err)
	}
}

func TestConfigIsTenantScoped(t *testing.T) {
	t.Parallel()
	h := mustHarness(t, tenancy.Config{TenantsFile: writeFile(t, tenantsYAML())})
	ctx := context.Background()
	c, err := h.mod.Config(ctx, tenant.MustParse("acme"))
	if err != nil || !c.Feature("rag") || c.RateLimit.PerMinute != 3 {
		t.Fatalf("acme = %+v, %v", c, err)
	}
	if c, err := h.mod.Config(ctx, tenant.MustParse("beta")); err != nil || c.Feature("rag") || c.ID != "beta" {
		t.Fatalf("beta = %+v, %v", c, err)
	}
	_, err = h.mod.Config(ctx, tenant.MustParse("ghost"))
	if ae, ok := apperr.As(err); !ok || ae.Kind != apperr.KindNotFound || ae.Code != "tenant_not_found" {
		t.Fatalf("unknown tenant = %v", err)
	}
	if got := fmt.Sprint(h.mod.Tenants()); got != "[acme beta open]" {
		t.Fatalf("tenants = %s", got)
	}
}

func TestMalformedTenantsFileRefusesStart(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, body, want string
	}{
		{"bad id", "tenants:\n  - id: acme\n  - id: Not_OK\n", ":3: tenants[1].id: must match"},
		{"plain key", "tenants:\n  - id: acme\n    apiKeys: [ce_secret]\n", ":3: tenants[0].apiKeys[0]: must be sha256:"},
		{"unknown field", "tenants:\n  - id: acme\n    ratelimit: {perMinute: 5}\n", ":3: tenants[0].ratelimit: unknown field"},
		{"wrong type", "tenants:\n  - id: acme\n    hosts: acme.example\n", `:3: tenants[0].hosts: must be a list, got "acme.example"`},
		{"empty", "", ":1: tenants: the file is empty"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := writeFile(t, c.body)
			store := eventstoretest.NewMemory()
			_, err := newHarness(t, store, tenancy.Config{TenantsFile: path})
			if err == nil || !strings.Contains(err.Error(), path+c.want) {
				t.Fatalf("Start = %v, want %s%s", err, path, c.want)
			}
			if err := tenancy.ValidateTenantsFile(path); err == nil || !strings.Contains(err.Error(), path+c.want) {
				t.Fatalf("ValidateTenantsFile = %v", err)
			}
			if last, _ := store.LastPosition(context.Background()); last != 0 {
				t.Fatalf("a refused file recorded %d events", last)
			}
		})
	}
	if _, err := newHarness(t, nil, tenancy.Config{TenantsFile: "/nonexistent/tenants.yaml"}); err == nil || !strings.Contains(err.Error(), "/nonexistent/tenants.yaml") {
		t.Fatalf("missing file = %v", err)
	}
}

// streamTypes lists the event types of a tenant's configuration stream from revision from.
func streamTypes(t *testing.T, store eventstore.Store, id string, from uint64) []string {
	t.Helper()
	evs, err := store.ReadStream(context.Background(), tenant.MustStream(tenant.MustParse(id), "tenant", ""), from, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := []string{}
	for _, e := range evs {
		out = append(out, strings.TrimPrefix(e.Type, "tenancy."))
	}
	return out
}

func TestRestartAndFileChanges(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := eventstoretest.NewMemory()
	path := writeFile(t, tenantsYAML())
	h1, err := newHarness(t, store, tenancy.Config{TenantsFile: path})
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(streamTypes(t, store, "acme", 0)); got != "[TenantRegistered ApiKeyAdded ApiKeyAdded]" {
		t.Fatalf("acme first start: %s", got)
	}
	last1, _ := store.LastPosition(ctx)

	// Restart with the same file: nothing new is recorded, and the same tenants are served.
	h2, err := newHarness(t, store, tenancy.Config{TenantsFile: path})
	if err != nil {
		t.Fatal(err)
	}
	if last2, _ := store.LastPosition(ctx); last2 != last1 {
		t.Fatalf("restart recorded %d events", last2-last1)
	}
	if r := h2.get(t, req{host: "acme.example", key: keyA2}); r.status != 200 {
		t.Fatalf("after restart: %d %v", r.status, r.body)
	}
	_ = h1

	// Change the file: acme's limit changes, keyA is revoked and keyA3 added; beta leaves.
	const keyA3 = "ce_acmeKeyNumberThree"
	changed := strings.Replace(tenantsYAML(), "perMinute: 3", "perMinute: 4", 1)
	changed = strings.Replace(changed, tenancy.HashAPIKey(keyA), tenancy.HashAPIKey(keyA3), 1)
	changed = strings.Replace(changed, "  - id: beta\n    hosts: [beta.example]\n    apiKeys: [\""+tenancy.HashAPIKey(keyB)+"\"]\n", "", 1)
	if err := writeFileAt(path, changed); err != nil {
		t.Fatal(err)
	}
	h3, err := newHarness(t, store, tenancy.Config{TenantsFile: path})
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(streamTypes(t, store, "acme", 3)); got != "[TenantConfigChanged ApiKeyAdded ApiKeyRevoked]" {
		t.Fatalf("acme after the change: %s", got)
	}
	if got := fmt.Sprint(streamTypes(t, store, "beta", 2)); got != "[TenantRemoved]" {
		t.Fatalf("beta after leaving the file: %s", got)
	}
	if got := fmt.Sprint(streamTypes(t, store, "open", 1)); got != "[]" {
		t.Fatalf("open, unchanged: %s", got)
	}
	for _, c := range []struct {
		r      req
		status int
	}{
		{req{tenant: "acme", key: keyA}, 401},  // revoked
		{req{tenant: "acme", key: keyA3}, 200}, // added
		{req{tenant: "beta", key: keyB}, 404},  // removed tenant
		{req{key: keyB}, 401},                  // its key no longer authenticates anywhere
		{req{host: "beta.example"}, 404},       // nor does its host
	} {
		if r := h3.get(t, c.r); r.status != c.status {
			t.Fatalf("%+v: %d %v, want %d", c.r, r.status, r.body, c.status)
		}
	}
	if r := h3.get(t, req{tenant: "acme", key: keyA3}); r.header.Get("x-ratelimit-limit") != "4" {
		t.Fatalf("acme's new limit not applied: %v", r.header)
	}

	// Restart again: still nothing new; then beta comes back and is registered afresh.
	last3, _ := store.LastPosition(ctx)
	if _, err := newHarness(t, store, tenancy.Config{TenantsFile: path}); err != nil {
		t.Fatal(err)
	}
	if last4, _ := store.LastPosition(ctx); last4 != last3 {
		t.Fatalf("second restart recorded %d events", last4-last3)
	}
	if err := writeFileAt(path, tenantsYAML()); err != nil {
		t.Fatal(err)
	}
	h5, err := newHarness(t, store, tenancy.Config{TenantsFile: path})
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(streamTypes(t, store, "beta", 3)); got != "[TenantRegistered ApiKeyAdded]" {
		t.Fatalf("beta back: %s", got)
	}
	if r := h5.get(t, req{tenant: "beta", key: keyB}); r.status != 200 {
		t.Fatalf("beta back: %d %v", r.status, r.body)
	}

	// Switching to no file removes every configured tenant and registers demo.
	h6, err := newHarness(t, store, tenancy.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(h6.mod.Tenants()); got != "[demo]" {
		t.Fatalf("tenants without a file: %s", got)
	}
	if r := h6.get(t, req{tenant: "acme", key: keyA3}); r.status != 404 {
		t.Fatalf("acme without a file: %d", r.status)
	}
}

// conflictingStore appends the same events as a racing replica just before the first append to a
// tenant stream, so that append hits an optimistic-concurrency conflict.
type conflictingStore struct {
	eventstore.Store
	raced atomic.Bool
}

func (s *conflictingStore) Append(ctx context.Context, stream tenant.Stream, exp eventstore.ExpectedRevision, data ...eventstore.EventData) (eventstore.AppendResult, error) {
	if s.raced.CompareAndSwap(false, true) {
		if _, err := s.Store.Append(ctx, stream, exp, data...); err != nil {
			return eventstore.AppendResult{}, err
		}
	}
	return s.Store.Append(ctx, stream, exp, data...)
}

func TestSyncRetriesAfterConflict(t *testing.T) {
	t.Parallel()
	mem := eventstoretest.NewMemory()
	store := &conflictingStore{Store: mem}
	h, err := newHarness(t, store, tenancy.Config{TenantsFile: writeFile(t, tenantsYAML())})
	if err != nil {
		t.Fatal(err)
	}
	if !store.raced.Load() {
		t.Fatal("no race was staged")
	}
	// The racer recorded acme; the retry found nothing left to record.
	if got := fmt.Sprint(streamTypes(t, mem, "acme", 0)); got != "[TenantRegistered ApiKeyAdded ApiKeyAdded]" {
		t.Fatalf("acme after the race: %s", got)
	}
	if r := h.get(t, req{tenant: "acme", key: keyA}); r.status != 200 {
		t.Fatalf("acme: %d %v", r.status, r.body)
	}
}

// failingStore fails every append.
type failingStore struct{ eventstore.Store }

func (failingStore) Append(context.Context, tenant.Stream, eventstore.ExpectedRevision, ...eventstore.EventData) (eventstore.AppendResult, error) {
	return eventstore.AppendResult{}, errors.New("disk full")
}

func TestStartFailsWhenEventsCannotBeRecorded(t *testing.T) {
	t.Parallel()
	_, err := newHarness(t, failingStore{eventstoretest.NewMemory()}, tenancy.Config{TenantsFile: writeFile(t, tenantsYAML())})
	if err == nil || !strings.Contains(err.Error(), "t-acme.tenant") || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("Start = %v", err)
	}
}

func TestGuardBeforeStart(t *testing.T) {
	t.Parallel()
	mod, err := tenancy.New(tenancy.Deps{Store: eventstoretest.NewMemory()})
	if err != nil {
		t.Fatal(err)
	}
	_, err = mod.Guard().Admit(context.Background(), admission("demo"))
	if apperr.KindOf(err) != apperr.KindUnavailable {
		t.Fatalf("admit before start = %v", err)
	}
	if _, err := mod.Config(context.Background(), tenant.MustParse("demo")); apperr.KindOf(err) != apperr.KindUnavailable {
		t.Fatalf("config before start = %v", err)
	}
}

func TestRedisOutageFailsOpenOntoLocalLimits(t *testing.T) {
	t.Parallel()
	// Nothing listens on port 1: every Redis call fails fast.
	h := mustHarness(t, tenancy.Config{TenantsFile: writeFile(t, tenantsYAML()), RedisURL: "redis://127.0.0.1:1/0?max_retries=-1&dial_timeout=200ms",
		RedisTimeout: time.Second})
	if !strings.Contains(h.log.String(), "redis rate limiter unreachable") {
		t.Fatalf("start did not warn about redis:\n%s", h.log.String())
	}
	for i := 0; i < 3; i++ {
		if r := h.get(t, req{tenant: "acme", key: keyA}); r.status != 200 || r.header.Get("x-ratelimit-remaining") != fmt.Sprint(2-i) {
			t.Fatalf("request %d with redis down: %d %v", i, r.status, r.header)
		}
	}
	if r := h.get(t, req{tenant: "acme", key: keyA}); r.status != 429 {
		t.Fatalf("the per-process fallback did not limit: %d", r.status)
	}
	// Redis was tried once; the cooldown (5 s by default) kept the next three requests off it.
	if got := h.metric("crispy_tenancy_limiter_errors_total"); got != "crispy_tenancy_limiter_errors_total 1" {
		t.Fatalf("limiter errors = %q", got)
	}
	h.clock.Set(epoch.Add(6 * time.Second))
	if r := h.get(t, req{tenant: "acme", key: keyA2, user: "bob"}); r.status != 200 {
		t.Fatalf("bob with redis down: %d", r.status)
	}
	if got := h.metric("crispy_tenancy_limiter_errors_total"); got != "crispy_tenancy_limiter_errors_total 2" {
		t.Fatalf("limiter errors after the cooldown = %q", got)
	}
	if n := strings.Count(h.log.String(), "rate limiter failed"); n != 1 {
		t.Fatalf("%d log lines for the outage, want 1 (spaced out)", n)
	}
	if err := h.mod.LimiterCheck()(context.Background()); err == nil {
		t.Fatal("health check passes with redis down")
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	for _, c := range []tenancy.Config{{RedisURL: "http://nope"}, {RedisTimeout: -time.Second}} {
		if _, err := tenancy.New(tenancy.Deps{Config: c, Store: eventstoretest.NewMemory()}); err == nil {
			t.Errorf("New accepted %+v", c)
		}
	}
	if _, err := tenancy.New(tenancy.Deps{}); err == nil {
		t.Error("New accepted no store")
	}
}

func TestNewAPIKey(t *testing.T) {
	t.Parallel()
	key, hash, err := tenancy.NewAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	if hash != tenancy.HashAPIKey(key) || !strings.HasPrefix(hash, "sha256:") || strings.Contains(hash, key) {
		t.Fatalf("key %s hash %s", key, hash)
	}
	// The generated hash is accepted by the tenants file and authenticates the key.
	h := mustHarness(t, tenancy.Config{TenantsFile: writeFile(t, "tenants:\n  - id: acme\n    apiKeys: [\""+hash+"\"]\n")})
	if r := h.get(t, req{key: key}); r.status != 200 || r.body["tenant"] != "acme" {
		t.Fatalf("generated key: %d %v", r.status, r.body)
	}
}

// TestRestartOnEmbeddedStore runs start, restart and a removal on the real file store and the bus's
// read model folder, both reopened between starts as a restarted server would.
func TestRestartOnEmbeddedStore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir, busDir := t.TempDir(), t.TempDir()
	path := writeFile(t, tenantsYAML())
	open := func() *embedded.Store {
		s, err := embedded.Open(dir, embedded.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s1 := open()
	// Other streams' events around the tenant streams: the tenant directory must skip them.
	if _, err := s1.Append(ctx, tenant.MustStream(tenant.MustParse("acme"), "session", "s1"), eventstore.NoStream,
		eventstore.EventData{Type: "conversation.SessionStarted", Data: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	h1, err := build(t, tenancy.Config{TenantsFile: path}, setup{store: s1, busDir: busDir})
	if err != nil {
		t.Fatal(err)
	}
	last1, _ := s1.LastPosition(ctx)
	if err := h1.stopBus(); err != nil {
		t.Fatal(err)
	}
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := open()
	h2, err := build(t, tenancy.Config{TenantsFile: path}, setup{store: s2, busDir: busDir})
	if err != nil {
		t.Fatal(err)
	}
	if last2, _ := s2.LastPosition(ctx); last2 != last1 {
		t.Fatalf("restart on the file store recorded %d events", last2-last1)
	}
	if err := h2.stopBus(); err != nil {
		t.Fatal(err)
	}
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
	if err := writeFileAt(path, "tenants:\n  - id: open\n    hosts: [open.example]\n"); err != nil {
		t.Fatal(err)
	}
	s3 := open()
	t.Cleanup(func() { _ = s3.Close() })
	h, err := build(t, tenancy.Config{TenantsFile: path}, setup{store: s3, busDir: busDir})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"acme", "beta"} {
		if got := streamTypes(t, s3, id, 0); got[len(got)-1] != "TenantRemoved" {
			t.Fatalf("%s after leaving the file: %v", id, got)
		}
	}
	if got := fmt.Sprint(h.mod.Tenants()); got != "[open]" {
		t.Fatalf("tenants = %s", got)
	}
}

// TestIntegrationRedisSharedLimit: two replicas on one Redis hold a tenant to one limit.
func TestIntegrationRedisSharedLimit(t *testing.T) {
	url := os.Getenv("CRISPY_REDIS_URL")
	if url == "" {
		t.Skip("no Redis: set CRISPY_REDIS_URL=redis://127.0.0.1:6379/0 to share the limit between replicas through a real server")
	}
	prefix := fmt.Sprintf("crispy-test:%d:rl:", time.Now().UnixNano())
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	client := redis.NewClient(opts)
	t.Cleanup(func() {
		ctx := context.Background()
		iter := client.Scan(ctx, 0, prefix+"*", 100).Iterator()
		for iter.Next(ctx) {
			client.Del(ctx, iter.Val())
		}
		_ = client.Close()
	})
	store := eventstoretest.NewMemory()
	cfg := tenancy.Config{TenantsFile: writeFile(t, tenantsYAML()), RedisURL: url, RedisPrefix: prefix, RedisTimeout: 2 * time.Second}
	r1, err := newHarness(t, store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := newHarness(t, store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(r1.log.String(), "unreachable") {
		t.Fatalf("redis unreachable:\n%s", r1.log.String())
	}
	// acme allows 3 per key a minute, counted across both replicas.
	for i, h := range []*harness{r1, r2, r1} {
		if r := h.get(t, req{tenant: "acme", key: keyA}); r.status != 200 || r.header.Get("x-ratelimit-remaining") != fmt.Sprint(2-i) {
			t.Fatalf("request %d: %d %v", i, r.status, r.header)
		}
	}
	if r := r2.get(t, req{tenant: "acme", key: keyA}); r.status != 429 || r.header.Get("retry-after") == "" {
		t.Fatalf("fourth request on the other replica: %d %v", r.status, r.header)
	}
	// beta shares the server, not the windows.
	if r := r2.get(t, req{tenant: "beta", key: keyB}); r.status != 200 || r.header.Get("x-ratelimit-remaining") != "59" {
		t.Fatalf("beta: %d %v", r.status, r.header)
	}
	// Every log key carries its tenant: the tenant's, the key's and the user's minute and second logs.
	n, err := client.Exists(context.Background(), prefix+"{acme}:t::m", prefix+"{acme}:u::s", prefix+"{beta}:t::m", prefix+"{beta}:k:"+keyID(keyB)+":m").Result()
	if err != nil || n != 4 {
		t.Fatalf("tenant-scoped keys present: %d, %v", n, err)
	}
	if got := r1.metric("crispy_tenancy_limiter_errors_total"); got != "crispy_tenancy_limiter_errors_total 0" {
		t.Fatalf("limiter errors: %q", got)
	}
}

func TestEmptyTenantsListWarns(t *testing.T) {
	t.Parallel()
	h := mustHarness(t, tenancy.Config{TenantsFile: writeFile(t, "tenants: []\n")})
	if !strings.Contains(h.log.String(), "lists no tenants") {
		t.Fatalf("no warning:\n%s", h.log.String())
	}
	if r := h.get(t, req{}); r.status != 404 {
		t.Fatalf("request with no tenants: %d", r.status)
	}
}

func TestStartAgainReloads(t *testing.T) {
	t.Parallel()
	path := writeFile(t, tenantsYAML())
	h := mustHarness(t, tenancy.Config{TenantsFile: path})
	if err := writeFileAt(path, "tenants:\n  - id: zeta\n"); err != nil {
		t.Fatal(err)
	}
	if err := h.mod.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r := h.get(t, req{tenant: "zeta"}); r.status != 200 {
		t.Fatalf("zeta after reload: %d", r.status)
	}
	if r := h.get(t, req{tenant: "acme", key: keyA}); r.status != 404 {
		t.Fatalf("acme after reload: %d", r.status)
	}
	// A malformed file on reload is refused and the served tenants stay as they were.
	if err := writeFileAt(path, "tenants:\n  - id: Bad\n"); err != nil {
		t.Fatal(err)
	}
	if err := h.mod.Start(context.Background()); err == nil {
		t.Fatal("malformed reload accepted")
	}
	if r := h.get(t, req{tenant: "zeta"}); r.status != 200 {
		t.Fatalf("zeta after a refused reload: %d", r.status)
	}
}

// hungRedis accepts connections and reads what they send but never answers, like a Redis stuck in
// a long command or behind a dead proxy. It holds every connection until the test ends.
func hungRedis(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns sync.WaitGroup
	t.Cleanup(func() { ln.Close(); conns.Wait() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer conns.Done()
				defer c.Close()
				_, _ = io.Copy(io.Discard, c) // until the client gives up and closes
			}()
		}
	}()
	return ln.Addr().String()
}

// startAgainstHungRedis starts the module on a Redis that never answers, with socket timeouts of an
// hour so that only the limiter's own deadline can end a call, and sends one request. It fails the
// test when the request is still waiting after a minute: the limiter's timeout did not hold.
func startAgainstHungRedis(t *testing.T, cfg tenancy.Config) (*harness, resp) {
	t.Helper()
	cfg.TenantsFile = writeFile(t, tenantsYAML())
	cfg.RedisURL = "redis://" + hungRedis(t) + "/0?read_timeout=1h&write_timeout=1h&pool_timeout=1h"
	cfg.RedisTimeout = 100 * time.Millisecond
	type result struct {
		h   *harness
		r   resp
		err error
	}
	done := make(chan result, 1)
	go func() {
		h, err := newHarness(t, nil, cfg)
		if err != nil {
			done <- result{err: err}
			return
		}
		done <- result{h: h, r: h.get(t, req{tenant: "acme", key: keyA})}
	}()
	select {
	case res := <-done:
		if res.err != nil {
			t.Fatal(res.err)
		}
		return res.h, res.r
	case <-time.After(time.Minute):
		t.Fatal("start or a request waited on a hung Redis past the limiter's 100 ms timeout")
		return nil, resp{}
	}
}

func TestHungRedisFailsOpenWithinTheLimiterTimeout(t *testing.T) {
	t.Parallel()
	h, r := startAgainstHungRedis(t, tenancy.Config{})
	if r.status != 200 || r.header.Get("x-ratelimit-remaining") != "2" {
		t.Fatalf("request with redis hung: %d %v", r.status, r.header)
	}
	if got := h.metric("crispy_tenancy_limiter_errors_total"); got != "crispy_tenancy_limiter_errors_total 1" {
		t.Fatalf("limiter errors = %q", got)
	}
	if got := h.metric(`crispy_tenancy_limiter_bypassed_total{mode="open"}`); got != `crispy_tenancy_limiter_bypassed_total{mode="open"} 1` {
		t.Fatalf("bypassed = %q", got)
	}
	if !strings.Contains(h.log.String(), "failing open") {
		t.Fatalf("no log line for the outage:\n%s", h.log.String())
	}
}

func TestHungRedisFailsClosedWhenAsked(t *testing.T) {
	t.Parallel()
	h, r := startAgainstHungRedis(t, tenancy.Config{FailClosed: true})
	if r.status != 503 || r.body["code"] != "ratelimit_unavailable" || r.header.Get("retry-after") != "5" {
		t.Fatalf("request with redis hung, failing closed: %d %v %v", r.status, r.header, r.body)
	}
	// During the cooldown Redis is left alone and requests are refused at once.
	h.clock.Set(epoch.Add(3 * time.Second))
	if r := h.get(t, req{tenant: "acme", key: keyA}); r.status != 503 || r.header.Get("retry-after") != "2" {
		t.Fatalf("during the cooldown: %d %v", r.status, r.header)
	}
	if got := h.metric("crispy_tenancy_limiter_errors_total"); got != "crispy_tenancy_limiter_errors_total 1" {
		t.Fatalf("limiter errors = %q (Redis was asked during the cooldown)", got)
	}
	if got := h.metric(`crispy_tenancy_limiter_bypassed_total{mode="closed"}`); got != `crispy_tenancy_limiter_bypassed_total{mode="closed"} 2` {
		t.Fatalf("bypassed = %q", got)
	}
	if !strings.Contains(h.log.String(), "failing closed") {
		t.Fatalf("no log line for the outage:\n%s", h.log.String())
	}
}
