package bus_test

import (
	"context"
	"testing"

	"github.com/crispy-enigma/crispy/platform/bus"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/readmodel"
)

// ApplyAll sees every event of every tenant in global order, with its stored hash, whatever its
// type (registered or not), and a projection with only that handler runs.
func TestApplyAllSeesEveryEventWithItsHash(t *testing.T) {
	t.Parallel()
	store := eventstoretest.NewMemory()
	var want []eventstore.Event
	want = append(want, appendN(t, store, acme, "a", typeHappened, 3)...)
	want = append(want, appendN(t, store, globex, "g", "test.NotRegistered", 2)...)
	want = append(want, appendN(t, store, acme, "b", typeBlocked, 1)...)
	var got []bus.Envelope
	r := start(t, projectionConfig(t), store, func(reg bus.Consumers) {
		registerTestEvents(reg.Codec().Add)
		p := reg.Projection("test.all", bus.ProjectionOptions{Version: 1})
		bus.ApplyAll(p, func(_ context.Context, _ *readmodel.Tx, env bus.Envelope) error {
			got = append(got, env)
			return nil
		})
	})
	if err := r.b.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("ApplyAll saw %d events, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].ID != want[i].ID || got[i].Hash != want[i].Hash || got[i].Hash == "" || got[i].Tenant != want[i].Tenant {
			t.Fatalf("event %d: got %+v, want id %s hash %s", i, got[i], want[i].ID, want[i].Hash)
		}
	}
}
