package app

import (
	"context"
	"fmt"
	"strings"

	"github.com/crispy-enigma/crispy/modules/tenancy/events"
	"github.com/crispy-enigma/crispy/modules/tenancy/internal/domain"
	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// PutTenant creates a tenant (Create) or replaces the configuration of an existing one. The
// configuration was validated like the tenants file's (adapters.ValidateConfig).
type PutTenant struct {
	Config events.TenantConfig
	Create bool
}

// PutTenant records TenantRegistered (create) or TenantConfigChanged (update; nothing when equal).
// Creating an active tenant is 409 tenant_exists; updating an unknown one 404; a host another
// tenant serves is 409 host_taken.
func (m Manager) PutTenant(ctx context.Context, cmd PutTenant) (*domain.Tenant, error) {
	id, err := tenant.Parse(cmd.Config.ID)
	if err != nil {
		return nil, apperr.Invalid(domain.CodeInvalidTenantID, "body.id", err.Error())
	}
	if id.Reserved() {
		return nil, apperr.Invalid(domain.CodeInvalidTenantID, "body.id", fmt.Sprintf("tenant id %s is reserved for the deployment's own records", id))
	}
	if err := m.hostsFree(id, cmd.Config.Hosts); err != nil {
		return nil, err
	}
	return m.change(ctx, id, func(t *domain.Tenant) ([]any, error) {
		switch {
		case cmd.Create && t.Active():
			return nil, apperr.New(apperr.KindConflict, CodeTenantExists, fmt.Sprintf("tenant %q exists; update it with PUT /admin/tenants/%s", id, id))
		case cmd.Create:
			return []any{events.TenantRegistered{Config: cmd.Config, Source: domain.OriginAPI}}, nil
		case !t.Active():
			return nil, notFound(id)
		}
		same, err := domain.SameConfig(t.Config, cmd.Config)
		if err != nil || same {
			return nil, err
		}
		return []any{events.TenantConfigChanged{Config: cmd.Config, Source: domain.OriginAPI}}, nil
	})
}

func (m Manager) hostsFree(id tenant.ID, hosts []string) error {
	if m.Served == nil {
		return nil
	}
	dir := m.Served()
	if dir == nil {
		return nil
	}
	for _, other := range dir.IDs() {
		if other == id {
			continue
		}
		e, _ := dir.Get(other)
		for i, h := range hosts {
			for _, oh := range e.Config.Hosts {
				if strings.EqualFold(h, oh) {
					return apperr.New(apperr.KindConflict, CodeHostTaken, fmt.Sprintf("body.hosts[%d]: host %s belongs to tenant %s", i, h, other))
				}
			}
		}
	}
	return nil
}
