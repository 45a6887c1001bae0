package retrieval_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/crispy-enigma/crispy/platform/ai/embeddings"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/search/embedded"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// textCounter is the offline embedder counting the texts it was asked to embed (each one a paid
// input with a hosted model).
type textCounter struct {
	mu    sync.Mutex
	texts []string
}

func (e *textCounter) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	e.mu.Lock()
	e.texts = append(e.texts, texts...)
	e.mu.Unlock()
	return embeddings.NewHashed(embeddings.HashedConfig{}).Embed(ctx, texts)
}
func (e *textCounter) Model() string                               { return embeddings.HashedModelID }
func (e *textCounter) Dimension() int                              { return 384 }
func (e *textCounter) Resolve(string) (embeddings.Embedder, error) { return e, nil }

func (e *textCounter) take() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := e.texts
	e.texts = nil
	return out
}

// paragraphs is a document of n ~300-character paragraphs, the k-th changed when k == changed.
func paragraphs(n, changed int) string {
	var sb strings.Builder
	for k := range n {
		word := "steady"
		if k == changed {
			word = "edited"
		}
		sb.WriteString("Paragraph " + string(rune('a'+k)) + " " + word + ": " + strings.Repeat("the handbook explains the travel policy in plain words ", 5) + "\n\n")
	}
	return sb.String()
}

// A re-ingest embeds only the chunks whose text changed: the index hands back the vectors it holds
// for the document's unchanged chunks (kept with their embed keys, across a restart too). The same
// document in another tenant is embedded whole: vectors are never reused across tenants. The
// answers are those of a full embedding.
func TestReingestEmbedsOnlyChangedChunks(t *testing.T) {
	t.Parallel()
	store := eventstoretest.NewMemory()
	dir := t.TempDir()
	acme, globex := tenant.MustParse("acme"), tenant.MustParse("globex")
	emb := &textCounter{}
	ix := openIndex(t, dir)
	n := startNode(t, store, ix, emb, true, acme, globex)
	n.waitReady("acme")
	emb.take() // waitReady's search embedded its query
	chunking := map[string]any{"maxChunkSize": 400, "overlap": 0}
	ingest := func(n *node, tn, text string) {
		t.Helper()
		if r, _ := n.do("POST", "/ingest", tn, map[string]any{"docId": "guide", "text": text, "chunking": chunking}); r.status != 200 {
			t.Fatalf("ingest as %s: %d %s", tn, r.status, r.raw)
		}
	}
	ingest(n, "acme", paragraphs(6, -1))
	first := emb.take()
	if len(first) < 4 {
		t.Fatalf("first ingest embedded %d texts, want one per chunk (at least 4)", len(first))
	}
	ingest(n, "acme", paragraphs(6, 2))
	second := emb.take()
	if len(second) != 1 || !strings.Contains(second[0], "edited") {
		t.Fatalf("re-ingest with one paragraph changed embedded %d texts %q, want only the changed chunk", len(second), second)
	}
	ingest(n, "globex", paragraphs(6, 2))
	if other := emb.take(); len(other) != len(first) {
		t.Fatalf("the same document in another tenant embedded %d texts, want all %d", len(other), len(first))
	}
	hits, _ := n.find("acme", "guide", "Paragraph edited travel policy")
	if hits.status != 200 || !strings.Contains(hits.raw, "edited") {
		t.Fatalf("search after the partial re-embedding: %d %s", hits.status, hits.raw)
	}

	// After a restart on the same index files, the vectors are still there to reuse.
	if err := ix.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	n.stop()
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}
	ix2 := openIndex(t, dir)
	defer ix2.Close()
	n2 := startNode(t, store, ix2, emb, true, acme, globex)
	n2.waitReady("acme")
	emb.take()
	ingest(n2, "acme", paragraphs(6, 4))
	third := emb.take()
	if len(third) != 2 {
		t.Fatalf("re-ingest after a restart embedded %d texts %q, want the two chunks that differ from the last revision", len(third), third)
	}
}

// Without a VectorSource (an index that keeps no vectors to hand back) everything is embedded, as
// before.
func TestReingestWithoutVectorSourceEmbedsAll(t *testing.T) {
	t.Parallel()
	store := eventstoretest.NewMemory()
	acme := tenant.MustParse("acme")
	emb := &textCounter{}
	ix, _ := embedded.Open(embedded.Config{})
	n := startNode(t, store, &flakyIndex{Index: ix}, emb, true, acme)
	n.waitReady("acme")
	emb.take()
	for range 2 {
		if r, _ := n.do("POST", "/ingest", "acme", map[string]any{"docId": "guide", "text": paragraphs(4, -1), "chunking": map[string]any{"maxChunkSize": 400, "overlap": 0}}); r.status != 200 {
			t.Fatalf("ingest: %d %s", r.status, r.raw)
		}
		if got := emb.take(); len(got) < 3 {
			t.Fatalf("embedded %d texts, want every chunk", len(got))
		}
	}
}
