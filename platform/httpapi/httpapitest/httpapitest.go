// Package httpapitest holds the httpapi fakes that modules' component tests share.
package httpapitest

import (
	"context"

	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/httpapi"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// HeaderGuard admits the tenant that x-tenant-id names, with no key and no limit: a module's
// component tests exercise the module, while the tenancy module's own tests cover resolution, keys
// and limits. A missing or malformed header is 404 tenant_not_found, as for an unknown tenant.
type HeaderGuard struct{}

// Admit implements httpapi.Guard.
func (HeaderGuard) Admit(_ context.Context, a httpapi.Admission) (httpapi.Admitted, error) {
	t, err := tenant.Parse(a.TenantHeader)
	if err != nil {
		return httpapi.Admitted{}, apperr.NotFound("tenant_not_found", "no such tenant")
	}
	return httpapi.Admitted{Tenant: t}, nil
}
