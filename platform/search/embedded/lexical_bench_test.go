package embedded_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/platform/search"
	"github.com/crispy-enigma/crispy/platform/search/embedded"
	"github.com/crispy-enigma/crispy/platform/search/lexical"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// BenchmarkLexical20k measures what the lexical half costs beside the vectors: 20,000 chunks of
// 150 words (from a 20,000-word Zipf vocabulary, like text) with 64-dim vectors, on disk, closed
// and reopened: heap per chunk after the open (the postings), open time (the terms log is read
// back), and a hybrid query's latency.
//
//	go test -run '^$' -bench Lexical20k -benchtime=1x ./platform/search/embedded/
func BenchmarkLexical20k(b *testing.B) {
	const n, words, dim = 20_000, 150, 64
	ctx := context.Background()
	r := rand.New(rand.NewPCG(3, 4))
	z := rand.NewZipf(r, 1.1, 1, 19_999)
	vocab := make([]string, 20_000)
	for i := range vocab {
		vocab[i] = fmt.Sprintf("w%dx", i)
	}
	chunks := make([]search.Chunk, n)
	for i := range chunks {
		var sb strings.Builder
		for range words {
			sb.WriteString(vocab[z.Uint64()])
			sb.WriteByte(' ')
		}
		v := make([]float32, dim)
		for j := range v {
			v[j] = float32(r.NormFloat64())
		}
		chunks[i] = search.Chunk{DocID: fmt.Sprintf("d%d", i), ChunkID: fmt.Sprintf("d%d#0", i), Text: sb.String(), Vector: v, Terms: lexical.Analyze(sb.String())}
	}
	a := tenant.MustParse("bench")
	for range b.N {
		dir := b.TempDir()
		ix, err := embedded.Open(embedded.Config{Dir: dir})
		if err != nil {
			b.Fatal(err)
		}
		for s := 0; s < n; s += 1000 {
			if err := ix.Upsert(ctx, a, chunks[s:s+1000]); err != nil {
				b.Fatal(err)
			}
		}
		if err := ix.Close(); err != nil {
			b.Fatal(err)
		}
		// The written index is garbage before the baseline is read; two collections, since one
		// still counted ~450 B per chunk of it, which made the open look negative.
		ix = nil
		runtime.GC()
		runtime.GC()
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		t0 := time.Now()
		ix, err = embedded.Open(embedded.Config{Dir: dir})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(time.Since(t0).Microseconds())/1000, "open-ms")
		runtime.GC()
		runtime.ReadMemStats(&m1)
		runtime.KeepAlive(ix)
		b.ReportMetric(float64(int64(m1.HeapAlloc)-int64(m0.HeapAlloc))/n, "heap-bytes/chunk")
		q := chunks[7]
		t1 := time.Now()
		const queries = 50
		for i := range queries {
			qt := lexical.Analyze(strings.Join(strings.Fields(chunks[i].Text)[:5], " "))
			if _, err := ix.Search(ctx, a, search.Query{Mode: search.ModeHybrid, Vector: q.Vector, Terms: qt, Feedback: true, K: 10, MinScore: -1}); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(time.Since(t1).Microseconds())/queries, "hybrid-µs/query")
		ix.Close()
	}
}
