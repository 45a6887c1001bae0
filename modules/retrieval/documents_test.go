package retrieval_test

import (
	"net/url"
	"strings"
	"testing"
)

// Issue 16 item 4: GET /documents pages through the tenant's documents with their status, chunks,
// content hash and model; GET /documents/{docId} shows one; another tenant sees none of them.
func TestListAndGetDocumentsPerTenant(t *testing.T) {
	t.Parallel()
	e := newEnv(t, opts{})
	e.ingest("acme", "handbook/vacation.md", vacation, map[string]any{"title": "Vacation policy", "source": "handbook"})
	e.mustIngest("acme", "parking", parking)
	e.mustIngest("acme", "zephyr", secretA)
	e.mustIngest("beta", "notes", notesB)
	if d := e.do("DELETE", "/documents/zephyr", "acme", nil); d.status != 200 {
		t.Fatalf("delete: %d %s", d.status, d.raw)
	}

	r := e.do("GET", "/documents?limit=1", "acme", nil)
	docs, _ := r.body["documents"].([]any)
	if r.status != 200 || len(docs) != 1 || r.body["nextCursor"] != "handbook/vacation.md" {
		t.Fatalf("first page: %d %s", r.status, r.raw)
	}
	d := docs[0].(map[string]any)
	if d["id"] != "handbook/vacation.md" || d["title"] != "Vacation policy" || d["source"] != "handbook" || d["status"] != "indexed" ||
		d["chunks"] != 1.0 || !strings.HasPrefix(d["contentHash"].(string), "sha256:") || d["embeddingModel"] != "builtin:hashed-ngram" || d["updated"] == "" {
		t.Fatalf("document %v", d)
	}
	r = e.do("GET", "/documents?limit=1&cursor="+url.QueryEscape("handbook/vacation.md"), "acme", nil)
	docs, _ = r.body["documents"].([]any)
	if len(docs) != 1 || docs[0].(map[string]any)["id"] != "parking" || r.body["nextCursor"] != nil {
		t.Fatalf("second page (the deleted document is not listed): %s", r.raw)
	}
	if g := e.do("GET", "/documents/"+url.PathEscape("handbook/vacation.md"), "acme", nil); g.status != 200 || g.body["id"] != "handbook/vacation.md" || g.body["chunks"] != 1.0 {
		t.Fatalf("get: %d %s", g.status, g.raw)
	}
	if g := e.do("GET", "/documents/zephyr", "acme", nil); g.status != 404 {
		t.Fatalf("a deleted document: %d %s", g.status, g.raw)
	}
	// Tenant beta lists only its own and cannot read acme's.
	r = e.do("GET", "/documents", "beta", nil)
	if docs, _ := r.body["documents"].([]any); len(docs) != 1 || docs[0].(map[string]any)["id"] != "notes" {
		t.Fatalf("beta's list: %s", r.raw)
	}
	if g := e.do("GET", "/documents/parking", "beta", nil); g.status != 404 || strings.Contains(g.raw, "garage") {
		t.Fatalf("beta reading acme's document: %d %s", g.status, g.raw)
	}
	if g := e.do("GET", "/documents?limit=1000", "acme", nil); g.status != 422 && g.status != 400 {
		t.Fatalf("limit over the maximum: %d %s", g.status, g.raw)
	}
}
