package retrieval_test

import (
	"context"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/crispy-enigma/crispy/modules/retrieval"
	"github.com/crispy-enigma/crispy/modules/retrieval/events"
	"github.com/crispy-enigma/crispy/platform/ai/embeddings"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/health"
	"github.com/crispy-enigma/crispy/platform/search/embedded"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

const (
	vacation = "Employees receive twenty-five days of paid vacation per year. Unused vacation days expire at the end of March. " +
		"Vacation requests go to your manager two weeks in advance."
	parking = "The parking garage opens at seven in the morning. Visitors park on level minus two and register at the front desk."
	secretA = "Project Zephyr launches the quantum toaster in November; the codename stays confidential."
	notesB  = "Bakery notes: sourdough needs a long cold fermentation and a very hot oven."
)

func TestIngestSearchAnswerAndCache(t *testing.T) {
	t.Parallel()
	e := newEnv(t, opts{})
	r := e.ingest("acme", "handbook/vacation.md", vacation, map[string]any{"source": "handbook", "url": "https://intra/vac", "metadata": map[string]any{"dept": "hr", "year": 2026}})
	if r.status != 200 || r.body["status"] != "ingested" || r.body["chunks"] != 1.0 || r.body["embeddingModelId"] != "builtin:hashed-ngram" || r.body["requestId"] == "" {
		t.Fatalf("ingest: %d %s", r.status, r.raw)
	}
	e.mustIngest("acme", "parking", parking)

	q := map[string]any{"query": "How many vacation days do employees get?"}
	r = e.search("acme", q)
	if r.status != 200 {
		t.Fatalf("search: %d %s", r.status, r.raw)
	}
	// The answer cites only what passes the relevance threshold: the parking passage is not cited.
	ss := sources(r)
	if len(ss) != 1 || ss[0]["docId"] != "handbook/vacation.md" || ss[0]["chunkId"] != "handbook/vacation.md#0" || ss[0]["id"] != "handbook/vacation.md#0" {
		t.Fatalf("sources: %s", r.raw)
	}
	if ss[0]["title"] != "Title of handbook/vacation.md" || ss[0]["source"] != "handbook" || ss[0]["url"] != "https://intra/vac" {
		t.Fatalf("source fields: %v", ss[0])
	}
	// Without an answer every hit is a source, best first.
	if all := sources(e.search("acme", map[string]any{"query": "How many vacation days do employees get?", "answer": false})); len(all) != 2 ||
		all[0]["docId"] != "handbook/vacation.md" || all[0]["score"].(float64) <= all[1]["score"].(float64) {
		t.Fatalf("the passage sharing the query's words must rank first: %v", all)
	}
	ans, _ := r.body["answer"].(string)
	if !strings.Contains(ans, "twenty-five days") || !strings.Contains(ans, "[1]") {
		t.Fatalf("answer %q should quote the vacation passage with [1]", ans)
	}
	if c := r.body["confidence"].(float64); c <= 0 || c > 1 {
		t.Fatalf("confidence %v", c)
	}
	if r.body["cached"] != false {
		t.Fatal("first search cannot be cached")
	}
	if fu, _ := r.body["followUps"].([]any); len(fu) == 0 || len(fu) > 5 {
		t.Fatalf("followUps %v", r.body["followUps"])
	}

	// The same question, differently spelled, comes from the cache.
	r2 := e.search("acme", map[string]any{"query": "  how many VACATION days do employees get "})
	if r2.status != 200 || r2.body["cached"] != true || r2.body["answer"] != r.body["answer"] {
		t.Fatalf("second search should be cached: %s", r2.raw)
	}
	// A different topK is another entry.
	if r3 := e.search("acme", map[string]any{"query": "How many vacation days do employees get?", "topK": 1}); r3.body["cached"] != false || len(sources(r3)) != 1 {
		t.Fatalf("topK 1: %s", r3.raw)
	}

	// Filters: metadata and docId.
	r = e.search("acme", map[string]any{"query": "vacation garage", "filter": map[string]any{"dept": "hr"}, "answer": false})
	if ss := sources(r); len(ss) != 1 || ss[0]["docId"] != "handbook/vacation.md" {
		t.Fatalf("metadata filter: %s", r.raw)
	}
	r = e.search("acme", map[string]any{"query": "vacation garage", "filter": map[string]any{"year": 2026, "docId": []string{"handbook/vacation.md"}}, "answer": false})
	if ss := sources(r); len(ss) != 1 {
		t.Fatalf("numeric metadata + docId filter: %s", r.raw)
	}
	r = e.search("acme", map[string]any{"query": "vacation garage", "filter": map[string]any{"docId": "parking"}, "answer": false})
	if ss := sources(r); len(ss) != 1 || ss[0]["docId"] != "parking" {
		t.Fatalf("docId filter: %s", r.raw)
	}

	// answer:false: sources only.
	r = e.search("acme", map[string]any{"query": "parking garage", "answer": false})
	if r.body["answer"] != "" || len(sources(r)) == 0 || sources(r)[0]["docId"] != "parking" {
		t.Fatalf("answer false: %s", r.raw)
	}
	// minScore drops weak sources.
	r = e.search("acme", map[string]any{"query": "parking garage level", "minScore": 0.99, "mode": "vector"})
	if len(sources(r)) != 0 {
		t.Fatalf("minScore 0.99 should drop everything: %s", r.raw)
	}

	m := e.do("GET", "/metrics/search-cache?period=1h", "acme", nil)
	if m.status != 200 || m.body["hits"] != 1.0 || m.body["totalChecks"].(float64) < 7 || m.body["hitRate"].(float64) <= 0 || m.body["period"] != "1h" {
		t.Fatalf("cache metrics: %s", m.raw)
	}
	if _, ok := m.body["avgLatencyMs"].(float64); !ok {
		t.Fatalf("avgLatencyMs missing: %s", m.raw)
	}
	if m := e.do("GET", "/metrics/search-cache", "acme", nil); m.body["period"] != "24h" {
		t.Fatalf("default period: %s", m.raw)
	}
	if m := e.do("GET", "/metrics/search-cache?period=2h", "acme", nil); m.status != 400 || !strings.Contains(m.raw, "requestId") {
		t.Fatalf("bad period: %d %s", m.status, m.raw)
	}
	if m := e.do("GET", "/metrics/search-cache", "other", nil); m.body["totalChecks"] != 0.0 {
		t.Fatalf("another tenant's cache metrics: %s", m.raw)
	}
}

func TestCacheInvalidatedByOwnTenantOnly(t *testing.T) {
	t.Parallel()
	e := newEnv(t, opts{})
	e.mustIngest("acme", "vac", vacation)
	e.mustIngest("beta", "bake", notesB)
	q := map[string]any{"query": "sourdough fermentation oven"}
	qa := map[string]any{"query": "vacation days"}
	e.search("acme", qa)
	e.search("beta", q)
	if r := e.search("acme", qa); r.body["cached"] != true {
		t.Fatal("want a hit")
	}
	// beta's ingest leaves acme's cache alone, and invalidates beta's.
	e.mustIngest("beta", "bake2", "Sourdough starter feeding schedule: flour and water twice a day before the oven bake.")
	if r := e.search("acme", qa); r.body["cached"] != true {
		t.Fatal("another tenant's ingest must not invalidate acme's cache")
	}
	r := e.search("beta", q)
	if r.body["cached"] != false || len(sources(r)) != 2 {
		t.Fatalf("beta's ingest must invalidate its cache and show the new doc: %s", r.raw)
	}
	// acme's delete invalidates acme.
	if d := e.do("DELETE", "/documents/vac", "acme", nil); d.status != 200 || d.body["status"] != "deleted" {
		t.Fatalf("delete: %d %s", d.status, d.raw)
	}
	if r := e.search("acme", qa); r.body["cached"] != false || len(sources(r)) != 0 {
		t.Fatalf("after delete: %s", r.raw)
	}
}

// TestTenantIsolation: two tenants, the same docId in both; neither ever sees the other's chunks
// through search, delete, re-ingest or reindex.
func TestTenantIsolation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, opts{})
	e.mustIngest("tenant-a", "shared", secretA)
	e.mustIngest("tenant-b", "shared", notesB)
	e.mustIngest("tenant-a", "only-a", vacation)

	leak := func(step string) {
		t.Helper()
		// B asks for A's words: it must get only its own chunks.
		for _, q := range []string{"Project Zephyr quantum toaster codename", "vacation days expire March"} {
			r := e.search("tenant-b", map[string]any{"query": q, "topK": 50})
			if r.status != 200 {
				t.Fatalf("%s: %d %s", step, r.status, r.raw)
			}
			if txt := allText(r); strings.Contains(txt, "Zephyr") || strings.Contains(txt, "vacation") || strings.Contains(r.body["answer"].(string), "Zephyr") {
				t.Fatalf("%s: tenant-b saw tenant-a's text: %s", step, r.raw)
			}
		}
		r := e.search("tenant-a", map[string]any{"query": "sourdough fermentation bakery oven", "topK": 50})
		if strings.Contains(allText(r), "sourdough") {
			t.Fatalf("%s: tenant-a saw tenant-b's text: %s", step, r.raw)
		}
	}
	leak("after ingest")

	// B cannot delete A's document: 404, and A's document stays.
	if r := e.do("DELETE", "/documents/only-a", "tenant-b", nil); r.status != 404 || !strings.Contains(r.raw, "requestId") {
		t.Fatalf("tenant-b deleting tenant-a's doc: %d %s", r.status, r.raw)
	}
	// B deletes its own "shared": A's "shared" stays.
	if r := e.do("DELETE", "/documents/shared", "tenant-b", nil); r.status != 200 {
		t.Fatalf("delete: %d %s", r.status, r.raw)
	}
	r := e.search("tenant-a", map[string]any{"query": "Project Zephyr toaster"})
	if ss := sources(r); len(ss) == 0 || ss[0]["docId"] != "shared" || !strings.Contains(ss[0]["text"].(string), "Zephyr") {
		t.Fatalf("tenant-a's shared doc after tenant-b's delete: %s", r.raw)
	}
	leak("after delete")

	// B re-ingests "shared" twice with other text: A's version is untouched.
	e.mustIngest("tenant-b", "shared", notesB)
	e.mustIngest("tenant-b", "shared", "Bakery notes, second edition: rye needs a warmer proof than sourdough.")
	r = e.search("tenant-b", map[string]any{"query": "bakery notes", "topK": 50})
	if ss := sources(r); len(ss) != 1 || !strings.Contains(ss[0]["text"].(string), "second edition") {
		t.Fatalf("re-ingest must replace the chunks: %s", r.raw)
	}
	leak("after re-ingest")

	// Reindex each tenant: each gets back exactly its own documents.
	ctx := context.Background()
	ra, err := e.mod.Reindex(ctx, tenant.MustParse("tenant-a"), nil)
	if err != nil || ra.Documents != 2 {
		t.Fatalf("reindex a: %+v %v", ra, err)
	}
	rb, err := e.mod.Reindex(ctx, tenant.MustParse("tenant-b"), nil)
	if err != nil || rb.Documents != 1 || rb.Chunks != 1 {
		t.Fatalf("reindex b: %+v %v", rb, err)
	}
	leak("after reindex")
	r = e.search("tenant-b", map[string]any{"query": "bakery notes", "topK": 50})
	if ss := sources(r); len(ss) != 1 || !strings.Contains(ss[0]["text"].(string), "second edition") {
		t.Fatalf("tenant-b after reindex: %s", r.raw)
	}

	// The public API used by chat and tools is scoped the same way.
	ps, err := e.mod.Retrieve(ctx, tenant.MustParse("tenant-b"), "Project Zephyr quantum toaster", 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		if strings.Contains(p.Text, "Zephyr") {
			t.Fatal("Retrieve leaked tenant-a's passage to tenant-b")
		}
	}
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t, opts{})
	e.mustIngest("acme", "doc", vacation)
	for name, c := range map[string]struct {
		path string
		body map[string]any
	}{
		"empty query":       {"/search", map[string]any{"query": ""}},
		"blank query":       {"/search", map[string]any{"query": "   "}},
		"long query":        {"/search", map[string]any{"query": strings.Repeat("a", 2001)}},
		"topK 0":            {"/search", map[string]any{"query": "x", "topK": 0}},
		"topK 51":           {"/search", map[string]any{"query": "x", "topK": 51}},
		"minScore 2":        {"/search", map[string]any{"query": "x", "minScore": 2}},
		"nested filter":     {"/search", map[string]any{"query": "x", "filter": map[string]any{"a": map[string]any{"b": 1}}}},
		"text too long":     {"/ingest", map[string]any{"docId": "d", "text": strings.Repeat("a", 500_001)}},
		"empty docId":       {"/ingest", map[string]any{"docId": "", "text": "x"}},
		"long docId":        {"/ingest", map[string]any{"docId": strings.Repeat("d", 257), "text": "x"}},
		"chunk size 99":     {"/ingest", map[string]any{"docId": "d", "text": "x", "chunking": map[string]any{"maxChunkSize": 99}}},
		"chunk size 10001":  {"/ingest", map[string]any{"docId": "d", "text": "x", "chunking": map[string]any{"maxChunkSize": 10001}}},
		"overlap too large": {"/ingest", map[string]any{"docId": "d", "text": "x", "chunking": map[string]any{"maxChunkSize": 200, "overlap": 200}}},
		"negative overlap":  {"/ingest", map[string]any{"docId": "d", "text": "x", "chunking": map[string]any{"overlap": -1}}},
	} {
		r := e.do("POST", c.path, "acme", c.body)
		if r.status != 400 && r.status != 422 {
			t.Errorf("%s: status %d, want 400/422: %s", name, r.status, r.raw)
			continue
		}
		if r.body["requestId"] == nil || r.body["code"] == nil {
			t.Errorf("%s: not problem JSON with requestId: %s", name, r.raw)
		}
	}
	// 500,000 characters of multi-byte text are accepted (the limit counts characters, not bytes).
	big := map[string]any{"chunking": map[string]any{"maxChunkSize": 10000, "overlap": 0}}
	if r := e.ingest("acme", "big", strings.Repeat("é", 500_000), big); r.status != 200 || r.body["chunks"] != 50.0 {
		t.Fatalf("500,000 two-byte characters: %d %.300s", r.status, r.raw)
	}
	if r := e.do("DELETE", "/documents/nope", "acme", nil); r.status != 404 {
		t.Fatalf("unknown doc: %d", r.status)
	}
}

func TestSafetyFilterRefuses(t *testing.T) {
	t.Parallel()
	e := newEnv(t, opts{})
	e.mustIngest("acme", "doc", vacation)
	r := e.search("acme", map[string]any{"query": "what is the easiest way to kill myself"})
	if r.status != 200 || !strings.Contains(r.body["answer"].(string), "988") || len(sources(r)) != 0 {
		t.Fatalf("self-harm query: %d %s", r.status, r.raw)
	}
}

// fakeCompleter answers rewrites and RAG prompts, recording what it was asked.
type fakeCompleter struct {
	mu        sync.Mutex
	prompts   []string
	block     bool // block rewrites until ctx ends
	noModel   bool
	rewriteTo string
}

func (f *fakeCompleter) Complete(ctx context.Context, t tenant.ID, req retrieval.CompletionRequest) (retrieval.CompletionResult, error) {
	if f.noModel {
		return retrieval.CompletionResult{}, retrieval.ErrNoModel
	}
	sys := req.Messages[0].Content
	f.mu.Lock()
	f.prompts = append(f.prompts, req.Messages[len(req.Messages)-1].Content)
	f.mu.Unlock()
	if strings.HasPrefix(sys, "Rewrite") {
		if f.block {
			<-ctx.Done()
			return retrieval.CompletionResult{}, ctx.Err()
		}
		return retrieval.CompletionResult{Text: f.rewriteTo, Model: "test:chat"}, nil
	}
	return retrieval.CompletionResult{Text: "Twenty-five days [1].\nFollow-up questions:\n- Do days expire?\n- Who approves requests?", Model: "test:chat"}, nil
}

func TestModelAnswerAndRewrite(t *testing.T) {
	t.Parallel()
	fc := &fakeCompleter{rewriteTo: "vacation days per year"}
	e := newEnv(t, opts{completer: fc})
	e.mustIngest("acme", "vac", vacation)
	e.mustIngest("acme", "park", parking)
	r := e.search("acme", map[string]any{"query": "how much time off?"})
	if r.status != 200 || r.body["answer"] != "Twenty-five days [1]." {
		t.Fatalf("model answer: %s", r.raw)
	}
	if fu := r.body["followUps"].([]any); len(fu) != 2 || fu[0] != "Do days expire?" {
		t.Fatalf("follow-ups %v", fu)
	}
	// The rewritten query found the vacation passage, which the original words alone would not.
	if ss := sources(r); ss[0]["docId"] != "vac" {
		t.Fatalf("rewrite not used: %s", r.raw)
	}
	fc.mu.Lock()
	prompt := fc.prompts[len(fc.prompts)-1]
	fc.mu.Unlock()
	if !strings.Contains(prompt, "[1] Title of vac") || !strings.Contains(prompt, "Question: how much time off?") {
		t.Fatalf("prompt lacks numbered sources: %s", prompt)
	}
	if strings.Contains(prompt, "Title of park") {
		t.Fatalf("the unrelated parking passage was given to the model to cite: %s", prompt)
	}

	// A rewrite that never comes falls back to the original query.
	slow := &fakeCompleter{block: true}
	e2 := newEnv(t, opts{completer: slow, config: retrieval.Config{RewriteTimeout: 20 * time.Millisecond}})
	e2.mustIngest("acme", "park", parking)
	if r := e2.search("acme", map[string]any{"query": "parking garage"}); r.status != 200 || sources(r)[0]["docId"] != "park" {
		t.Fatalf("rewrite timeout: %d %s", r.status, r.raw)
	}

	// ErrNoModel: extractive answer.
	e3 := newEnv(t, opts{completer: &fakeCompleter{noModel: true}})
	e3.mustIngest("acme", "vac", vacation)
	if r := e3.search("acme", map[string]any{"query": "vacation days expire"}); !strings.Contains(r.body["answer"].(string), "Offline extractive") {
		t.Fatalf("no model: %s", r.raw)
	}
}

func TestIndexDownRefusesWritesAndRecordsNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, opts{})
	e.mustIngest("acme", "kept", parking)
	e.index.setDown(true)
	r := e.ingest("acme", "vac", vacation, nil)
	if r.status != 503 || strings.Contains(r.raw, "recorded") || r.body["requestId"] == nil {
		t.Fatalf("ingest with the index down: %d %s", r.status, r.raw)
	}
	if d := e.do("DELETE", "/documents/kept", "acme", nil); d.status != 503 {
		t.Fatalf("delete with the index down: %d %s", d.status, d.raw)
	}
	if r := e.search("acme", map[string]any{"query": "vacation"}); r.status != 503 || !strings.Contains(r.raw, "unavailable") {
		t.Fatalf("search with the index down: %d %s", r.status, r.raw)
	}
	// Nothing was recorded: the ingest and the delete can be retried as they were.
	for id, want := range map[string]int{"vac": 0, "kept": 1} {
		st := tenant.MustStream(tenant.MustParse("acme"), events.DocCategory, events.DocStreamKey(id))
		if evs, err := e.store.ReadStream(context.Background(), st, 0, 0); err != nil || len(evs) != want {
			t.Fatalf("%s: events %v %v, want %d", id, evs, err, want)
		}
	}
	e.index.setDown(false)
	e.mustIngest("acme", "vac", vacation)
	st := tenant.MustStream(tenant.MustParse("acme"), events.DocCategory, events.DocStreamKey("vac"))
	evs, _ := e.store.ReadStream(context.Background(), st, 0, 0)
	var ev events.DocumentIngested
	if len(evs) != 1 || evs[0].Decode(&ev) != nil {
		t.Fatalf("events %v", evs)
	}
	if ev.Text != vacation || len(ev.ChunkIDs) != 1 || ev.ChunkIDs[0] != "vac#0" || !strings.HasPrefix(ev.ContentHash, "sha256:") || ev.EmbeddingModel != "builtin:hashed-ngram" {
		t.Fatalf("event %+v", ev)
	}
	if r := e.search("acme", map[string]any{"query": "vacation days"}); r.status != 200 || sources(r)[0]["docId"] != "vac" {
		t.Fatalf("after the index is back: %s", r.raw)
	}
}

// An index that goes down after an ingest was recorded (Elasticsearch, say): the ingest answers 503
// "recorded", the bus waits for the index (degraded on /health), and once it is back the document
// is indexed without a reindex, and the answer cached without it is dropped.
func TestIndexDownThenUpIndexesWithoutReindex(t *testing.T) {
	t.Parallel()
	ix, _ := embedded.Open(embedded.Config{})
	fu := &failingUpsert{Index: ix}
	e := newEnv(t, opts{config: retrieval.Config{IndexWait: 50 * time.Millisecond}, index: fu})
	q := map[string]any{"query": "vacation days", "answer": false}
	if r := e.search("acme", q); r.status != 200 || len(sources(r)) != 0 { // cached without the document
		t.Fatalf("search before the ingest: %d %s", r.status, r.raw)
	}
	fu.fail.Store(true) // the index fails after the append: recorded, not indexed
	if r := e.ingest("acme", "vac", vacation, nil); r.status != 503 || !strings.Contains(r.raw, "recorded") {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	for i := 0; ; i++ { // the bus waits for the index, and says so
		st, _ := health.Classify(e.bus.Check(context.Background()))
		if st == health.Degraded {
			break
		}
		if i > 2000 {
			t.Fatalf("/health bus while the index is down: %v", e.bus.Check(context.Background()))
		}
		time.Sleep(5 * time.Millisecond)
	}
	if r := e.search("acme", q); r.status != 200 || len(sources(r)) != 0 {
		t.Fatalf("search while the index is down: %d %s", r.status, r.raw)
	}
	fu.fail.Store(false)
	if err := e.bus.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r := e.search("acme", q); r.status != 200 || len(sources(r)) != 1 {
		t.Fatalf("after the index came back (cached %v): %s", r.body["cached"], r.raw)
	}
	if err := e.bus.Check(context.Background()); err != nil {
		t.Fatalf("/health bus once the index is back: %v", err)
	}
}

// The same with a shared index (Elasticsearch, written by a processor once per deployment): an
// ingest acknowledged while the index is down is indexed when it returns, without a reindex.
func TestSharedIndexDownThenUpIndexesWithoutReindex(t *testing.T) {
	t.Parallel()
	ix, _ := embedded.Open(embedded.Config{})
	fu := &failingUpsert{Index: ix}
	e := newEnv(t, opts{config: retrieval.Config{IndexWait: 50 * time.Millisecond}, index: fu, shared: true})
	fu.fail.Store(true) // down after CheckWrite: the write itself fails
	// Recorded, not indexed: not a 200 (a search right after it would not find it), as with the
	// embedded index.
	if r := e.ingest("acme", "vac", vacation, nil); r.status != 503 || !strings.Contains(r.raw, "recorded") {
		t.Fatalf("ingest the shared index did not take: %d %s", r.status, r.raw)
	}
	for i := 0; ; i++ {
		st, _ := health.Classify(e.bus.Check(context.Background()))
		if st == health.Degraded {
			break
		}
		if i > 2000 {
			t.Fatalf("/health bus while the shared index is down: %v", e.bus.Check(context.Background()))
		}
		time.Sleep(5 * time.Millisecond)
	}
	q := map[string]any{"query": "vacation days", "answer": false}
	if r := e.search("acme", q); r.status != 200 || len(sources(r)) != 0 {
		t.Fatalf("search while the index is down: %d %s", r.status, r.raw)
	}
	fu.fail.Store(false)
	if err := e.bus.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r := e.search("acme", q); r.status != 200 || len(sources(r)) != 1 {
		t.Fatalf("after the shared index came back (cached %v): %s", r.body["cached"], r.raw)
	}
	if r := e.search("beta", q); r.status != 200 || len(sources(r)) != 0 {
		t.Fatalf("beta found acme's document: %s", r.raw)
	}
}

func TestIngestPathsResumes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, opts{})
	root := t.TempDir()
	docs := filepath.Join(root, "docs")
	_ = os.MkdirAll(filepath.Join(docs, "sub"), 0o755)
	_ = os.MkdirAll(filepath.Join(docs, ".git"), 0o755)
	write := func(p, s string) {
		if err := os.WriteFile(filepath.Join(docs, p), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("vacation.md", "# Vacation policy\n\n"+vacation)
	write("sub/parking.txt", parking)
	write("image.png", "\x89PNG")
	write(".git/HEAD.md", "ref")
	write(".notes.md", "a hidden file")
	ctx := context.Background()
	acme := tenant.MustParse("acme")
	var seen []string
	r, err := e.mod.IngestPaths(ctx, acme, []string{docs}, retrieval.FilesOptions{}, func(done, total int, path string) {
		seen = append(seen, path)
		if total != 2 || done != len(seen) {
			t.Errorf("progress %d/%d", done, total)
		}
	})
	if err != nil || r.Ingested != 2 || r.Skipped != 0 || len(r.Failed) != 0 {
		t.Fatalf("first run %+v %v (hidden files and folders are skipped)", r, err)
	}
	r, _ = e.mod.IngestPaths(ctx, acme, []string{docs}, retrieval.FilesOptions{}, nil)
	if r.Ingested != 0 || r.Skipped != 2 {
		t.Fatalf("second run must skip unchanged files: %+v", r)
	}
	write("vacation.md", "# Vacation policy\n\nThirty days now.")
	r, _ = e.mod.IngestPaths(ctx, acme, []string{docs}, retrieval.FilesOptions{}, nil)
	if r.Ingested != 1 || r.Skipped != 1 {
		t.Fatalf("third run %+v", r)
	}
	// Another tenant starts from scratch: its own documents decide what is skipped.
	if r, _ := e.mod.IngestPaths(ctx, tenant.MustParse("beta"), []string{docs}, retrieval.FilesOptions{}, nil); r.Ingested != 2 {
		t.Fatalf("beta %+v", r)
	}
	// Ids are relative to the folder given, whatever the working directory.
	ps, _ := e.mod.Retrieve(ctx, acme, "thirty days vacation policy", 1)
	if len(ps) != 1 || ps[0].Title != "Vacation policy" || ps[0].DocID != "vacation.md" {
		t.Fatalf("passage %+v (want docId vacation.md: relative to the folder given)", ps)
	}
	// The same folder given by another path (a copy elsewhere) is the same documents: all skipped.
	copyDir := filepath.Join(root, "elsewhere", "docs")
	_ = os.MkdirAll(filepath.Join(copyDir, "sub"), 0o755)
	for _, f := range []string{"vacation.md", "sub/parking.txt"} {
		b, _ := os.ReadFile(filepath.Join(docs, f))
		_ = os.WriteFile(filepath.Join(copyDir, f), b, 0o644)
	}
	if r, _ := e.mod.IngestPaths(ctx, acme, []string{copyDir}, retrieval.FilesOptions{}, nil); r.Ingested != 0 || r.Skipped != 2 {
		t.Fatalf("the same folder from elsewhere: %+v", r)
	}
	// --prune: a file removed from the folder deletes its document; without prune it stays.
	if err := os.Remove(filepath.Join(docs, "sub", "parking.txt")); err != nil {
		t.Fatal(err)
	}
	if r, _ := e.mod.IngestPaths(ctx, acme, []string{docs}, retrieval.FilesOptions{}, nil); r.Deleted != 0 {
		t.Fatalf("without prune nothing is deleted: %+v", r)
	}
	e.mustIngest("acme", "api-doc", "An API-ingested document about the parking garage stays.")
	if r, _ := e.mod.IngestPaths(ctx, acme, []string{docs}, retrieval.FilesOptions{Prune: true}, nil); r.Deleted != 1 || r.Skipped != 1 {
		t.Fatalf("prune: %+v", r)
	}
	got := map[string]bool{}
	for _, p := range mustRetrieve(t, e, acme, "parking garage") {
		got[p.DocID] = true
	}
	if got["sub/parking.txt"] || !got["api-doc"] {
		t.Fatalf("after prune: %v (the file's document gone, the API's kept)", got)
	}
	// Beta's copy of the file is untouched by acme's prune.
	if ps, _ := e.mod.RetrieveMode(ctx, tenant.MustParse("beta"), "parking garage", 5, "lexical"); len(ps) == 0 || ps[0].DocID != "sub/parking.txt" {
		t.Fatalf("beta after acme's prune: %+v", ps)
	}
	// Deleting over HTTP works for path-like ids (URL-encoded).
	if d := e.do("DELETE", "/documents/"+url.PathEscape("vacation.md"), "acme", nil); d.status != 200 {
		t.Fatalf("delete: %d %s", d.status, d.raw)
	}
}

func mustRetrieve(t *testing.T, e *env, tn tenant.ID, q string) []retrieval.Passage {
	t.Helper()
	ps, err := e.mod.RetrieveMode(context.Background(), tn, q, 10, "")
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

func TestPublicAPIForWiring(t *testing.T) {
	t.Parallel()
	set := metrics.NewSet()
	store := eventstoretest.NewMemory()
	ix, _ := embedded.Open(embedded.Config{})
	res, _ := embeddings.NewResolver(embeddings.Config{})
	mod, err := retrieval.New(retrieval.Deps{Store: store, Index: ix, Embedders: res, Metrics: set})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	acme := tenant.MustParse("acme")
	out, err := mod.Ingest(ctx, acme, retrieval.Document{DocID: "d", Text: vacation, ChunkSize: 100})
	if err != nil || out.Chunks < 2 || out.EmbeddingModel != "builtin:hashed-ngram" {
		t.Fatalf("%+v %v", out, err)
	}
	vs, model, err := mod.Embed(ctx, acme, []string{"a b", "c d"})
	if err != nil || len(vs) != 2 || len(vs[0]) != 384 || model != "builtin:hashed-ngram" {
		t.Fatalf("embed %d %s %v", len(vs), model, err)
	}
	if _, err := mod.Ingest(ctx, acme, retrieval.Document{DocID: "", Text: "x"}); err == nil {
		t.Fatal("an empty docId must fail")
	}
	if _, err := retrieval.New(retrieval.Deps{Store: store}); err == nil {
		t.Fatal("missing deps must fail")
	}
	var sb strings.Builder
	set.WritePrometheus(&sb)
	_ = sb
	if !errors.Is(retrieval.ErrNoModel, retrieval.ErrNoModel) {
		t.Fatal()
	}
	var _ eventstore.Store = store
}

// calls counts the model calls made so far.
func (f *fakeCompleter) calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.prompts)
}

// Issue 16 item 2: the rewrite is searched beside the user's words, never instead of them; a
// request can turn it off; answer false calls no model unless rewrite is asked for.
func TestRewriteAddsAndModelCallsAreAskedFor(t *testing.T) {
	t.Parallel()
	fc := &fakeCompleter{rewriteTo: "vacation days per year"}
	e := newEnv(t, opts{completer: fc})
	e.mustIngest("acme", "vac", vacation)
	e.mustIngest("acme", "park", parking)

	// The user's own words ("parking garage") are still searched beside the rewrite.
	r := e.search("acme", map[string]any{"query": "parking garage", "answer": false, "rewrite": true})
	docs := map[any]bool{}
	for _, s := range sources(r) {
		docs[s["docId"]] = true
	}
	if r.status != 200 || !docs["park"] || !docs["vac"] {
		t.Fatalf("rewrite must add the vacation passage to the parking one: %s", r.raw)
	}
	if fc.calls() != 1 {
		t.Fatalf("%d model calls, want the one rewrite", fc.calls())
	}
	// answer false: no model call at all.
	before := fc.calls()
	if r := e.search("acme", map[string]any{"query": "when does the garage open", "answer": false}); r.status != 200 || fc.calls() != before {
		t.Fatalf("answer false called the model %d times: %s", fc.calls()-before, r.raw)
	}
	// rewrite false with an answer: one call, the answer's.
	before = fc.calls()
	if r := e.search("acme", map[string]any{"query": "when does the parking garage open", "rewrite": false}); r.status != 200 || fc.calls() != before+1 {
		t.Fatalf("rewrite false: %d model calls, want 1: %s", fc.calls()-before, r.raw)
	}
}

// Issue 16 item 3: when no passage passes the mode's relevance threshold the answer says so, cites
// nothing, and no model writes it; a mode outside the list is 422; each mode answers.
func TestNoRelevantSourceAndModes(t *testing.T) {
	t.Parallel()
	fc := &fakeCompleter{rewriteTo: "quantum chromodynamics lattice"}
	e := newEnv(t, opts{completer: fc})
	e.mustIngest("acme", "vac", vacation)
	e.mustIngest("acme", "park", parking)
	r := e.search("acme", map[string]any{"query": "quantum chromodynamics on a lattice"})
	if r.status != 200 || !strings.Contains(r.body["answer"].(string), "No relevant source") || len(sources(r)) != 0 {
		t.Fatalf("unrelated question: %s", r.raw)
	}
	for _, p := range fc.prompts {
		if strings.Contains(p, "Sources:") {
			t.Fatalf("the model was asked to answer from unrelated passages: %s", p)
		}
	}
	for _, mode := range []string{"hybrid", "vector", "lexical"} {
		r := e.search("acme", map[string]any{"query": "vacation days", "mode": mode, "answer": false})
		if ss := sources(r); r.status != 200 || len(ss) == 0 || ss[0]["docId"] != "vac" {
			t.Fatalf("mode %s: %s", mode, r.raw)
		}
	}
	if r := e.search("acme", map[string]any{"query": "vacation days", "mode": "semantic"}); r.status != 422 || !strings.Contains(r.raw, "mode") {
		t.Fatalf("mode outside the list: %d %s", r.status, r.raw)
	}
	// Tenant isolation in the lexical half: another tenant's words find nothing of acme's.
	if r := e.search("other", map[string]any{"query": "vacation days", "mode": "lexical", "answer": false}); r.status != 200 || len(sources(r)) != 0 {
		t.Fatalf("tenant other found acme's words: %s", r.raw)
	}
}
