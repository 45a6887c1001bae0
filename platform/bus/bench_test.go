package bus_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/platform/bus"
	"github.com/crispy-enigma/crispy/platform/bus/bustest"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/embedded"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/readmodel"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// BenchmarkForwardGoChannel measures events/s from the store, through the forwarder and GoChannel,
// to one processor (decoded by the codec, checkpointed per event), b.N events already in the store.
func BenchmarkForwardGoChannel(b *testing.B) {
	b.Run("memory-store", func(b *testing.B) {
		benchForward(b, eventstoretest.NewMemory(), bus.Config{CheckpointDir: b.TempDir()})
	})
	b.Run("embedded-store", func(b *testing.B) {
		s, err := embedded.Open(b.TempDir(), embedded.Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		benchForward(b, s, bus.Config{CheckpointDir: b.TempDir()})
	})
}

// BenchmarkIntegrationNATSForward is the same path over NATS JetStream (a real server).
func BenchmarkIntegrationNATSForward(b *testing.B) {
	url, prefix := bustest.NATS(b, "bench")
	benchForward(b, eventstoretest.NewMemory(), bus.Config{CheckpointDir: b.TempDir(), Transport: url, Prefix: prefix})
}

func benchForward(b *testing.B, store eventstore.Store, cfg bus.Config) {
	ctx := context.Background()
	stream := tenant.MustStream(acme, "bench", "1")
	batch := make([]eventstore.EventData, 0, 500)
	for i := 0; i < b.N; {
		batch = batch[:0]
		for ; i < b.N && len(batch) < cap(batch); i++ {
			batch = append(batch, eventstore.EventData{Type: typeHappened, Data: []byte(`{"payload":"a two hundred byte event is about this size once its envelope is counted"}`)})
		}
		if _, err := store.Append(ctx, stream, eventstore.Any, batch...); err != nil {
			b.Fatal(err)
		}
	}
	var seen atomic.Int64
	done := make(chan struct{})
	bs, err := bus.New(cfg, bus.Deps{Store: store})
	if err != nil {
		b.Fatal(err)
	}
	registerTestEvents(bs.Codec().Add)
	bus.Handle(bs.Processor("bench.count"), func(context.Context, bus.Envelope, happenedEvent) error {
		if seen.Add(1) == int64(b.N) {
			close(done)
		}
		return nil
	})
	runCtx, cancel := context.WithCancel(ctx)
	stopped := make(chan error, 1)
	b.ResetTimer()
	begin := time.Now()
	go func() { stopped <- bs.Run(runCtx) }()
	<-done
	elapsed := time.Since(begin)
	b.StopTimer()
	cancel()
	if err := <-stopped; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
}

// BenchmarkProjectionCatchUp measures a checkpointed projection catching up from zero on the
// embedded store: the forwarder's store subscription, decoding once by the codec, batches through
// the in-process transport, and the read model's batched bbolt transactions (a per-tenant count:
// one read and one write per event). Reported: events/s from Run to caught up.
func BenchmarkProjectionCatchUp(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprintf("events=%d", n), func(b *testing.B) {
			store, err := embedded.Open(b.TempDir(), embedded.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer store.Close()
			fillStore(b, store, n)
			var rate float64
			for b.Loop() {
				b.StopTimer()
				bs, err := bus.New(bus.Config{CheckpointDir: b.TempDir(), ReadModelDir: b.TempDir()}, bus.Deps{Store: store})
				if err != nil {
					b.Fatal(err)
				}
				registerTestEvents(bs.Codec().Add)
				p := bs.Projection("bench.count", bus.ProjectionOptions{})
				bus.Apply(p, func(_ context.Context, tx *readmodel.Tx, env bus.Envelope, _ happenedEvent) error {
					return add(tx.Bucket().Put, tx.Bucket().Get, env.Tenant.String(), 1)
				})
				ctx, cancel := context.WithCancel(context.Background())
				stopped := make(chan error, 1)
				b.StartTimer()
				begin := time.Now()
				go func() { stopped <- bs.Run(ctx) }()
				if err := bs.WaitCaughtUp(ctx); err != nil {
					b.Fatal(err)
				}
				rate = float64(n) / time.Since(begin).Seconds()
				b.StopTimer()
				cancel()
				if err := <-stopped; err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.ReportMetric(rate, "events/s")
		})
	}
}

// fillStore appends n events of about 200 bytes for 7 tenants, in batches.
func fillStore(b *testing.B, store eventstore.Store, n int) {
	ctx := context.Background()
	tenants := make([]tenant.Stream, 7)
	for i := range tenants {
		tenants[i] = tenant.MustStream(tenant.MustParse(fmt.Sprintf("t%d", i)), "bench", "1")
	}
	batch := make([]eventstore.EventData, 0, 500)
	for i := 0; i < n; {
		batch = batch[:0]
		s := tenants[(i/500)%len(tenants)]
		for ; i < n && len(batch) < cap(batch); i++ {
			batch = append(batch, eventstore.EventData{Type: typeHappened,
				Data: []byte(fmt.Sprintf(`{"n":%d,"tenant":%q,"payload":"a two hundred byte event is about this size once its envelope is counted"}`, i, s.Tenant()))})
		}
		if _, err := store.Append(ctx, s, eventstore.Any, batch...); err != nil {
			b.Fatal(err)
		}
	}
}
