package embedded

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/crispy-enigma/crispy/platform/tenant"
)

// BenchmarkOpen20k: opening an index folder holding one tenant of 20,000 chunks (dimension 32,
// M 8, built with a flush every 500 chunks as the module's periodic flush leaves it), as a restart
// does. "folded": after a clean Close, which wrote the links whole (restart.go); "log": the links
// log Close would have folded is kept, what every open replayed before. allocs/op is the steadier
// figure on a shared machine (the id maps built at open were most of them).
//
//	go test -run '^$' -bench Open20k -benchmem ./platform/search/embedded/
func BenchmarkOpen20k(b *testing.B) {
	for _, name := range []string{"folded", "log"} {
		b.Run(name, func(b *testing.B) {
			if name == "log" {
				defer func(f int64) { linksFoldAtClose = f }(linksFoldAtClose)
				linksFoldAtClose = math.MaxInt64
			}
			ctx := context.Background()
			cfg := Config{Dir: b.TempDir(), M: 8, EfConstruction: 32, ExactBelow: -1}
			ix, err := Open(cfg)
			if err != nil {
				b.Fatal(err)
			}
			a := tenant.MustParse("acme")
			r := rand.New(rand.NewPCG(5, 6))
			for s := 0; s < 20_000; s += 500 {
				if err := ix.Upsert(ctx, a, linkTestChunks(r, 500, 32, s)); err != nil {
					b.Fatal(err)
				}
				if err := ix.Flush(ctx); err != nil {
					b.Fatal(err)
				}
			}
			if err := ix.Close(); err != nil {
				b.Fatal(err)
			}
			m, err := readManifest(cfg.Dir + "/acme.ix")
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				ix, err := Open(cfg)
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if err := ix.Close(); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(m.LinkLog), "links-log-bytes")
		})
	}
}
