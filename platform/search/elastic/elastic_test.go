package elastic_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/platform/search"
	"github.com/crispy-enigma/crispy/platform/search/elastic"
	"github.com/crispy-enigma/crispy/platform/search/lexical"
	"github.com/crispy-enigma/crispy/platform/search/searchtest"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

type recorded struct {
	Method, Path, Query, Body string
}

// fakeES answers like Elasticsearch 8 (with the product header the client insists on) and records
// every request.
type fakeES struct {
	mu       sync.Mutex
	reqs     []recorded
	exists   bool
	status   int // when set, every answer has this status
	searchRe string
	noRRF    bool // answer a retriever request as an 8.13 cluster does
}

func (f *fakeES) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.reqs = append(f.reqs, recorded{r.Method, r.URL.Path, r.URL.RawQuery, string(b)})
	status, exists := f.status, f.exists
	f.mu.Unlock()
	w.Header().Set("X-Elastic-Product", "Elasticsearch")
	w.Header().Set("Content-Type", "application/json")
	if status != 0 {
		w.WriteHeader(status)
		_, _ = io.WriteString(w, `{"error":{"type":"cluster_block_exception","reason":"blocked"},"status":503}`)
		return
	}
	switch {
	case r.Method == http.MethodHead:
		if !exists {
			w.WriteHeader(404)
		}
	case r.Method == http.MethodPut:
		f.mu.Lock()
		f.exists = true
		f.mu.Unlock()
		_, _ = io.WriteString(w, `{"acknowledged":true,"shards_acknowledged":true,"index":"crispy-chunks-4"}`)
	case strings.HasSuffix(r.URL.Path, "/_bulk"):
		_, _ = io.WriteString(w, `{"took":3,"errors":false,"items":[{"index":{"_index":"crispy-chunks-4","_id":"x","status":201}}]}`)
	case strings.HasSuffix(r.URL.Path, "/_delete_by_query"):
		_, _ = io.WriteString(w, `{"took":1,"timed_out":false,"total":1,"deleted":1,"failures":[]}`)
	case strings.HasSuffix(r.URL.Path, "/_count"):
		_, _ = io.WriteString(w, `{"count":2,"_shards":{"total":1,"successful":1,"skipped":0,"failed":0}}`)
	case r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/_doc/"):
		_, _ = io.WriteString(w, `{"_index":"crispy-chunks_checkpoints","_id":"acme","found":true,"_source":{"position":42}}`)
	case strings.HasSuffix(r.URL.Path, "/_search") && f.noRRF && strings.Contains(string(b), `"retriever"`):
		w.WriteHeader(400)
		_, _ = io.WriteString(w, `{"error":{"type":"parsing_exception","reason":"Unknown key for a START_OBJECT in [retriever]."},"status":400}`)
	case strings.HasSuffix(r.URL.Path, "/_search"):
		_, _ = io.WriteString(w, `{"took":2,"timed_out":false,"hits":{"total":{"value":1,"relation":"eq"},"max_score":0.9,"hits":[
			{"_index":"crispy-chunks-4","_id":"x","_score":0.9,"_source":{"tenant":"acme","docId":"guide","chunkId":"guide#0","text":"hello","title":"Guide","metadata":{"lang":"en"},"vector":[1,0,0,0]}}]}}`)
	default:
		_, _ = io.WriteString(w, `{"name":"node-1","cluster_name":"test","version":{"number":"8.19.7"},"tagline":"You Know, for Search"}`)
	}
}

// take returns the requests recorded since the last take, without the client's product check (a
// GET / it may send before any request).
func (f *fakeES) take() []recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.reqs
	f.reqs = nil
	for len(out) > 0 && out[0].Method == http.MethodGet && out[0].Path == "/" {
		out = out[1:]
	}
	return out
}

func jsonEq(t *testing.T, got string, want any) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		t.Fatalf("body %q is not JSON: %v", got, err)
	}
	wb, _ := json.Marshal(want)
	_ = json.Unmarshal(wb, &w)
	gb, _ := json.Marshal(g)
	wb, _ = json.Marshal(w)
	if string(gb) != string(wb) {
		t.Fatalf("body\n got %s\nwant %s", gb, wb)
	}
}

// fakeIndex is the adapter over a server that fake answers, without retries; the server stops with
// the test.
func fakeIndex(t *testing.T, fake *fakeES) *elastic.Index {
	t.Helper()
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	ix, err := elastic.New(elastic.Config{Addresses: []string{srv.URL}, MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	return ix
}

func TestContractElasticsearchRequests(t *testing.T) {
	fake := &fakeES{}
	ix := fakeIndex(t, fake)
	ctx := context.Background()
	acme := tenant.MustParse("acme")

	// Upsert: HEAD the index, create it with the mapping, then one bulk request.
	err := ix.Upsert(ctx, acme, []search.Chunk{
		{DocID: "guide", ChunkID: "guide#0", Text: "hello", Title: "Guide", Metadata: map[string]string{"lang": "en"}, Vector: []float32{1, 0, 0, 0}},
		{DocID: "guide", ChunkID: "guide#1", Text: "world", Vector: []float32{0, 1, 0, 0}},
	})
	if err != nil {
		t.Fatal(err)
	}
	reqs := fake.take()
	if len(reqs) != 3 {
		t.Fatalf("requests %+v", reqs)
	}
	if reqs[0].Method != "HEAD" || reqs[0].Path != "/crispy-chunks-4" {
		t.Fatalf("first request %+v, want HEAD /crispy-chunks-4", reqs[0])
	}
	if reqs[1].Method != "PUT" || reqs[1].Path != "/crispy-chunks-4" {
		t.Fatalf("second request %+v", reqs[1])
	}
	jsonEq(t, reqs[1].Body, elastic.Mapping(4))
	if !strings.Contains(reqs[1].Body, `"vector":{"dims":4,"index":true,"similarity":"cosine","type":"dense_vector"}`) ||
		!strings.Contains(reqs[1].Body, `"tenant":{"type":"keyword"}`) || !strings.Contains(reqs[1].Body, `"docId":{"type":"keyword"}`) {
		t.Fatalf("mapping %s", reqs[1].Body)
	}
	bulk := reqs[2]
	if bulk.Method != "POST" || bulk.Path != "/_bulk" || bulk.Query != "refresh=wait_for" {
		t.Fatalf("bulk request %+v", bulk)
	}
	lines := strings.Split(strings.TrimSpace(bulk.Body), "\n")
	if len(lines) != 4 {
		t.Fatalf("bulk body has %d lines:\n%s", len(lines), bulk.Body)
	}
	var action struct {
		Index struct {
			Index string `json:"_index"`
			ID    string `json:"_id"`
		} `json:"index"`
	}
	_ = json.Unmarshal([]byte(lines[0]), &action)
	if action.Index.Index != "crispy-chunks-4" || len(action.Index.ID) != 64 {
		t.Fatalf("bulk action %s", lines[0])
	}
	jsonEq(t, lines[1], map[string]any{"tenant": "acme", "docId": "guide", "chunkId": "guide#0", "text": "hello", "title": "Guide",
		"metadata": map[string]string{"lang": "en"}, "vector": []float32{1, 0, 0, 0}})

	// A second upsert does not re-check the index; another tenant's same chunk id gets another _id.
	_ = ix.Upsert(ctx, tenant.MustParse("beta"), []search.Chunk{{DocID: "guide", ChunkID: "guide#0", Text: "b", Vector: []float32{1, 0, 0, 0}}})
	reqs = fake.take()
	if len(reqs) != 1 || reqs[0].Path != "/_bulk" {
		t.Fatalf("second upsert %+v", reqs)
	}
	var other struct {
		Index struct {
			ID string `json:"_id"`
		} `json:"index"`
	}
	_ = json.Unmarshal([]byte(strings.Split(reqs[0].Body, "\n")[0]), &other)
	if other.Index.ID == action.Index.ID {
		t.Fatal("two tenants' chunks with the same id must not share an _id")
	}

	// Search: knn with the tenant and the filters in knn.filter.
	hits, err := ix.Search(ctx, acme, search.Query{Vector: []float32{1, 0, 0, 0}, K: 3, MinScore: 0.2,
		Filter: search.Filter{DocIDs: []string{"guide"}, Metadata: map[string]string{"lang": "en"}}})
	if err != nil {
		t.Fatal(err)
	}
	reqs = fake.take()
	if len(reqs) != 1 || reqs[0].Method != "POST" || reqs[0].Path != "/crispy-chunks-4/_search" || reqs[0].Query != "ignore_unavailable=true" {
		t.Fatalf("search request %+v", reqs)
	}
	jsonEq(t, reqs[0].Body, map[string]any{
		"knn": map[string]any{"field": "vector", "query_vector": []float32{1, 0, 0, 0}, "k": 3, "num_candidates": 100, "similarity": 0.2,
			"filter": []any{
				map[string]any{"term": map[string]any{"tenant": "acme"}},
				map[string]any{"terms": map[string]any{"docId": []string{"guide"}}},
				map[string]any{"term": map[string]any{"metadata.lang": "en"}},
			}},
		"size": 3, "_source": map[string]any{"excludes": []string{"vector"}},
	})
	if len(hits) != 1 || hits[0].ChunkID != "guide#0" || hits[0].Title != "Guide" || hits[0].Score < 0.79 || hits[0].Score > 0.81 {
		t.Fatalf("hits %+v (score should be the cosine 2*0.9-1)", hits)
	}

	// A hit of another tenant is refused, never returned.
	if _, err := ix.Search(ctx, tenant.MustParse("beta"), search.Query{Vector: []float32{1, 0, 0, 0}, K: 3, MinScore: -1}); err == nil {
		t.Fatal("a hit of another tenant must be refused")
	}
	fake.take()

	// Delete a document: delete-by-query on (tenant, docId) across the prefix's indexes.
	if err := ix.DeleteDoc(ctx, acme, "guide"); err != nil {
		t.Fatal(err)
	}
	reqs = fake.take()
	if len(reqs) != 1 || reqs[0].Method != "POST" || reqs[0].Path != "/crispy-chunks-*/_delete_by_query" ||
		reqs[0].Query != "allow_no_indices=true&conflicts=proceed&refresh=true" {
		t.Fatalf("delete request %+v", reqs)
	}
	jsonEq(t, reqs[0].Body, map[string]any{"query": map[string]any{"bool": map[string]any{"filter": []any{
		map[string]any{"term": map[string]any{"tenant": "acme"}}, map[string]any{"term": map[string]any{"docId": "guide"}}}}}})

	if err := ix.DeleteTenant(ctx, acme); err != nil {
		t.Fatal(err)
	}
	reqs = fake.take()
	jsonEq(t, reqs[0].Body, map[string]any{"query": map[string]any{"bool": map[string]any{"filter": []any{
		map[string]any{"term": map[string]any{"tenant": "acme"}}}}}})

	n, err := ix.Count(ctx, acme)
	if err != nil || n != 2 {
		t.Fatalf("count %d %v", n, err)
	}
	reqs = fake.take()
	if reqs[0].Path != "/crispy-chunks-*/_count" {
		t.Fatalf("count request %+v", reqs[0])
	}
	jsonEq(t, reqs[0].Body, map[string]any{"query": map[string]any{"term": map[string]any{"tenant": "acme"}}})
}

// TestContractElasticsearchCheckpoints: checkpoints are documents of {prefix}_checkpoints (outside
// the chunk indexes' pattern), one per tenant, and DeleteTenant removes the tenant's.
func TestContractElasticsearchCheckpoints(t *testing.T) {
	fake := &fakeES{}
	ix := fakeIndex(t, fake)
	ctx := context.Background()
	acme := tenant.MustParse("acme")
	if err := ix.SetCheckpoint(ctx, acme, 42); err != nil {
		t.Fatal(err)
	}
	reqs := fake.take()
	if len(reqs) != 3 || reqs[0].Method != "HEAD" || reqs[0].Path != "/crispy-chunks_checkpoints" || reqs[1].Method != "PUT" ||
		reqs[1].Path != "/crispy-chunks_checkpoints" || reqs[2].Method != "PUT" || reqs[2].Path != "/crispy-chunks_checkpoints/_doc/acme" {
		t.Fatalf("set checkpoint requests %+v", reqs)
	}
	jsonEq(t, reqs[2].Body, map[string]any{"position": 42})
	cp, err := ix.Checkpoint(ctx, acme)
	if err != nil || cp != 42 {
		t.Fatalf("checkpoint %d %v", cp, err)
	}
	if reqs := fake.take(); len(reqs) != 1 || reqs[0].Method != "GET" || reqs[0].Path != "/crispy-chunks_checkpoints/_doc/acme" {
		t.Fatalf("get checkpoint requests %+v", reqs)
	}
	if err := ix.DeleteTenant(ctx, acme); err != nil {
		t.Fatal(err)
	}
	reqs = fake.take()
	if len(reqs) != 2 || reqs[1].Method != "DELETE" || reqs[1].Path != "/crispy-chunks_checkpoints/_doc/acme" {
		t.Fatalf("delete tenant requests %+v", reqs)
	}
	if err := ix.CheckWrite(ctx, acme, 384); err != nil {
		t.Fatal(err)
	}
	fake.mu.Lock()
	fake.status = 503
	fake.mu.Unlock()
	if err := ix.CheckWrite(ctx, acme, 384); !errors.Is(err, search.ErrUnavailable) {
		t.Fatalf("CheckWrite with the cluster failing: %v", err)
	}
}

func TestContractElasticsearchUnavailable(t *testing.T) {
	fake := &fakeES{status: 503}
	srv := httptest.NewServer(fake)
	ix, _ := elastic.New(elastic.Config{Addresses: []string{srv.URL}, MaxRetries: -1})
	ctx := context.Background()
	acme := tenant.MustParse("acme")
	if _, err := ix.Search(ctx, acme, search.Query{Vector: []float32{1}, K: 1}); !errors.Is(err, search.ErrUnavailable) {
		t.Fatalf("503 must be ErrUnavailable, got %v", err)
	}
	srv.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := ix.DeleteDoc(ctx, acme, "d"); !errors.Is(err, search.ErrUnavailable) {
		t.Fatalf("an unreachable cluster must be ErrUnavailable, got %v", err)
	}
	if err := ix.Ping(ctx); !errors.Is(err, search.ErrUnavailable) {
		t.Fatalf("ping: %v", err)
	}
}

// TestIntegrationElasticsearch runs the acceptance suite against a real cluster.
func TestIntegrationElasticsearch(t *testing.T) {
	url := os.Getenv("CRISPY_ELASTICSEARCH_URL")
	if url == "" {
		t.Skip("needs a real Elasticsearch 8: set CRISPY_ELASTICSEARCH_URL (e.g. http://localhost:9200)")
	}
	n := 0
	searchtest.Run(t, func(t *testing.T) search.Index {
		n++
		prefix := "crispy-test-" + strings.ToLower(time.Now().UTC().Format("20060102t150405")) + "-" + string(rune('a'+n))
		ix, err := elastic.New(elastic.Config{Addresses: []string{url}, IndexPrefix: prefix, Refresh: "true"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			for _, name := range []string{prefix + "-*", prefix + "_checkpoints"} {
				req, _ := http.NewRequest(http.MethodDelete, strings.TrimRight(url, "/")+"/"+name, nil)
				if res, err := http.DefaultClient.Do(req); err == nil {
					res.Body.Close()
				}
			}
		})
		return ix
	})
}

// The lexical and hybrid requests (issue 16 item 1): a match on the hashed analysed words and a knn,
// the tenant (and the request's filter) inside BOTH, fused by the rrf retriever; a cluster that
// refuses the retriever gets the two searches and the fusion is done here, from then on.
func TestContractElasticsearchLexicalAndHybrid(t *testing.T) {
	ctx := context.Background()
	acme := tenant.MustParse("acme")
	terms := lexical.Analyze("Hello worlds")
	hashed := lexical.Hash(terms[0])
	tenantFilter := []any{map[string]any{"term": map[string]any{"tenant": "acme"}}, map[string]any{"terms": map[string]any{"docId": []string{"guide"}}}}
	match := map[string]any{"bool": map[string]any{
		"must":   map[string]any{"match": map[string]any{"terms": strings.Join([]string{strconv.FormatUint(hashed, 16), strconv.FormatUint(lexical.Hash(terms[1]), 16)}, " ")}},
		"filter": tenantFilter}}
	knn := map[string]any{"field": "vector", "query_vector": []float32{1, 0, 0, 0}, "k": 100, "num_candidates": 400, "filter": tenantFilter}
	q := search.Query{Mode: search.ModeHybrid, Vector: []float32{1, 0, 0, 0}, Terms: terms, Text: "Hello worlds", K: 5, MinScore: -1,
		Filter: search.Filter{DocIDs: []string{"guide"}}}

	// Upsert sends the hashed words, never the words.
	fake := &fakeES{exists: true}
	ix := fakeIndex(t, fake)
	if err := ix.Upsert(ctx, acme, []search.Chunk{{DocID: "guide", ChunkID: "guide#0", Text: "hello", Vector: []float32{1, 0, 0, 0}, Terms: terms}}); err != nil {
		t.Fatal(err)
	}
	reqs := fake.take()
	bulk := reqs[len(reqs)-1].Body
	if !strings.Contains(bulk, `"terms":"`+strconv.FormatUint(hashed, 16)) || strings.Contains(bulk, `"hello"`) && strings.Contains(bulk, `"terms":"hello`) {
		t.Fatalf("bulk body %s: want the hashed words in terms", bulk)
	}

	// Lexical.
	hits, err := ix.Search(ctx, acme, search.Query{Mode: search.ModeLexical, Terms: terms, K: 5, MinScore: -1, Filter: q.Filter})
	if err != nil || len(hits) != 1 || hits[0].LexicalScore != 0.9 {
		t.Fatalf("lexical hits %+v %v", hits, err)
	}
	reqs = fake.take()
	if len(reqs) != 1 || reqs[0].Path != "/crispy-chunks-*/_search" {
		t.Fatalf("lexical request %+v", reqs)
	}
	jsonEq(t, reqs[0].Body, map[string]any{"query": match, "size": 5, "_source": map[string]any{"excludes": []string{"vector"}}})

	// Hybrid on a cluster with the rrf retriever.
	hits, err = ix.Search(ctx, acme, q)
	if err != nil || len(hits) != 1 || hits[0].VectorScore < 0.999 {
		t.Fatalf("hybrid hits %+v %v: want the hit's cosine from its vector", hits, err)
	}
	reqs = fake.take()
	if len(reqs) != 1 || reqs[0].Path != "/crispy-chunks-4/_search" {
		t.Fatalf("hybrid request %+v", reqs)
	}
	jsonEq(t, reqs[0].Body, map[string]any{"retriever": map[string]any{"rrf": map[string]any{
		"retrievers":       []any{map[string]any{"standard": map[string]any{"query": match}}, map[string]any{"knn": knn}},
		"rank_window_size": 100, "rank_constant": 60}}, "size": 5})

	// Hybrid on a cluster without it: refused once, then two searches, fused here.
	old := &fakeES{exists: true, noRRF: true}
	ix = fakeIndex(t, old)
	for round := range 2 {
		hits, err = ix.Search(ctx, acme, q)
		if err != nil || len(hits) != 1 || hits[0].ChunkID != "guide#0" || hits[0].Score < 0.999 {
			t.Fatalf("client-side fusion: %+v %v (first in both lists: score 1)", hits, err)
		}
		reqs = old.take()
		if round == 0 {
			if len(reqs) != 3 || !strings.Contains(reqs[0].Body, `"retriever"`) {
				t.Fatalf("first hybrid on an old cluster %+v", reqs)
			}
			reqs = reqs[1:]
		}
		if len(reqs) != 2 {
			t.Fatalf("round %d: %d requests, want the knn and the match", round, len(reqs))
		}
		jsonEq(t, reqs[0].Body, map[string]any{"knn": knn, "size": 100, "_source": map[string]any{"excludes": []string{"vector"}}})
		jsonEq(t, reqs[1].Body, map[string]any{"query": match, "size": 100, "_source": map[string]any{"excludes": []string{"vector"}}})
	}

	// Another tenant's hit coming back is refused in every mode.
	for _, mode := range []search.Mode{search.ModeLexical, search.ModeHybrid} {
		if _, err := ix.Search(ctx, tenant.MustParse("beta"), search.Query{Mode: mode, Vector: q.Vector, Terms: terms, K: 5, MinScore: -1}); err == nil {
			t.Fatalf("%s: a hit of another tenant must be refused", mode)
		}
	}
}
