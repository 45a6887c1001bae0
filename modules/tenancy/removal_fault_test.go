package tenancy_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/crispy-enigma/crispy/modules/tenancy"
	"github.com/crispy-enigma/crispy/modules/tenancy/events"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// removalFaultStore refuses the first appends of TenantRemoved as a store that is briefly down does.
type removalFaultStore struct {
	eventstore.Store
	refuse atomic.Int64
}

func (s *removalFaultStore) Append(ctx context.Context, st tenant.Stream, exp eventstore.ExpectedRevision, data ...eventstore.EventData) (eventstore.AppendResult, error) {
	if len(data) > 0 && data[0].Type == events.TypeTenantRemoved && s.refuse.Add(-1) >= 0 {
		return eventstore.AppendResult{}, eventstore.ErrStorageUnavailable
	}
	return s.Store.Append(ctx, st, exp, data...)
}

// TestRemovalSurvivesAStorageFault: a storage fault while Run records the tenants that left the file
// is retried (it is a dependency fault that heals), instead of ending Run, which ends crispy serve.
func TestRemovalSurvivesAStorageFault(t *testing.T) {
	t.Parallel()
	mem := eventstoretest.NewMemory()
	path := writeFile(t, tenantsYAML())
	if _, err := newHarness(t, mem, tenancy.Config{TenantsFile: path}); err != nil {
		t.Fatal(err)
	}
	if err := writeFileAt(path, withoutBeta()); err != nil {
		t.Fatal(err)
	}
	store := &removalFaultStore{Store: mem}
	store.refuse.Store(2)
	h, err := newHarness(t, store, tenancy.Config{TenantsFile: path}) // WaitSynced, and Run must not fail (checked at cleanup)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(streamTypes(t, mem, "beta", 2)); got != "[TenantRemoved]" {
		t.Fatalf("beta after the fault healed: %s", got)
	}
	if r := h.get(t, req{tenant: "beta", key: keyB}); r.status != 404 {
		t.Fatalf("beta served: %d", r.status)
	}
}
