package httpapitest_test

import (
	"context"
	"testing"

	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/httpapi"
	"github.com/crispy-enigma/crispy/platform/httpapi/httpapitest"
)

func TestHeaderGuardAdmitsOnlyTheNamedTenant(t *testing.T) {
	t.Parallel()
	adm, err := httpapitest.HeaderGuard{}.Admit(context.Background(), httpapi.Admission{TenantHeader: "acme"})
	if err != nil || adm.Tenant.String() != "acme" {
		t.Fatalf("acme: %v %v", adm.Tenant, err)
	}
	for _, h := range []string{"", "Not A Tenant"} {
		if _, err := (httpapitest.HeaderGuard{}).Admit(context.Background(), httpapi.Admission{TenantHeader: h}); apperr.KindOf(err) != apperr.KindNotFound {
			t.Fatalf("header %q: err = %v, want not found", h, err)
		}
	}
}
