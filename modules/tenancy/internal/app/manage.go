package app

import (
	"context"
	"fmt"
	"time"

	"github.com/crispy-enigma/crispy/modules/tenancy/internal/domain"
	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/bus/codec"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// Codes of the admin API's refusals.
const (
	CodeTenantExists = "tenant_exists"
	CodeKeyNotFound  = "key_not_found"
	CodeHostTaken    = "host_taken"
)

// Manager holds what the admin API's use cases share: the store they record in, the clock, and
// Observe, which is told every tenant state they recorded so this replica serves it at once (the
// others learn it from the tenant directory read model).
type Manager struct {
	Store   eventstore.Store
	Codec   *codec.Registry // the tenancy events registered
	Now     func() time.Time
	Observe func(*domain.Tenant)
	// Served returns the tenants served now (for host uniqueness).
	Served func() *domain.Directory
}

func (m Manager) now() time.Time {
	if m.Now == nil {
		return time.Now()
	}
	return m.Now()
}

// change records what fn asks of tenant id's folded stream (retried on a conflict), tells Observe,
// and returns the tenant as recorded. fn's errors come back as they are (apperr for the client).
func (m Manager) change(ctx context.Context, id tenant.ID, fn func(*domain.Tenant) ([]any, error)) (*domain.Tenant, error) {
	var fnErr error
	t, _, err := SyncTenantsHandler{Store: m.Store, Codec: m.Codec}.record(ctx, id, nil, func(t *domain.Tenant) ([]any, error) {
		evs, err := fn(t)
		if err != nil {
			fnErr = err
		}
		return evs, err
	})
	if fnErr != nil {
		return nil, fnErr
	}
	if err != nil {
		return nil, fmt.Errorf("tenancy: %w", err)
	}
	if m.Observe != nil {
		m.Observe(t)
	}
	return t, nil
}

// Get returns the folded tenant (from its stream, so it reflects every recorded change), or 404.
func (m Manager) Get(ctx context.Context, id tenant.ID) (*domain.Tenant, error) {
	t, err := SyncTenantsHandler{Store: m.Store, Codec: m.Codec}.fold(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("tenancy: %w", err)
	}
	if !t.Active() {
		return nil, notFound(id)
	}
	return t, nil
}

func notFound(id tenant.ID) error {
	return apperr.NotFound(domain.CodeTenantNotFound, fmt.Sprintf("tenant %q does not exist", id))
}

func keyNotFound(id tenant.ID, key string) error {
	return apperr.NotFound(CodeKeyNotFound, fmt.Sprintf("tenant %q has no API key %q", id, key))
}
