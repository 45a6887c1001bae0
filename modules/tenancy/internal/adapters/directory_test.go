package adapters_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/modules/tenancy/events"
	"github.com/crispy-enigma/crispy/modules/tenancy/internal/adapters"
	"github.com/crispy-enigma/crispy/modules/tenancy/internal/domain"
	"github.com/crispy-enigma/crispy/platform/bus/bustest"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

func appendTo(t *testing.T, s eventstore.Store, stream tenant.Stream, typ string, v any) {
	t.Helper()
	ev, err := eventstore.NewEventData(typ, v)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(context.Background(), stream, eventstore.Any, ev); err != nil {
		t.Fatal(err)
	}
}

// recorded runs a bus over s until it has applied everything, and returns the directory.
func recorded(t *testing.T, s eventstore.Store) map[string]*domain.Tenant {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b := bustest.NewBus(t, s)
	d := adapters.RegisterDirectory(b)
	bustest.Start(t, b)
	if err := b.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := d.Recorded(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestDirectoryFoldsEachTenantsConfigurationStream(t *testing.T) {
	t.Parallel()
	s := eventstoretest.NewMemory()
	acme, beta, gone := tenant.MustParse("acme"), tenant.MustParse("beta"), tenant.MustParse("gone")
	appendTo(t, s, domain.Stream(acme), events.TypeTenantRegistered, events.TenantRegistered{Config: events.TenantConfig{ID: "acme", Hosts: []string{"acme.example"}}})
	appendTo(t, s, domain.Stream(acme), events.TypeApiKeyAdded, events.ApiKeyAdded{Hash: "sha256:aa"})
	appendTo(t, s, domain.Stream(beta), events.TypeTenantRegistered, events.TenantRegistered{Config: events.TenantConfig{ID: "beta"}})
	appendTo(t, s, domain.Stream(acme), events.TypeApiKeyAdded, events.ApiKeyAdded{Hash: "sha256:bb"})
	appendTo(t, s, domain.Stream(acme), events.TypeApiKeyRevoked, events.ApiKeyRevoked{Hash: "sha256:aa"})
	appendTo(t, s, domain.Stream(acme), events.TypeTenantConfigChanged, events.TenantConfigChanged{Config: events.TenantConfig{ID: "acme", Hosts: []string{"acme.test"}}})
	appendTo(t, s, domain.Stream(gone), events.TypeTenantRegistered, events.TenantRegistered{Config: events.TenantConfig{ID: "gone"}})
	appendTo(t, s, domain.Stream(gone), events.TypeTenantRemoved, events.TenantRemoved{Source: "file"})
	// Not configuration: another stream's events, even of a tenancy type, are no tenant.
	appendTo(t, s, tenant.MustStream(acme, "session", "s1"), "conversation.SessionStarted", map[string]string{})
	appendTo(t, s, tenant.MustStream(tenant.MustParse("ghost"), "session", "s1"), events.TypeTenantRegistered, events.TenantRegistered{Config: events.TenantConfig{ID: "ghost"}})

	got := recorded(t, s)
	if len(got) != 3 {
		t.Fatalf("recorded tenants %v, want acme, beta, gone", keys(got))
	}
	a := got["acme"]
	if !a.Active() || fmt.Sprint(a.ActiveHashes()) != "[sha256:bb]" || fmt.Sprint(a.Config.Hosts) != "[acme.test]" || a.LastRevision != 4 || !a.Exists {
		t.Fatalf("acme = %+v", a)
	}
	if b := got["beta"]; !b.Active() || b.LastRevision != 0 {
		t.Fatalf("beta = %+v", b)
	}
	if g := got["gone"]; g.Active() || !g.Removed || g.LastRevision != 1 {
		t.Fatalf("gone = %+v", g)
	}
}

// TestDirectoryIsolatesTenants: an event is filed under the tenant of the stream it was recorded in,
// whatever its data names, so nothing recorded in acme's stream reaches beta's entry, and beta's
// entry is never acme's.
func TestDirectoryIsolatesTenants(t *testing.T) {
	t.Parallel()
	s := eventstoretest.NewMemory()
	acme, beta := tenant.MustParse("acme"), tenant.MustParse("beta")
	appendTo(t, s, domain.Stream(beta), events.TypeTenantRegistered, events.TenantRegistered{Config: events.TenantConfig{ID: "beta", Hosts: []string{"beta.example"}}})
	appendTo(t, s, domain.Stream(beta), events.TypeApiKeyAdded, events.ApiKeyAdded{Hash: "sha256:beta-key"})
	// acme's stream holds data that claims to be beta's.
	appendTo(t, s, domain.Stream(acme), events.TypeTenantRegistered, events.TenantRegistered{Config: events.TenantConfig{ID: "beta", Hosts: []string{"evil.example"}}})
	appendTo(t, s, domain.Stream(acme), events.TypeTenantRemoved, events.TenantRemoved{Source: "beta"})

	got := recorded(t, s)
	b := got["beta"]
	if b == nil || b.ID != beta || !b.Active() || fmt.Sprint(b.Config.Hosts) != "[beta.example]" || fmt.Sprint(b.ActiveHashes()) != "[sha256:beta-key]" {
		t.Fatalf("beta's entry was reached through acme's stream: %+v", b)
	}
	a := got["acme"]
	if a == nil || a.ID != acme || a.Active() || len(a.Keys) != 0 {
		t.Fatalf("acme = %+v", a)
	}
}

func keys(m map[string]*domain.Tenant) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
