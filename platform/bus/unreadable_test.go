package bus_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/platform/bus"
	"github.com/crispy-enigma/crispy/platform/bus/bustest"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/keystore/keystoretest"
	"github.com/crispy-enigma/crispy/platform/readmodel"
	"github.com/crispy-enigma/crispy/platform/sealing"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// One tenant's sealed event that does not open must not stop the bus for every tenant (before,
// the forwarder took the sealing error as an unreadable store: Run failed, and failed again at
// every restart). The event reaches consumers flagged (erased, and Unreadable when it is damage
// rather than an erasure) and every tenant's later events are projected.
func TestOneTenantsUnopenableSealedEventStopsNoOne(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name       string
		damage     func(t *testing.T, raw eventstore.Store, keys *keystoretest.Memory, sealed eventstore.Store)
		unreadable bool
	}{
		{"a key id re-created after its tenant's keys were destroyed", func(t *testing.T, _ eventstore.Store, keys *keystoretest.Memory, sealed eventstore.Store) {
			if err := keys.DestroyTenant(context.Background(), acme); err != nil {
				t.Fatal(err)
			}
			appendN(t, sealed, acme, "x", typeHappened, 1) // the id reused: a fresh key under "thing/x"
		}, false},
		{"an altered ciphertext", func(t *testing.T, raw eventstore.Store, _ *keystoretest.Memory, _ eventstore.Store) {
			evs, err := raw.ReadStream(context.Background(), tenant.MustStream(acme, "thing", "x"), 0, 1)
			if err != nil || len(evs) != 1 {
				t.Fatalf("read: %v", err)
			}
			var env map[string]map[string]string
			if err := json.Unmarshal(evs[0].Data, &env); err != nil {
				t.Fatal(err)
			}
			ct, _ := base64.StdEncoding.DecodeString(env["sealed"]["c"])
			ct[0] ^= 1
			data := bytes.Replace(evs[0].Data, []byte(env["sealed"]["c"]), []byte(base64.StdEncoding.EncodeToString(ct)), 1)
			if _, err := raw.Append(context.Background(), tenant.MustStream(acme, "thing", "z"), eventstore.NoStream,
				eventstore.EventData{Type: typeHappened, Data: data}); err != nil {
				t.Fatal(err)
			}
		}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			raw := eventstoretest.NewMemory()
			keys := keystoretest.NewMemory()
			sealer := sealing.New(keys)
			sealed := sealing.NewStore(raw, sealer, func(st tenant.Stream, _ eventstore.EventData) (string, bool) {
				return "thing/" + st.Entity(), st.Category() == "thing"
			})
			globex := tenant.MustParse("globex")
			appendN(t, sealed, acme, "x", typeHappened, 1)
			c.damage(t, raw, keys, sealed)
			appendN(t, sealed, globex, "y", typeHappened, 3)

			b, err := bus.New(projectionConfig(t), bus.Deps{Store: raw, Open: sealer.OpenEvent})
			if err != nil {
				t.Fatal(err)
			}
			registerTestEvents(b.Codec().Add)
			var mu sync.Mutex
			seen := map[string]int{}
			var flagged []bus.Envelope
			p := b.Projection("test.unreadable", bus.ProjectionOptions{})
			bus.Apply(p, func(_ context.Context, _ *readmodel.Tx, env bus.Envelope, _ happenedEvent) error {
				mu.Lock()
				defer mu.Unlock()
				seen[env.Tenant.String()]++
				if env.Erased {
					flagged = append(flagged, env)
				}
				return nil
			})
			stop := bustest.Start(t, b)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := b.Sync(ctx); err != nil {
				t.Fatalf("the bus did not catch up past acme's event: %v", err)
			}
			if err := stop(); err != nil && ctx.Err() == nil && err != context.Canceled {
				t.Fatalf("bus: %v", err)
			}
			mu.Lock()
			defer mu.Unlock()
			if seen["globex"] != 3 || seen["acme"] != 2 {
				t.Fatalf("projected per tenant: %v, want acme 2 and globex 3", seen)
			}
			if len(flagged) != 1 || flagged[0].Tenant != acme || flagged[0].Unreadable != c.unreadable {
				t.Fatalf("flagged events: %+v, want one of acme's, Unreadable=%v", flagged, c.unreadable)
			}
		})
	}
}
