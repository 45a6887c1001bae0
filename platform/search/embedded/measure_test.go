package embedded_test

import (
	"context"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/platform/search"
	"github.com/crispy-enigma/crispy/platform/search/embedded"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// TestMeasureOpen (CRISPY_MEASURE_INDEX_DIR=a copy of a data folder's index/) opens the index
// folder as serve does and prints how long that took and the process's RSS after it, then after
// 200 searches of each tenant. A measurement, not an assertion; it writes into the folder (open
// cuts unflushed tails), so point it at a copy:
//
//	cp -r /path/to/data/index /tmp/ix && CRISPY_MEASURE_INDEX_DIR=/tmp/ix go test -run TestMeasureOpen -v ./platform/search/embedded/
func TestMeasureOpen(t *testing.T) {
	dir := os.Getenv("CRISPY_MEASURE_INDEX_DIR")
	if dir == "" {
		t.Skip("set CRISPY_MEASURE_INDEX_DIR to a copy of an index folder")
	}
	ctx := context.Background()
	rss0 := procStatusT("VmRSS")
	t0 := time.Now()
	ix, err := embedded.Open(embedded.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	t.Logf("open: %s, RSS %.1f MB -> %.1f MB", time.Since(t0).Round(time.Microsecond), mb(rss0), mb(procStatusT("VmRSS")))
	ents, _ := os.ReadDir(dir)
	r := rand.New(rand.NewPCG(1, 1))
	chunks := 0
	for _, e := range ents {
		name := e.Name()
		if len(name) < 4 || name[len(name)-3:] != ".ix" {
			continue
		}
		tn := tenant.MustParse(name[:len(name)-3])
		n, _ := ix.Count(ctx, tn)
		chunks += n
		// The dimension is the first hit's: try the usual ones.
		for _, dim := range []int{384, 256, 768, 1024, 1536, 64} {
			q := make([]float32, dim)
			for i := range q {
				q[i] = float32(r.NormFloat64())
			}
			if _, err := ix.Search(ctx, tn, search.Query{Vector: q, K: 10, MinScore: -1}); err != nil {
				continue
			}
			s0 := time.Now()
			for range 200 {
				for i := range q {
					q[i] = float32(r.NormFloat64())
				}
				if _, err := ix.Search(ctx, tn, search.Query{Vector: q, K: 10, MinScore: -1}); err != nil {
					t.Fatal(err)
				}
			}
			t.Logf("%s: %d chunks of %d dimensions, 200 searches in %s", tn, n, dim, time.Since(s0).Round(time.Millisecond))
			break
		}
	}
	t.Logf("after the searches: RSS %.1f MB (RssFile %.1f MB) for %d chunks", mb(procStatusT("VmRSS")), mb(procStatusT("RssFile")), chunks)
}

func mb(b int64) float64 { return float64(b) / (1 << 20) }

func procStatusT(field string) int64 { return procStatus(field) }
