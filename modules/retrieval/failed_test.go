package retrieval_test

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/crispy-enigma/crispy/platform/ai/embeddings"
)

// downEmbedder is a provider's embeddings model that fails while down is set, as an unreachable
// provider does.
type downEmbedder struct{ down atomic.Bool }

func (d *downEmbedder) Embed(_ context.Context, texts []string) ([][]float32, error) {
	if d.down.Load() {
		return nil, fmt.Errorf("provider: %w: HTTP 503", embeddings.ErrUnavailable)
	}
	out := make([][]float32, len(texts))
	for i, t := range texts {
		out[i] = []float32{1, float32(len(t) % 7), 0.5}
	}
	return out, nil
}
func (d *downEmbedder) Model() string  { return "fake:emb" }
func (d *downEmbedder) Dimension() int { return 3 }

// A document whose ingest was accepted but could not be embedded shows as failed, with the
// reason, in GET /documents and /documents/{docId} (issue 16 item 4), for its tenant only; the
// version before it stays searchable; an ingest that succeeds (the retry) makes it indexed again,
// and DELETE drops a document that never got indexed. A request refused for its own fault (422)
// records no failure.
func TestFailedIngestShowsUntilRetried(t *testing.T) {
	t.Parallel()
	emb := &downEmbedder{}
	e := newEnv(t, opts{embedders: oneEmbedder{emb}})
	e.mustIngest("acme", "vac", vacation)
	e.mustIngest("beta", "notes", notesB)

	emb.down.Store(true)
	if r := e.ingest("acme", "vac", vacation+" Updated: thirty days.", nil); r.status != 503 {
		t.Fatalf("re-ingest while the provider is down: %d %s", r.status, r.raw)
	}
	if r := e.ingest("acme", "fresh", parking, nil); r.status != 503 {
		t.Fatalf("new document while the provider is down: %d %s", r.status, r.raw)
	}
	if r := e.upload("acme", "memo.txt", []byte("The memo says the garage closes early on Fridays."), nil); r.status != 503 {
		t.Fatalf("upload while the provider is down: %d %s", r.status, r.raw)
	}
	if r := e.ingest("acme", "bad", vacation, map[string]any{"chunking": map[string]any{"maxChunkSize": 5}}); r.status != 422 {
		t.Fatalf("invalid chunking: %d %s", r.status, r.raw)
	}

	g := e.do("GET", "/documents/vac", "acme", nil)
	if g.status != 200 || g.body["status"] != "failed" || !strings.Contains(fmt.Sprint(g.body["reason"]), "embeddingsUnavailable") || g.body["chunks"] != 1.0 {
		t.Fatalf("vac after a failed re-ingest: %d %s", g.status, g.raw)
	}
	list := e.do("GET", "/documents", "acme", nil)
	status := map[string]string{}
	for _, d := range list.body["documents"].([]any) {
		m := d.(map[string]any)
		status[m["id"].(string)] = fmt.Sprint(m["status"])
	}
	if len(status) != 3 || status["vac"] != "failed" || status["fresh"] != "failed" || status["memo.txt"] != "failed" {
		t.Fatalf("acme's list: %s (bad, refused with 422, must not be listed)", list.raw)
	}
	if f := e.do("GET", "/documents/fresh", "acme", nil); f.body["status"] != "failed" || f.body["chunks"] != 0.0 {
		t.Fatalf("fresh: %s", f.raw)
	}
	if b := e.do("GET", "/documents", "beta", nil); strings.Contains(b.raw, "failed") || strings.Contains(b.raw, "fresh") {
		t.Fatalf("beta's list shows acme's failures: %s", b.raw)
	}
	if b := e.do("GET", "/documents/fresh", "beta", nil); b.status != 404 {
		t.Fatalf("beta reads acme's failed document: %d %s", b.status, b.raw)
	}

	// The version before the failure is still searchable (searching embeds too: back up first).
	emb.down.Store(false)
	if r := e.search("acme", map[string]any{"query": "vacation days", "answer": false}); len(sources(r)) == 0 || strings.Contains(allText(r), "thirty") {
		t.Fatalf("search after the failure: %s", r.raw)
	}
	// The retry.
	e.mustIngest("acme", "vac", vacation+" Updated: thirty days.")
	if r := e.upload("acme", "memo.txt", []byte("The memo says the garage closes early on Fridays."), nil); r.status != 200 {
		t.Fatalf("upload retry: %d %s", r.status, r.raw)
	}
	for _, id := range []string{"vac", "memo.txt"} {
		if g := e.do("GET", "/documents/"+url.PathEscape(id), "acme", nil); g.body["status"] != "indexed" || g.body["reason"] != nil {
			t.Fatalf("%s after the retry: %s", id, g.raw)
		}
	}
	if d := e.do("DELETE", "/documents/fresh", "acme", nil); d.status != 200 {
		t.Fatalf("delete a document that never got indexed: %d %s", d.status, d.raw)
	}
	if g := e.do("GET", "/documents/fresh", "acme", nil); g.status != 404 {
		t.Fatalf("fresh after its deletion: %d %s", g.status, g.raw)
	}
	if d := e.do("DELETE", "/documents/fresh", "acme", nil); d.status != 404 {
		t.Fatalf("a second delete: %d %s", d.status, d.raw)
	}
	if l := e.do("GET", "/documents", "acme", nil); strings.Contains(l.raw, "failed") || strings.Contains(l.raw, "fresh") {
		t.Fatalf("acme's list after the retries: %s", l.raw)
	}
}
