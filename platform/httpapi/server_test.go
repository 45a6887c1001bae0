package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/danielgtaylor/huma/v2"

	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/httpapi"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

type fakeGuard struct{}

func (fakeGuard) Admit(_ context.Context, a httpapi.Admission) (httpapi.Admitted, error) {
	h := http.Header{"X-Ratelimit-Limit": {"60"}}
	switch a.TenantHeader {
	case "acme":
		return httpapi.Admitted{Tenant: tenant.MustParse("acme"), Headers: h}, nil
	case "limited":
		e := apperr.New(apperr.KindRateLimited, "rate_limited", "slow down")
		e.RetryAfterSec = 7
		return httpapi.Admitted{Headers: h}, e
	}
	return httpapi.Admitted{Headers: h}, apperr.NotFound("tenant_not_found", "no such tenant")
}

type echoIn struct {
	Body struct {
		Name string `json:"name" minLength:"1" maxLength:"5"`
	}
}
type echoOut struct {
	Body struct {
		Name   string `json:"name"`
		Tenant string `json:"tenant"`
	}
}

func newServer(t *testing.T) http.Handler {
	t.Helper()
	s, err := httpapi.New(httpapi.Config{}, httpapi.Deps{Guard: fakeGuard{}})
	if err != nil {
		t.Fatal(err)
	}
	huma.Register(s.API, huma.Operation{OperationID: "post-echo", Method: http.MethodPost, Path: "/echo"}, func(ctx context.Context, in *echoIn) (*echoOut, error) {
		switch in.Body.Name {
		case "panic":
			panic("boom")
		case "gone":
			return nil, apperr.NotFound("thing_not_found", "no such thing")
		case "oops":
			return nil, context.Canceled
		}
		tid, _ := tenant.FromContext(ctx)
		out := &echoOut{}
		out.Body.Name, out.Body.Tenant = in.Body.Name, tid.String()
		return out, nil
	})
	return s.Handler()
}

func do(t *testing.T, h http.Handler, method, path, tenantID, body string) (*httptest.ResponseRecorder, map[string]any) {
	t.Helper()
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	if tenantID != "" {
		r.Header.Set("x-tenant-id", tenantID)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	var m map[string]any
	_ = json.Unmarshal(w.Body.Bytes(), &m)
	return w, m
}

func TestProblemShapeEverywhere(t *testing.T) {
	t.Parallel()
	h := newServer(t)
	cases := []struct {
		name, method, path, tenant, body string
		status                           int
		code                             string
	}{
		{"ok", "POST", "/echo", "acme", `{"name":"bob"}`, 200, ""},
		{"unknown route", "GET", "/nope", "", "", 404, "route_not_found"},
		{"unknown tenant", "POST", "/echo", "ghost", `{"name":"bob"}`, 404, "tenant_not_found"},
		{"rate limited", "POST", "/echo", "limited", `{"name":"bob"}`, 429, "rate_limited"},
		{"validation", "POST", "/echo", "acme", `{"name":"toolongname"}`, 422, "validation_failed"},
		{"malformed json", "POST", "/echo", "acme", `{"name":`, 400, "bad_request"},
		{"domain not found", "POST", "/echo", "acme", `{"name":"gone"}`, 404, "thing_not_found"},
		{"unclassified", "POST", "/echo", "acme", `{"name":"oops"}`, 500, "internal_error"},
		{"panic", "POST", "/echo", "acme", `{"name":"panic"}`, 500, "internal_error"},
		{"too large", "POST", "/echo", "acme", `{"name":"` + strings.Repeat("x", 2<<20) + `"}`, 413, "body_too_large"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w, m := do(t, h, c.method, c.path, c.tenant, c.body)
			if w.Code != c.status {
				t.Fatalf("status = %d, want %d; body %s", w.Code, c.status, w.Body.String())
			}
			rid := w.Header().Get("x-request-id")
			if rid == "" {
				t.Fatal("no x-request-id header")
			}
			if c.status == 200 {
				if m["tenant"] != "acme" {
					t.Fatalf("handler saw tenant %v", m["tenant"])
				}
				return
			}
			if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
				t.Errorf("content type %q", ct)
			}
			if m["code"] != c.code || m["requestId"] != rid || m["status"] != float64(c.status) {
				t.Errorf("problem = %v, want code %s and requestId %s", m, c.code, rid)
			}
			if c.status == 500 && strings.Contains(w.Body.String(), "canceled") {
				t.Errorf("an unclassified error leaked its text: %s", w.Body.String())
			}
		})
	}
}

func TestRateLimitRefusalCarriesRetryAfterAndHeaders(t *testing.T) {
	t.Parallel()
	w, _ := do(t, newServer(t), "POST", "/echo", "limited", `{"name":"x"}`)
	if w.Header().Get("Retry-After") != "7" || w.Header().Get("X-Ratelimit-Limit") != "60" {
		t.Fatalf("headers = %v", w.Header())
	}
}

func TestRequestIDEchoedWhenValid(t *testing.T) {
	t.Parallel()
	h := newServer(t)
	r := httptest.NewRequest("GET", "/healthz", nil)
	r.Header.Set("x-request-id", "abc-123")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != 200 || w.Header().Get("x-request-id") != "abc-123" {
		t.Fatalf("status %d, request id %q", w.Code, w.Header().Get("x-request-id"))
	}
	r = httptest.NewRequest("GET", "/healthz", nil)
	r.Header.Set("x-request-id", "bad id with spaces")
	w = httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if got := w.Header().Get("x-request-id"); got == "bad id with spaces" || got == "" {
		t.Fatalf("invalid request id was echoed: %q", got)
	}
}

func TestHealthReportsEachConfiguredBackend(t *testing.T) {
	t.Parallel()
	s, err := httpapi.New(httpapi.Config{}, httpapi.Deps{Guard: fakeGuard{}, Checks: map[string]httpapi.Check{
		"eventstore": func(context.Context) error { return nil },
		"search":     func(context.Context) error { return errors.New("connection refused") },
		"ratelimit":  nil, // not configured: not reported, and no panic
	}})
	if err != nil {
		t.Fatal(err)
	}
	w, body := do(t, s.Handler(), "GET", "/health", "acme", "")
	if w.Code != 200 {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	backends, _ := body["backends"].(map[string]any)
	if body["status"] != "down" || body["tenant"] != "acme" || len(backends) != 2 {
		t.Fatalf("health = %v", body)
	}
	if b, _ := backends["search"].(map[string]any); b["status"] != "down" || b["error"] != "connection refused" {
		t.Fatalf("search backend = %v", backends["search"])
	}
	if w, _ := do(t, s.Handler(), "GET", "/health", "", ""); w.Code != 404 {
		t.Fatalf("health without a tenant: %d, want 404", w.Code)
	}
}

type corsGuard struct{ fakeGuard }

func (corsGuard) AllowsOrigin(host, origin string) bool {
	return origin == "https://app.acme.example"
}

func TestCORSPreflight(t *testing.T) {
	t.Parallel()
	s, err := httpapi.New(httpapi.Config{}, httpapi.Deps{Guard: corsGuard{}})
	if err != nil {
		t.Fatal(err)
	}
	pre := func(origin string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("OPTIONS", "/health", nil)
		r.Header.Set("Origin", origin)
		r.Header.Set("Access-Control-Request-Method", "GET")
		r.Header.Set("Access-Control-Request-Headers", "x-tenant-id")
		w := httptest.NewRecorder()
		s.Handler().ServeHTTP(w, r)
		return w
	}
	ok := pre("https://app.acme.example")
	if ok.Code != 204 || ok.Header().Get("Access-Control-Allow-Origin") != "https://app.acme.example" ||
		!strings.Contains(ok.Header().Get("Access-Control-Allow-Headers"), "x-tenant-id") {
		t.Fatalf("allowed origin: %d %v", ok.Code, ok.Header())
	}
	no := pre("https://evil.example")
	if no.Code != 204 || no.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("other origin: %d %v", no.Code, no.Header())
	}
	// A guard without preflight support never allows an origin.
	w := func() *httptest.ResponseRecorder {
		r := httptest.NewRequest("OPTIONS", "/health", nil)
		r.Header.Set("Origin", "https://app.acme.example")
		r.Header.Set("Access-Control-Request-Method", "GET")
		w := httptest.NewRecorder()
		newServer(t).ServeHTTP(w, r)
		return w
	}()
	if w.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("a guard without AllowsOrigin allowed a preflight: %v", w.Header())
	}
}
