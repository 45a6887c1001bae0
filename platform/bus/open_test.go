package bus_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/crispy-enigma/crispy/platform/bus"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/keystore/keystoretest"
	"github.com/crispy-enigma/crispy/platform/readmodel"
	"github.com/crispy-enigma/crispy/platform/sealing"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// With Deps.Open the bus reads the store as stored (sealed) and hands consumers opened events: a
// projection and a processor see the content of a live key, and an erased event (its key destroyed)
// with Erased set and no content; the hash is the stored one.
func TestOpenHandsConsumersOpenedEvents(t *testing.T) {
	t.Parallel()
	testOpen(t, projectionConfig(t))
}

// On NATS the processors' events ride the broker as stored: the JetStream stream holds the sealed
// bytes, never the content, and the processor still sees it opened.
func TestIntegrationNATSCarriesSealedBytesOnly(t *testing.T) {
	t.Parallel()
	cfg := natsConfig(t)
	cfg.ReadModelDir = t.TempDir()
	testOpen(t, cfg)
	nc, err := nats.Connect(cfg.Transport)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := js.Stream(ctx, cfg.Prefix+"-events")
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs == 0 {
		t.Fatal("the broker's stream is empty: nothing to check")
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		var e eventstore.Event
		if err := json.Unmarshal(m.Data, &e); err != nil || !sealing.IsSealed(e.Data) {
			t.Fatalf("message %d does not carry the sealed data as stored (%v): %s", seq, err, m.Data)
		}
	}
}

func testOpen(t *testing.T, cfg bus.Config) {
	raw := eventstoretest.NewMemory()
	keys := keystoretest.NewMemory()
	sealer := sealing.New(keys)
	sealed := sealing.NewStore(raw, sealer, func(st tenant.Stream, _ eventstore.EventData) (string, bool) {
		return "thing/" + st.Entity(), st.Category() == "thing"
	})
	appendN(t, sealed, acme, "kept", typeHappened, 2)
	gone := appendN(t, sealed, acme, "gone", typeHappened, 1)
	if err := keys.Destroy(context.Background(), acme, "thing/gone"); err != nil {
		t.Fatal(err)
	}
	rawGone, _ := raw.ReadStream(context.Background(), tenant.MustStream(acme, "thing", "gone"), 0, 0)
	if !sealing.IsSealed(rawGone[0].Data) {
		t.Fatalf("stored data is not sealed: %s", rawGone[0].Data)
	}

	var mu sync.Mutex
	projected := map[string]happenedEvent{}
	erased := map[string]bool{}
	hashes := map[string]string{}
	var processed []happenedEvent
	b, err := bus.New(cfg, bus.Deps{Store: raw, Open: sealer.OpenEvent})
	if err != nil {
		t.Fatal(err)
	}
	registerTestEvents(b.Codec().Add)
	p := b.Projection("test.opened", bus.ProjectionOptions{})
	bus.Apply(p, func(_ context.Context, _ *readmodel.Tx, env bus.Envelope, ev happenedEvent) error {
		mu.Lock()
		defer mu.Unlock()
		projected[env.Stream+"/"+env.ID] = ev
		erased[env.Stream] = env.Erased
		hashes[env.ID] = env.Hash
		return nil
	})
	bus.Handle(b.Processor("test.opened-processor"), func(_ context.Context, _ bus.Envelope, ev happenedEvent) error {
		mu.Lock()
		defer mu.Unlock()
		processed = append(processed, ev)
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	defer func() { cancel(); <-done }()
	wctx, wcancel := context.WithTimeout(context.Background(), waitLimit)
	defer wcancel()
	if err := b.WaitCaughtUp(wctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Sync(wctx); err != nil {
		t.Fatal(err)
	}
	// On a broker the processors are not waited for by Sync: wait for the three events.
	for deadline := time.Now().Add(waitLimit); ; time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		n := len(processed)
		mu.Unlock()
		if n >= 3 || time.Now().After(deadline) {
			break
		}
	}
	mu.Lock()
	defer mu.Unlock()
	keptStream := tenant.MustStream(acme, "thing", "kept").String()
	goneStream := tenant.MustStream(acme, "thing", "gone").String()
	sum := 0
	for k, ev := range projected {
		if len(k) > len(keptStream) && k[:len(keptStream)] == keptStream {
			sum += ev.N
			if ev.Tenant != "acme" {
				t.Fatalf("projected a kept event without its content: %+v", ev)
			}
		}
	}
	if sum != 1 || erased[keptStream] || !erased[goneStream] || len(projected) != 3 {
		t.Fatalf("projected %v (erased %v)", projected, erased)
	}
	if hashes[gone[0].ID] != rawGone[0].Hash {
		t.Fatal("the envelope's hash is not the stored one")
	}
	withContent := 0
	for _, ev := range processed {
		if ev.Tenant == "acme" {
			withContent++
		}
	}
	if len(processed) != 3 || withContent != 2 {
		t.Fatalf("processed %+v: want the 2 kept events opened and the erased one without content", processed)
	}
}
