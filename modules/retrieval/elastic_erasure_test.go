package retrieval_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/crispy-enigma/crispy/platform/search/elastic"
)

// esRequest is one request the fake Elasticsearch received.
type esRequest struct{ Method, Path, Query, Body string }

// fakeES answers like Elasticsearch 8 for what the index writer and search send (the same wire
// format as platform/search/elastic's contract test), keeps the chunks bulk requests index, returns
// a tenant's chunks for a knn search on it and removes them on a delete-by-query, and records every
// request.
type fakeES struct {
	mu     sync.Mutex
	reqs   []esRequest
	exists map[string]bool
	docs   map[string]map[string]any // _id -> _source
}

func newFakeES() *fakeES {
	return &fakeES{exists: map[string]bool{}, docs: map[string]map[string]any{}}
}

func (f *fakeES) requests() []esRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]esRequest(nil), f.reqs...)
}

// termsOf returns the term filters of a bool filter or knn filter list.
func termsOf(filter []any) map[string]string {
	out := map[string]string{}
	for _, c := range filter {
		m, _ := c.(map[string]any)
		if tm, ok := m["term"].(map[string]any); ok {
			for k, v := range tm {
				s, _ := v.(string)
				out[k] = s
			}
		}
	}
	return out
}

func (f *fakeES) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reqs = append(f.reqs, esRequest{r.Method, r.URL.Path, r.URL.RawQuery, string(b)})
	w.Header().Set("X-Elastic-Product", "Elasticsearch")
	w.Header().Set("Content-Type", "application/json")
	switch {
	case r.Method == http.MethodHead:
		if !f.exists[r.URL.Path] {
			w.WriteHeader(404)
		}
	case r.Method == http.MethodPut:
		f.exists[r.URL.Path] = true
		_, _ = io.WriteString(w, `{"acknowledged":true,"shards_acknowledged":true}`)
	case strings.HasSuffix(r.URL.Path, "/_bulk"):
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		for i := 0; i+1 < len(lines); i += 2 {
			var action struct {
				Index struct {
					ID string `json:"_id"`
				} `json:"index"`
			}
			var src map[string]any
			_ = json.Unmarshal([]byte(lines[i]), &action)
			_ = json.Unmarshal([]byte(lines[i+1]), &src)
			f.docs[action.Index.ID] = src
		}
		_, _ = io.WriteString(w, `{"took":3,"errors":false,"items":[]}`)
	case strings.HasSuffix(r.URL.Path, "/_delete_by_query"):
		var q struct {
			Query struct {
				Bool struct {
					Filter []any `json:"filter"`
				} `json:"bool"`
			} `json:"query"`
		}
		_ = json.Unmarshal(b, &q)
		terms, n := termsOf(q.Query.Bool.Filter), 0
		for id, d := range f.docs {
			if d["tenant"] == terms["tenant"] && (terms["docId"] == "" || d["docId"] == terms["docId"]) {
				delete(f.docs, id)
				n++
			}
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"took": 1, "timed_out": false, "total": n, "deleted": n, "failures": []any{}})
	case r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/_doc/"):
		w.WriteHeader(404)
		_, _ = io.WriteString(w, `{"found":false}`)
	case r.Method == http.MethodPut || (r.Method == http.MethodPost && strings.Contains(r.URL.Path, "/_doc")):
		_, _ = io.WriteString(w, `{"result":"created"}`)
	case strings.HasSuffix(r.URL.Path, "/_search"):
		// The tenant's term filter, wherever the query carries it (knn.filter, or inside the rrf
		// retriever's two queries).
		var q any
		_ = json.Unmarshal(b, &q)
		tn := tenantTerm(q)
		hits := []any{}
		for id, d := range f.docs {
			if d["tenant"] == tn {
				src := map[string]any{}
				for k, v := range d {
					if k != "vector" {
						src[k] = v
					}
				}
				hits = append(hits, map[string]any{"_id": id, "_score": 0.9, "_source": src})
			}
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"took": 1, "hits": map[string]any{"hits": hits}})
	default:
		_, _ = io.WriteString(w, `{"name":"node-1","cluster_name":"test","version":{"number":"8.19.7"},"tagline":"You Know, for Search"}`)
	}
}

// TestElasticsearchGetsCiphertextAndTheDeletion: with a shared Elasticsearch index and sealing on,
// the index writer sends Elasticsearch the chunks' text sealed (never the document's words), search
// still answers with the text, and deleting the document sends the delete-by-query on its tenant
// and docId, after which search no longer finds it.
func TestElasticsearchGetsCiphertextAndTheDeletion(t *testing.T) {
	fake := newFakeES()
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	es, err := elastic.New(elastic.Config{Addresses: []string{srv.URL}, MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	f := openSealedFolder(t)
	f.index = es
	e := f.env(t, true)
	marker := uniqueMarker()
	if r := e.ingest("acme", "notes/1", "Meeting notes: "+marker+" budget approved.", nil); r.status != 200 {
		t.Fatalf("ingest: %d %s", r.status, r.raw)
	}
	q := map[string]any{"query": marker + " budget", "answer": false}
	if r := e.search("acme", q); r.status != 200 || !strings.Contains(allText(r), marker) {
		t.Fatalf("search: %d %s", r.status, r.raw)
	}
	var bulks int
	for _, r := range fake.requests() {
		if strings.Contains(r.Body, marker) || strings.Contains(r.Body, "budget approved") {
			t.Fatalf("Elasticsearch was sent the document's text: %s %s %s", r.Method, r.Path, r.Body)
		}
		if strings.HasSuffix(r.Path, "/_bulk") {
			bulks++
			if !strings.Contains(r.Body, `"text":"crispy-sealed:1:document/`) {
				t.Fatalf("bulk without sealed text: %s", r.Body)
			}
		}
	}
	if bulks == 0 {
		t.Fatal("the index writer sent no bulk request")
	}

	before := len(fake.requests())
	if r := e.do("DELETE", "/documents/notes%2F1", "beta", nil); r.status != 404 {
		t.Fatalf("beta deleting acme's document: %d %s", r.status, r.raw)
	}
	if r := e.do("DELETE", "/documents/notes%2F1", "acme", nil); r.status != 200 {
		t.Fatalf("delete: %d %s", r.status, r.raw)
	}
	var del *esRequest
	for _, r := range fake.requests()[before:] {
		if strings.HasSuffix(r.Path, "/_delete_by_query") {
			r := r
			del = &r
		}
	}
	if del == nil || del.Method != "POST" || del.Path != "/crispy-chunks-*/_delete_by_query" || del.Query != "allow_no_indices=true&conflicts=proceed&refresh=true" {
		t.Fatalf("the deletion's request %+v", del)
	}
	var body map[string]any
	_ = json.Unmarshal([]byte(del.Body), &body)
	got, _ := json.Marshal(body)
	if want := `{"query":{"bool":{"filter":[{"term":{"tenant":"acme"}},{"term":{"docId":"notes/1"}}]}}}`; string(got) != want {
		t.Fatalf("delete-by-query body %s, want %s", got, want)
	}
	if r := e.search("acme", q); r.status != 200 || strings.Contains(r.raw, marker) {
		t.Fatalf("search after the deletion: %d %s", r.status, r.raw)
	}
}

// tenantTerm finds the first {"term":{"tenant":…}} anywhere in a decoded query body.
func tenantTerm(v any) any {
	switch x := v.(type) {
	case map[string]any:
		if t, ok := x["term"].(map[string]any); ok {
			if tn, ok := t["tenant"]; ok {
				return tn
			}
		}
		for _, c := range x {
			if tn := tenantTerm(c); tn != nil {
				return tn
			}
		}
	case []any:
		for _, c := range x {
			if tn := tenantTerm(c); tn != nil {
				return tn
			}
		}
	}
	return nil
}
