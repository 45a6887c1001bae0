package app

import (
	"context"
	"fmt"

	"github.com/crispy-enigma/crispy/modules/tenancy/events"
	"github.com/crispy-enigma/crispy/modules/tenancy/internal/domain"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// DeleteTenant records TenantDeleted (the tenant stops resolving on every replica, its keys stop
// authenticating), then erases its data with Erase: its data keys destroyed, so its sealed sessions
// and documents read as erased everywhere, and its index dropped. The event comes first so that an
// Erase that fails (a key store down) can be run again from it (the tenancy.eraser processor): the
// deletion is never lost once acknowledged. Unknown tenants are 404.
func (m Manager) DeleteTenant(ctx context.Context, id tenant.ID, erase func(context.Context, tenant.ID) error) error {
	if _, err := m.change(ctx, id, func(t *domain.Tenant) ([]any, error) {
		if !t.Active() {
			return nil, notFound(id)
		}
		return []any{events.TenantDeleted{Source: domain.OriginAPI}}, nil
	}); err != nil {
		return err
	}
	if erase == nil {
		return nil
	}
	if err := erase(ctx, id); err != nil {
		return fmt.Errorf("tenancy: tenant %s deleted, erasing its data failed (retried from the event): %w", id, err)
	}
	return nil
}
