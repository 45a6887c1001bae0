package domain_test

import (
	"reflect"
	"testing"

	tenancyevents "github.com/crispy-enigma/crispy/modules/tenancy/events"
	"github.com/crispy-enigma/crispy/modules/tooling/internal/domain"
)

func TestGrants(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name             string
		features         map[string]bool
		granted, revoked []string
	}{
		{"default grants all", nil, []string{"model:complete", "index:write"}, nil},
		{"false revokes", map[string]bool{"tool.index.write": false}, []string{"model:complete"}, []string{"index:write"}},
		{"true keeps", map[string]bool{"tool.index.write": true}, []string{"model:complete", "index:write"}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			g, r := domain.Grants(tenancyevents.TenantConfig{Features: c.features}, []string{"model:complete", "index:write"})
			if !reflect.DeepEqual(g, c.granted) || !reflect.DeepEqual(r, c.revoked) {
				t.Fatalf("granted %v revoked %v", g, r)
			}
		})
	}
}
