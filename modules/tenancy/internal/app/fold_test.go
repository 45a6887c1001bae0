package app_test

import (
	"context"
	"testing"

	"github.com/crispy-enigma/crispy/modules/tenancy/events"
	"github.com/crispy-enigma/crispy/modules/tenancy/internal/app"
	"github.com/crispy-enigma/crispy/modules/tenancy/internal/domain"
	"github.com/crispy-enigma/crispy/platform/bus/codec"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// A tenant's stream is recorded and folded through the event codec; an event type this binary
// does not know (a newer binary's) is skipped rather than stopping the fold, and the events after
// it still apply.
func TestFoldSkipsEventTypesItDoesNotKnow(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := eventstoretest.NewMemory()
	c := codec.New()
	events.Register(c.Add)
	m := app.Manager{Store: store, Codec: c}
	id := tenant.MustParse("acme")
	registered, err := c.Encode(events.TenantRegistered{Config: events.TenantConfig{ID: "acme"}, Source: "api"})
	if err != nil {
		t.Fatal(err)
	}
	newer, err := eventstore.NewEventData("tenancy.SomethingNewer", map[string]any{"x": 1})
	if err != nil {
		t.Fatal(err)
	}
	added, err := c.Encode(events.ApiKeyAdded{Hash: domain.HashKey("k")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Append(ctx, domain.Stream(id), eventstore.Any, registered, newer, added); err != nil {
		t.Fatal(err)
	}
	got, err := m.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Active() || len(got.ActiveHashes()) != 1 || got.LastRevision != 2 {
		t.Fatalf("folded: active %v, keys %v, revision %d; want active, one key, revision 2 (the third event)", got.Active(), got.ActiveHashes(), got.LastRevision)
	}
}
