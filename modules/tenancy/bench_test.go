package tenancy_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/danielgtaylor/huma/v2"

	"github.com/crispy-enigma/crispy/modules/tenancy"
	"github.com/crispy-enigma/crispy/platform/httpapi"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// benchTenants writes n tenants t0…t{n-1}, each with a host and one key, and limits high enough that
// no benchmark request is refused.
func benchTenants(b *testing.B, n int) string {
	var sb strings.Builder
	sb.WriteString("tenants:\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&sb, "  - id: t%d\n    hosts: [t%d.example]\n    apiKeys: [%q]\n    rateLimit: {perMinute: 100000000, burst: 100000000, tenantPerMinute: 1000000000}\n",
			i, i, tenancy.HashAPIKey(fmt.Sprintf("ce_key_%d", i)))
	}
	return writeFile(b, sb.String())
}

// BenchmarkGuardAdmit is resolution + authentication + rate limit, the Guard alone, among 100 tenants.
func BenchmarkGuardAdmit(b *testing.B) {
	h := mustHarness(b, tenancy.Config{TenantsFile: benchTenants(b, 100)})
	g := h.mod.Guard()
	ctx := context.Background()
	for _, c := range []struct {
		name string
		a    httpapi.Admission
	}{
		{"header+key", httpapi.Admission{TenantHeader: "t42", APIKey: "ce_key_42", UserID: "user-1"}},
		{"host+key", httpapi.Admission{Host: "t42.example", APIKey: "ce_key_42"}},
		{"key-only-scan-100-tenants", httpapi.Admission{APIKey: "ce_key_42"}},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := g.Admit(ctx, c.a); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// constantGuard admits every request as one tenant: the HTTP floor without tenancy's work.
type constantGuard struct{}

func (constantGuard) Admit(context.Context, httpapi.Admission) (httpapi.Admitted, error) {
	return httpapi.Admitted{Tenant: tenant.MustParse("t42"), Headers: http.Header{}}, nil
}

// BenchmarkMiddlewarePath is a whole request through the HTTP floor (request id, access log,
// recover, body limit, Huma routing, the Guard) to a no-op operation; "constant-guard" is the same
// floor with a guard that does nothing, so the difference is what tenancy adds.
func BenchmarkMiddlewarePath(b *testing.B) {
	h := mustHarness(b, tenancy.Config{TenantsFile: benchTenants(b, 100)})
	floor, err := httpapi.New(httpapi.Config{}, httpapi.Deps{Guard: constantGuard{}})
	if err != nil {
		b.Fatal(err)
	}
	huma.Register(floor.API, huma.Operation{OperationID: "get-probe", Method: http.MethodGet, Path: "/probe"},
		func(ctx context.Context, _ *struct{}) (*probeOut, error) { return &probeOut{}, nil })
	for _, c := range []struct {
		name    string
		handler http.Handler
	}{{"tenancy-guard", h.handler}, {"constant-guard", floor.Handler()}} {
		b.Run(c.name, func(b *testing.B) {
			r := httptest.NewRequest(http.MethodGet, "/probe", nil)
			r.Header.Set("x-tenant-id", "t42")
			r.Header.Set("x-api-key", "ce_key_42")
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				c.handler.ServeHTTP(w, r)
				if w.Code != http.StatusOK {
					b.Fatalf("status %d: %s", w.Code, w.Body)
				}
			}
		})
	}
}
