package retrieval_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/platform/eventstore/embedded"
	searchembedded "github.com/crispy-enigma/crispy/platform/search/embedded"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// TestMeasureRestartToSearchable (CRISPY_MEASURE_RESTART_DOCS=N) ingests N documents on an embedded
// store and index on disk, stops cleanly, restarts, and prints how long the restart took until a
// search of the tenant answers 200. A measurement, not an assertion.
func TestMeasureRestartToSearchable(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("CRISPY_MEASURE_RESTART_DOCS"))
	if n == 0 {
		t.Skip("set CRISPY_MEASURE_RESTART_DOCS=10000 to measure")
	}
	dir := t.TempDir()
	acme := tenant.MustParse("acme")
	emb := &ctlEmbedder{dim: 64}
	store, err := embedded.Open(filepath.Join(dir, "events"), embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ix := openIndex(t, filepath.Join(dir, "index"))
	nd := measureStart(t, store, ix, emb, dir, acme)
	nd.waitReady("acme")
	began := time.Now()
	var wg sync.WaitGroup
	work := make(chan int)
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				id := fmt.Sprintf("doc-%d", i)
				if r, _ := nd.do("POST", "/ingest", "acme", map[string]any{"docId": id, "text": docText(id, 1)}); r.status != 200 {
					t.Errorf("ingest: %d %s", r.status, r.raw)
				}
			}
		}()
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	t.Logf("ingested %d documents in %s (%d embedding calls)", n, time.Since(began).Round(time.Millisecond), emb.calls.Load())
	nd.stop()
	must(t, ix.Close())
	must(t, store.Close())

	for round := range 4 {
		if round == 3 {
			// The read models are lost (the index snapshot is kept): they rebuild from the store.
			must(t, os.RemoveAll(filepath.Join(dir, "bus")))
			if p := os.Getenv("CRISPY_MEASURE_PROFILE"); p != "" {
				f, err := os.Create(p)
				must(t, err)
				must(t, pprof.StartCPUProfile(f))
				defer pprof.StopCPUProfile()
			}
		}
		t0 := time.Now()
		store, err = embedded.Open(filepath.Join(dir, "events"), embedded.Options{})
		if err != nil {
			t.Fatal(err)
		}
		ix = openIndex(t, filepath.Join(dir, "index"))
		opened := time.Since(t0)
		nd = measureStart(t, store, ix, emb, dir, acme)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		for ctx.Err() == nil {
			r, _ := nd.find("acme", "doc-7", marker("doc-7", 1))
			if r.status == 200 && len(sources(r)) > 0 {
				break
			}
			time.Sleep(time.Millisecond)
		}
		cancel()
		t.Logf("restart %d with %d documents: searchable after %s (store and index open: %s)", round, n, time.Since(t0).Round(time.Millisecond), opened.Round(time.Millisecond))
		if round == 3 {
			t.Logf("(restart 3 rebuilt the read models from the store over the kept index snapshot)")
		}
		nd.stop()
		must(t, ix.Close())
		must(t, store.Close())
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// measureStart starts a node as serve does, its bus state in dir/bus (kept across the restarts).
func measureStart(t testing.TB, store *embedded.Store, ix *searchembedded.Index, emb *ctlEmbedder, dir string, _ ...tenant.ID) *node {
	return startNodeIn(t, filepath.Join(dir, "bus"), store, ix, emb)
}
