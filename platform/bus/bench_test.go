package bus_test

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/platform/bus"
	"github.com/crispy-enigma/crispy/platform/bus/bustest"
	"github.com/crispy-enigma/crispy/platform/cputime"
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

// fillStore appends n events of about 200 bytes for 7 tenants, in batches, all typeHappened.
func fillStore(b *testing.B, store eventstore.Store, n int) {
	fill(b, store, n, func(int) string { return typeHappened })
}

// fillMixed is fillStore with every other event a typeOther.
func fillMixed(b *testing.B, store eventstore.Store, n int) {
	fill(b, store, n, func(i int) string {
		if i%2 == 1 {
			return typeOther
		}
		return typeHappened
	})
}

// fill appends n events of about 200 bytes for 7 tenants, in batches of 500, event i of type typeOf(i).
func fill(b *testing.B, store eventstore.Store, n int, typeOf func(i int) string) {
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
			batch = append(batch, eventstore.EventData{Type: typeOf(i),
				Data: []byte(fmt.Sprintf(`{"n":%d,"tenant":%q,"payload":"a two hundred byte event is about this size once its envelope is counted"}`, i, s.Tenant()))})
		}
		if _, err := store.Append(ctx, s, eventstore.Any, batch...); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCatchUpBesideASlowProjection is a first start of two read models on the embedded store:
// a fast one (a per-tenant count of every event) and a slow one that handles one event in 20 (a
// document among the messages) slowly: "wait" waits 400 µs for it (an embedding provider's round
// trip), "cpu" burns about that much CPU (embedding in process). Reported: events/s from Run until
// the fast one caught up (fast-events/s) and until the slow one did (slow-events/s), and the CPU
// time of the process meanwhile. "shared": the slow one shares the fast one's cursor, so it paces
// it (as every read model was paced by the single projections cursor); "own":
// ProjectionOptions.OwnCursor, the slow one on a store subscription of its own. On a machine with
// no spare core, "cpu" gains nothing from "own" (the work is the same, plus a second read of the
// store): the fast one gets ahead only as far as the CPU lets it.
func BenchmarkCatchUpBesideASlowProjection(b *testing.B) {
	const n = 100_000
	store, err := embedded.Open(b.TempDir(), embedded.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	fillStore(b, store, n)
	slowly := map[string]func(int) uint64{
		"wait": func(int) uint64 { time.Sleep(400 * time.Microsecond); return 1 },
		"cpu":  burn,
	}
	for _, kind := range []string{"wait", "cpu"} {
		for _, own := range []bool{false, true} {
			name := kind + "/shared"
			if own {
				name = kind + "/own"
			}
			b.Run(name, func(b *testing.B) {
				var fastRate, slowRate, cpuMS float64
				for b.Loop() {
					b.StopTimer()
					bs, err := bus.New(bus.Config{CheckpointDir: b.TempDir(), ReadModelDir: b.TempDir()}, bus.Deps{Store: store})
					if err != nil {
						b.Fatal(err)
					}
					registerTestEvents(bs.Codec().Add)
					fast := bs.Projection("bench.fast", bus.ProjectionOptions{})
					bus.Apply(fast, func(_ context.Context, tx *readmodel.Tx, env bus.Envelope, _ happenedEvent) error {
						return add(tx.Bucket().Put, tx.Bucket().Get, env.Tenant.String(), 1)
					})
					slow := bs.Projection("bench.slow", bus.ProjectionOptions{OwnCursor: own})
					bus.Apply(slow, func(_ context.Context, tx *readmodel.Tx, env bus.Envelope, ev happenedEvent) error {
						if ev.N%20 != 0 {
							return nil
						}
						return add(tx.Bucket().Put, tx.Bucket().Get, env.Tenant.String(), slowly[kind](ev.N))
					})
					ctx, cancel := context.WithCancel(context.Background())
					stopped := make(chan error, 1)
					b.StartTimer()
					begin, cpu0 := time.Now(), cputime.Used()
					go func() { stopped <- bs.Run(ctx) }()
					if err := fast.WaitCaughtUp(ctx); err != nil {
						b.Fatal(err)
					}
					fastRate = float64(n) / time.Since(begin).Seconds()
					if err := slow.WaitCaughtUp(ctx); err != nil {
						b.Fatal(err)
					}
					slowRate = float64(n) / time.Since(begin).Seconds()
					cpuMS = float64((cputime.Used() - cpu0).Milliseconds())
					b.StopTimer()
					cancel()
					if err := <-stopped; err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
				}
				b.ReportMetric(fastRate, "fast-events/s")
				b.ReportMetric(slowRate, "slow-events/s")
				b.ReportMetric(cpuMS, "cpu-ms")
			})
		}
	}
}

// burn spends about 400 µs of CPU and returns 1 (whatever n is, so that the work is kept).
func burn(n int) uint64 {
	var sum [32]byte
	binary.BigEndian.PutUint64(sum[:], uint64(n))
	for range 800 {
		sum = sha256.Sum256(sum[:])
	}
	return uint64(sum[0]&0) + 1
}

// BenchmarkFirstStart is the bus's part of a first start of crispy serve on the embedded store, with
// the server's shape: eight read models on the shared cursor (each a per-tenant count: one read and
// one write per event, the cheapest a real one can be) and seven processors, of which one handles
// half the events (as the usage metrics processor handles every answer) and six a type the history
// never holds (alert webhooks, key shredders, retention: rare events). The processors' cursor reads
// the history too (a new data folder has no forwarder checkpoint). Reported: events/s until the
// read models caught up (shared-events/s) and until the processors' cursor reached the end as well
// (all-events/s), and events per CPU-second of the process over the whole (events/cpu-s: what the
// catch-up costs, whatever else the machine runs).
func BenchmarkFirstStart(b *testing.B) {
	const n = 100_000
	store, err := embedded.Open(b.TempDir(), embedded.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	fillMixed(b, store, n)
	var sharedRate, allRate, perCPU float64
	for b.Loop() {
		b.StopTimer()
		bs, err := bus.New(bus.Config{CheckpointDir: b.TempDir(), ReadModelDir: b.TempDir()}, bus.Deps{Store: store})
		if err != nil {
			b.Fatal(err)
		}
		registerTestEvents(bs.Codec().Add)
		for i := range 8 {
			p := bs.Projection(fmt.Sprintf("bench.model-%d", i), bus.ProjectionOptions{})
			bus.Apply(p, func(_ context.Context, tx *readmodel.Tx, env bus.Envelope, _ happenedEvent) error {
				return add(tx.Bucket().Put, tx.Bucket().Get, env.Tenant.String(), 1)
			})
			bus.Apply(p, func(_ context.Context, tx *readmodel.Tx, env bus.Envelope, _ otherEvent) error {
				return add(tx.Bucket().Put, tx.Bucket().Get, env.Tenant.String()+"/other", 1)
			})
		}
		var handled atomic.Int64
		bus.Handle(bs.Processor("bench.metrics"), func(context.Context, bus.Envelope, happenedEvent) error {
			handled.Add(1)
			return nil
		})
		for i := range 6 {
			bus.Handle(bs.Processor(fmt.Sprintf("bench.rare-%d", i)), func(context.Context, bus.Envelope, blockedEvent) error { return nil })
		}
		ctx, cancel := context.WithCancel(context.Background())
		stopped := make(chan error, 1)
		b.StartTimer()
		begin, cpu0 := time.Now(), cputime.Used()
		go func() { stopped <- bs.Run(ctx) }()
		if err := bs.WaitCaughtUp(ctx); err != nil {
			b.Fatal(err)
		}
		sharedRate = float64(n) / time.Since(begin).Seconds()
		if err := bs.Sync(ctx); err != nil {
			b.Fatal(err)
		}
		allRate = float64(n) / time.Since(begin).Seconds()
		perCPU = float64(n) / (cputime.Used() - cpu0).Seconds()
		b.StopTimer()
		cancel()
		if err := <-stopped; err != nil {
			b.Fatal(err)
		}
		if got := handled.Load(); got != n/2 {
			b.Fatalf("the metrics processor handled %d events, want %d", got, n/2)
		}
		b.StartTimer()
	}
	b.ReportMetric(sharedRate, "shared-events/s")
	b.ReportMetric(allRate, "all-events/s")
	b.ReportMetric(perCPU, "events/cpu-s")
}
