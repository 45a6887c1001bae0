package retrieval_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/modules/retrieval"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// A clean restart resumes the index projection from its checkpoint: nothing is applied or embedded
// again, and every acknowledged document is found (deleted ones are not).
func TestRestartResumesFromTheCheckpoint(t *testing.T) {
	t.Parallel()
	store := eventstoretest.NewMemory()
	dir := t.TempDir()
	emb := &ctlEmbedder{}
	ix := openIndex(t, filepath.Join(dir, "index"))
	n := startNodeIn(t, filepath.Join(dir, "bus"), store, ix, emb)
	n.waitCaughtUp(1)
	want := map[string]int{}
	for i := range 20 {
		id := fmt.Sprintf("doc-%d", i)
		if r, _ := n.do("POST", "/ingest", "acme", map[string]any{"docId": id, "text": docText(id, 1)}); r.status != 200 {
			t.Fatalf("ingest: %d %s", r.status, r.raw)
		}
		want[id] = 1
	}
	if r, _ := n.do("DELETE", "/documents/doc-4", "acme", nil); r.status != 200 {
		t.Fatalf("delete: %d %s", r.status, r.raw)
	}
	want["doc-4"] = 0
	n.stop()
	must(t, ix.Close())

	ix2 := openIndex(t, filepath.Join(dir, "index"))
	defer ix2.Close()
	calls := emb.calls.Load()
	n2 := startNodeIn(t, filepath.Join(dir, "bus"), store, ix2, emb)
	n2.waitCaughtUp(1)
	if got := emb.calls.Load() - calls; got != 0 {
		t.Fatalf("%d embedding calls during a clean restart, want 0", got)
	}
	logs := n2.logs.String()
	if !strings.Contains(logs, "projection resumes from its checkpoint") || !strings.Contains(logs, "projection=retrieval.index") ||
		strings.Contains(logs, "builds from the start of the store") || strings.Contains(logs, "index repaired") {
		t.Fatalf("the index projection did not resume from its checkpoint:\n%s", logs)
	}
	if lost, res := n2.expect("acme", want); len(lost)+len(res) > 0 {
		t.Fatalf("after a clean restart: lost %v, resurrected %v", lost, res)
	}
}

// A stop after the read model committed but before the index wrote its last snapshot (a crash of
// the snapshot only): the start repairs the documents the snapshot lacks from their streams.
func TestRestartRepairsWhatTheLastSnapshotLacks(t *testing.T) {
	t.Parallel()
	store := eventstoretest.NewMemory()
	dir := t.TempDir()
	emb := &ctlEmbedder{}
	ix := openIndex(t, filepath.Join(dir, "index"))
	n := startNodeIn(t, filepath.Join(dir, "bus"), store, ix, emb)
	n.waitCaughtUp(1)
	want := map[string]int{}
	ingest := func(id string, v int) {
		if r, _ := n.do("POST", "/ingest", "acme", map[string]any{"docId": id, "text": docText(id, v)}); r.status != 200 {
			t.Fatalf("ingest: %d %s", r.status, r.raw)
		}
		want[id] = v
	}
	for i := range 10 {
		ingest(fmt.Sprintf("doc-%d", i), 1)
	}
	must(t, ix.Flush(context.Background())) // the periodic snapshot
	for i := range 10 {
		ingest(fmt.Sprintf("late-%d", i), 1)
	}
	ingest("doc-1", 2)
	if r, _ := n.do("DELETE", "/documents/doc-2", "acme", nil); r.status != 200 {
		t.Fatalf("delete: %d %s", r.status, r.raw)
	}
	want["doc-2"] = 0
	crashed := crashCopy(t, filepath.Join(dir, "index")) // the snapshot as it is now
	n.stop()                                             // the read model commits everything it applied
	must(t, ix.Close())

	ix2 := openIndex(t, crashed)
	defer ix2.Close()
	n2 := startNodeIn(t, filepath.Join(dir, "bus"), store, ix2, emb)
	n2.waitCaughtUp(1)
	if !strings.Contains(n2.logs.String(), "index repaired") {
		t.Fatalf("no repair after a stop without the last snapshot:\n%s", n2.logs)
	}
	if lost, res := n2.expect("acme", want); len(lost)+len(res) > 0 {
		t.Fatalf("after a stop without the last snapshot: lost %v, resurrected %v", lost, res)
	}
}

// Two replicas on one store, each with its own index and cache: a search cached on B is dropped
// once A ingests, and B finds the document.
func TestCacheOnReplicaBDropsAfterIngestOnA(t *testing.T) {
	t.Parallel()
	store := eventstoretest.NewMemory()
	emb := &ctlEmbedder{}
	cfg := retrieval.Config{CacheTTL: time.Hour}
	ixA, ixB := openIndex(t, ""), openIndex(t, "")
	a := startNodeCfg(t, t.TempDir(), store, ixA, emb, cfg)
	b := startNodeCfg(t, t.TempDir(), store, ixB, emb, cfg)
	a.waitCaughtUp(1)
	b.waitCaughtUp(1)
	q := map[string]any{"query": marker("shared", 1), "answer": false}
	for range 2 {
		if r, _ := b.do("POST", "/search", "acme", q); r.status != 200 || len(sources(r)) != 0 {
			t.Fatalf("search on B before the ingest: %d %s", r.status, r.raw)
		}
	}
	if r, _ := b.do("POST", "/search", "acme", q); r.body["cached"] != true {
		t.Fatalf("B did not cache its answer: %s", r.raw)
	}
	if r, _ := a.do("POST", "/ingest", "acme", map[string]any{"docId": "shared", "text": docText("shared", 1)}); r.status != 200 {
		t.Fatalf("ingest on A: %d %s", r.status, r.raw)
	}
	must(t, b.bus.Sync(context.Background()))
	r, _ := b.do("POST", "/search", "acme", q)
	if r.status != 200 || r.body["cached"] == true || !strings.Contains(allText(r), marker("shared", 1)) {
		t.Fatalf("B after A's ingest served (cached %v): %s", r.body["cached"], r.raw)
	}
	// The other tenant's cache on B is untouched by acme's ingest.
	if r, _ := b.do("POST", "/search", "beta", q); r.status != 200 || len(sources(r)) != 0 {
		t.Fatalf("beta on B: %d %s", r.status, r.raw)
	}
}

// The search cache statistics are a read model: per tenant, summed over replicas, and kept across
// a restart.
func TestSearchStatsSurviveRestartAndNeverMixTenants(t *testing.T) {
	t.Parallel()
	store := eventstoretest.NewMemory()
	dir := t.TempDir()
	emb := &ctlEmbedder{}
	cfg := retrieval.Config{CacheTTL: time.Hour, StatsInterval: 10 * time.Millisecond}
	ix := openIndex(t, "")
	n := startNodeCfg(t, filepath.Join(dir, "bus"), store, ix, emb, cfg)
	n.waitCaughtUp(1)
	for range 3 { // a miss, then two hits
		if r, _ := n.do("POST", "/search", "acme", map[string]any{"query": "policy", "answer": false}); r.status != 200 {
			t.Fatalf("search: %d %s", r.status, r.raw)
		}
	}
	if r, _ := n.do("POST", "/search", "beta", map[string]any{"query": "policy", "answer": false}); r.status != 200 {
		t.Fatalf("search: %d %s", r.status, r.raw)
	}
	stats := func(n *node, tenantID string) (hits, total float64) {
		r, _ := n.do("GET", "/metrics/search-cache?period=1h", tenantID, nil)
		if r.status != 200 {
			t.Fatalf("stats of %s: %d %s", tenantID, r.status, r.raw)
		}
		return r.body["hits"].(float64), r.body["totalChecks"].(float64)
	}
	if h, tot := stats(n, "acme"); h != 2 || tot != 3 {
		t.Fatalf("acme stats %v hits of %v", h, tot)
	}
	if h, tot := stats(n, "beta"); h != 0 || tot != 1 {
		t.Fatalf("beta stats %v hits of %v (acme's checks must not count)", h, tot)
	}
	n.stop() // records the pending minute on the way out at the latest

	n2 := startNodeCfg(t, filepath.Join(dir, "bus"), store, ix, emb, cfg)
	n2.waitCaughtUp(1)
	if h, tot := stats(n2, "acme"); h != 2 || tot != 3 {
		t.Fatalf("acme stats after a restart: %v hits of %v", h, tot)
	}
	if h, tot := stats(n2, "beta"); h != 0 || tot != 1 {
		t.Fatalf("beta stats after a restart: %v hits of %v", h, tot)
	}
	_ = tenant.MustParse
}
