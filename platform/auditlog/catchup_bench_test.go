package auditlog

import (
	"context"
	"crypto/ed25519"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/platform/bus"
	"github.com/crispy-enigma/crispy/platform/cputime"
	"github.com/crispy-enigma/crispy/platform/eventstore/embedded"
)

// BenchmarkMerkleCatchUp: the audit.merkle projection built from position 1 as crispy serve builds
// it on a first start: on a cursor of its own (the embedded store's subscription, each event's
// envelope, no data decoded), the tree's bbolt writes in the bus's batched commits. The tenant log
// of benchStore (CRISPY_AUDIT_BENCH_EVENTS, default 100,000). Reports events/s from Run until it
// caught up, and events per CPU-second of the process meanwhile (what it costs, whatever else the
// machine runs).
func BenchmarkMerkleCatchUp(b *testing.B) {
	n := benchEvents(b)
	store, err := embedded.Open(benchStore(b, n), embedded.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	_, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		b.Fatal(err)
	}
	var rate, perCPU float64
	for b.Loop() {
		b.StopTimer()
		bs, err := bus.New(bus.Config{CheckpointDir: b.TempDir(), ReadModelDir: b.TempDir()}, bus.Deps{Store: store})
		if err != nil {
			b.Fatal(err)
		}
		l, err := New(Deps{Key: key, Store: store, Dir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
		l.Register(bs)
		ctx, cancel := context.WithCancel(context.Background())
		stopped := make(chan error, 1)
		b.StartTimer()
		begin, cpu0 := time.Now(), cputime.Used()
		go func() { stopped <- bs.Run(ctx) }()
		if err := l.Projection().WaitCaughtUp(ctx); err != nil {
			b.Fatal(err)
		}
		rate = float64(n) / time.Since(begin).Seconds()
		perCPU = float64(n) / (cputime.Used() - cpu0).Seconds()
		b.StopTimer()
		cancel()
		if err := <-stopped; err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(rate, "events/s")
	b.ReportMetric(perCPU, "events/cpu-s")
}
