// Package searchtest is the acceptance suite every search.Index implementation runs.
package searchtest

import (
	"context"
	"fmt"
	"testing"

	"github.com/crispy-enigma/crispy/platform/search"
	"github.com/crispy-enigma/crispy/platform/search/lexical"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// Run runs the suite; newIndex returns a fresh, empty index for each subtest (and closes it with
// t.Cleanup).
func Run(t *testing.T, newIndex func(t *testing.T) search.Index) {
	ctx := context.Background()
	a, b := tenant.MustParse("tenant-a"), tenant.MustParse("tenant-b")

	t.Run("NearestFirst", func(t *testing.T) {
		ix := newIndex(t)
		must(t, ix.Upsert(ctx, a, []search.Chunk{
			chunk("doc1", 0, "north", vec(1, 0, 0, 0)),
			chunk("doc1", 1, "north-east", vec(1, 1, 0, 0)),
			chunk("doc2", 0, "east", vec(0, 1, 0, 0)),
			chunk("doc2", 1, "south", vec(0, 0, 1, 0)),
		}))
		hits, err := ix.Search(ctx, a, search.Query{Vector: vec(0.9, 0.1, 0, 0), K: 3, MinScore: -1})
		must(t, err)
		if got := texts(hits); len(got) != 3 || got[0] != "north" || got[1] != "north-east" || got[2] != "east" {
			t.Fatalf("hits %v, want [north north-east east]", got)
		}
		if hits[0].Score < 0.99 || hits[0].Score > 1.0001 || hits[0].DocID != "doc1" || hits[0].ChunkID != "doc1#0" {
			t.Fatalf("first hit %+v: want cosine ~0.994 on doc1#0", hits[0])
		}
		if hits[0].Title != "Title doc1" || hits[0].Source != "src" || hits[0].URL != "https://example.test/doc1" || hits[0].Metadata["lang"] != "en" {
			t.Fatalf("fields lost: %+v", hits[0].Chunk)
		}
		n, err := ix.Count(ctx, a)
		must(t, err)
		if n != 4 {
			t.Fatalf("count %d, want 4", n)
		}
	})

	t.Run("TenantIsolationWithSameDocID", func(t *testing.T) {
		ix := newIndex(t)
		must(t, ix.Upsert(ctx, a, []search.Chunk{chunk("shared", 0, "secret of A", vec(1, 0, 0, 0))}))
		must(t, ix.Upsert(ctx, b, []search.Chunk{chunk("shared", 0, "notes of B", vec(0, 1, 0, 0))}))
		// B searches with A's exact vector: it must still only get its own chunk.
		hits, err := ix.Search(ctx, b, search.Query{Vector: vec(1, 0, 0, 0), K: 10, MinScore: -1})
		must(t, err)
		if got := texts(hits); len(got) != 1 || got[0] != "notes of B" {
			t.Fatalf("tenant B saw %v", got)
		}
		// Deleting the docId in B leaves A's document alone.
		must(t, ix.DeleteDoc(ctx, b, "shared"))
		hits, err = ix.Search(ctx, a, search.Query{Vector: vec(1, 0, 0, 0), K: 10, MinScore: -1})
		must(t, err)
		if got := texts(hits); len(got) != 1 || got[0] != "secret of A" {
			t.Fatalf("tenant A after B's delete: %v", got)
		}
		if n, _ := ix.Count(ctx, b); n != 0 {
			t.Fatalf("B count %d after delete", n)
		}
		// Re-ingesting the same chunk id in B does not touch A's.
		must(t, ix.Upsert(ctx, b, []search.Chunk{chunk("shared", 0, "new notes of B", vec(0, 1, 0, 0))}))
		hits, _ = ix.Search(ctx, a, search.Query{Vector: vec(0, 1, 0, 0), K: 10, MinScore: -1})
		if got := texts(hits); len(got) != 1 || got[0] != "secret of A" {
			t.Fatalf("tenant A after B's re-ingest: %v", got)
		}
		// Dropping B's whole index leaves A's.
		must(t, ix.DeleteTenant(ctx, b))
		if n, _ := ix.Count(ctx, a); n != 1 {
			t.Fatalf("A count %d after B's DeleteTenant", n)
		}
		hits, _ = ix.Search(ctx, b, search.Query{Vector: vec(1, 0, 0, 0), K: 10, MinScore: -1})
		if len(hits) != 0 {
			t.Fatalf("B after DeleteTenant: %v", texts(hits))
		}
	})

	t.Run("UpsertReplacesChunkID", func(t *testing.T) {
		ix := newIndex(t)
		must(t, ix.Upsert(ctx, a, []search.Chunk{chunk("d", 0, "old", vec(1, 0, 0, 0))}))
		must(t, ix.Upsert(ctx, a, []search.Chunk{chunk("d", 0, "new", vec(0, 1, 0, 0))}))
		hits, err := ix.Search(ctx, a, search.Query{Vector: vec(1, 0, 0, 0), K: 10, MinScore: -1})
		must(t, err)
		if got := texts(hits); len(got) != 1 || got[0] != "new" {
			t.Fatalf("hits %v, want only the replacement", got)
		}
	})

	t.Run("FiltersAndMinScore", func(t *testing.T) {
		ix := newIndex(t)
		c1 := chunk("d1", 0, "en one", vec(1, 0, 0, 0))
		c2 := chunk("d2", 0, "fr two", vec(1, 0.1, 0, 0))
		c2.Metadata = map[string]string{"lang": "fr"}
		c3 := chunk("d3", 0, "en three", vec(0, 0, 0, 1))
		must(t, ix.Upsert(ctx, a, []search.Chunk{c1, c2, c3}))
		hits, _ := ix.Search(ctx, a, search.Query{Vector: vec(1, 0, 0, 0), K: 10, MinScore: -1, Filter: search.Filter{Metadata: map[string]string{"lang": "fr"}}})
		if got := texts(hits); len(got) != 1 || got[0] != "fr two" {
			t.Fatalf("metadata filter: %v", got)
		}
		hits, _ = ix.Search(ctx, a, search.Query{Vector: vec(1, 0, 0, 0), K: 10, MinScore: -1, Filter: search.Filter{DocIDs: []string{"d3", "d2"}}})
		if got := texts(hits); len(got) != 2 || got[0] != "fr two" || got[1] != "en three" {
			t.Fatalf("docId filter: %v", got)
		}
		hits, _ = ix.Search(ctx, a, search.Query{Vector: vec(1, 0, 0, 0), K: 10, MinScore: 0.5})
		if got := texts(hits); len(got) != 2 {
			t.Fatalf("minScore 0.5: %v (the orthogonal chunk scores 0)", got)
		}
		hits, _ = ix.Search(ctx, a, search.Query{Vector: vec(1, 0, 0, 0), K: 1, MinScore: -1})
		if len(hits) != 1 {
			t.Fatalf("k=1 gave %d hits", len(hits))
		}
	})

	t.Run("EmptyAndUnknown", func(t *testing.T) {
		ix := newIndex(t)
		hits, err := ix.Search(ctx, a, search.Query{Vector: vec(1, 0, 0, 0), K: 5, MinScore: -1})
		if err != nil || len(hits) != 0 {
			t.Fatalf("empty tenant: %v %v", hits, err)
		}
		must(t, ix.DeleteDoc(ctx, a, "nothing"))
		if n, err := ix.Count(ctx, a); err != nil || n != 0 {
			t.Fatalf("count %d %v", n, err)
		}
	})

	t.Run("CheckpointsPerTenant", func(t *testing.T) {
		ix := newIndex(t)
		for _, tn := range []tenant.ID{a, b} {
			if cp, err := ix.Checkpoint(ctx, tn); err != nil || cp != 0 {
				t.Fatalf("a new tenant's checkpoint: %d %v, want 0", cp, err)
			}
		}
		must(t, ix.Upsert(ctx, a, []search.Chunk{chunk("d", 0, "x", vec(1, 0, 0, 0))}))
		must(t, ix.SetCheckpoint(ctx, a, 42))
		must(t, ix.SetCheckpoint(ctx, b, 7)) // a tenant without chunks has a place in the log too
		if cp, err := ix.Checkpoint(ctx, a); err != nil || cp != 42 {
			t.Fatalf("a's checkpoint %d %v, want 42", cp, err)
		}
		if cp, _ := ix.Checkpoint(ctx, b); cp != 7 {
			t.Fatalf("b's checkpoint %d, want 7", cp)
		}
		if n, _ := ix.Count(ctx, b); n != 0 {
			t.Fatalf("a checkpoint is not a chunk: b counts %d", n)
		}
		if hits, _ := ix.Search(ctx, b, search.Query{Vector: vec(1, 0, 0, 0), K: 5, MinScore: -1}); len(hits) != 0 {
			t.Fatalf("a checkpoint is not a hit: %v", texts(hits))
		}
		// DeleteTenant starts a rebuild: content and checkpoint go, the other tenant's stay.
		must(t, ix.DeleteTenant(ctx, a))
		if cp, _ := ix.Checkpoint(ctx, a); cp != 0 {
			t.Fatalf("a's checkpoint after DeleteTenant %d, want 0", cp)
		}
		if cp, _ := ix.Checkpoint(ctx, b); cp != 7 {
			t.Fatalf("b's checkpoint after a's DeleteTenant %d, want 7", cp)
		}
	})

	t.Run("CheckWrite", func(t *testing.T) {
		ix := newIndex(t)
		must(t, ix.CheckWrite(ctx, a, 4))
		must(t, ix.Upsert(ctx, a, []search.Chunk{chunk("d", 0, "x", vec(1, 0, 0, 0))}))
		must(t, ix.CheckWrite(ctx, a, 4))
		must(t, ix.CheckWrite(ctx, a, 0))
		must(t, ix.CheckWrite(ctx, b, 8))
	})

	t.Run("LexicalModes", func(t *testing.T) {
		ix := newIndex(t)
		must(t, ix.Upsert(ctx, a, []search.Chunk{
			chunk("pump", 0, "The pumps were inspected weekly by the engineers", vec(1, 0, 0, 0)),
			chunk("wing", 0, "Wing flutter at supersonic speeds", vec(0, 1, 0, 0)),
			chunk("misc", 0, "Notes about the cafeteria menu", vec(0.9, 0.1, 0, 0)),
		}))
		// Lexical: the stemmer meets "pumping engineer" with "pumps ... engineers"; the vector is ignored.
		q := search.Query{Mode: search.ModeLexical, Terms: lexical.Analyze("pumping engineer"), Text: "pumping engineer", K: 5, MinScore: -1}
		hits, err := ix.Search(ctx, a, q)
		must(t, err)
		if got := texts(hits); len(got) != 1 || got[0] != "The pumps were inspected weekly by the engineers" {
			t.Fatalf("lexical hits %v, want only the pumps", got)
		}
		if hits[0].Score <= 0 || hits[0].LexicalScore != hits[0].Score {
			t.Fatalf("lexical score %v (lexical %v): want the BM25 as both", hits[0].Score, hits[0].LexicalScore)
		}
		// Hybrid: the lexical match and the nearest vectors are both found; the chunk both halves
		// rank first ("wing": first by vector, the only lexical match) comes first.
		q = search.Query{Mode: search.ModeHybrid, Vector: vec(0, 1, 0, 0), Terms: lexical.Analyze("supersonic flutter"), Text: "supersonic flutter", K: 3, MinScore: -1}
		hits, err = ix.Search(ctx, a, q)
		must(t, err)
		if len(hits) == 0 || hits[0].DocID != "wing" || hits[0].VectorScore < 0.99 {
			t.Fatalf("hybrid hits %+v: want wing first with its cosine", hits)
		}
		for i := 1; i < len(hits); i++ {
			if hits[i].Score > hits[i-1].Score {
				t.Fatalf("hybrid hits not sorted: %v", hits)
			}
		}
		// A filter holds in the lexical half too.
		q = search.Query{Mode: search.ModeLexical, Terms: lexical.Analyze("pumps wing"), K: 5, MinScore: -1, Filter: search.Filter{DocIDs: []string{"wing"}}}
		hits, err = ix.Search(ctx, a, q)
		must(t, err)
		if got := texts(hits); len(got) != 1 || got[0] != "Wing flutter at supersonic speeds" {
			t.Fatalf("filtered lexical hits %v", got)
		}
		// A deleted document's words no longer match.
		must(t, ix.DeleteDoc(ctx, a, "pump"))
		hits, err = ix.Search(ctx, a, search.Query{Mode: search.ModeLexical, Terms: lexical.Analyze("pumps"), K: 5, MinScore: -1})
		must(t, err)
		if len(hits) != 0 {
			t.Fatalf("deleted document found by its words: %v", texts(hits))
		}
	})

	t.Run("LexicalTenantIsolation", func(t *testing.T) {
		ix := newIndex(t)
		must(t, ix.Upsert(ctx, a, []search.Chunk{chunk("plan", 0, "Acquisition of Zephyrcorp in March", vec(1, 0, 0, 0))}))
		must(t, ix.Upsert(ctx, b, []search.Chunk{chunk("plan", 0, "Quarterly picnic", vec(1, 0, 0, 0))}))
		for _, mode := range []search.Mode{search.ModeLexical, search.ModeHybrid} {
			hits, err := ix.Search(ctx, b, search.Query{Mode: mode, Vector: vec(1, 0, 0, 0), Terms: lexical.Analyze("zephyrcorp acquisition"),
				Text: "zephyrcorp acquisition", K: 10, MinScore: -1})
			must(t, err)
			for _, h := range hits {
				if h.Text != "Quarterly picnic" {
					t.Fatalf("%s: tenant B found A's chunk %q", mode, h.Text)
				}
			}
		}
	})

	t.Run("ManyChunks", func(t *testing.T) {
		ix := newIndex(t)
		var cs []search.Chunk
		for i := range 300 {
			v := make([]float32, 4)
			v[i%4] = 1
			v[(i+1)%4] = float32(i) / 300
			cs = append(cs, chunk(fmt.Sprintf("doc%d", i/10), i%10, fmt.Sprintf("t%d", i), v))
		}
		must(t, ix.Upsert(ctx, a, cs))
		if n, _ := ix.Count(ctx, a); n != 300 {
			t.Fatalf("count %d", n)
		}
		must(t, ix.DeleteDoc(ctx, a, "doc7"))
		if n, _ := ix.Count(ctx, a); n != 290 {
			t.Fatalf("count after delete %d, want 290", n)
		}
		hits, _ := ix.Search(ctx, a, search.Query{Vector: vec(1, 0.25, 0, 0), K: 50, MinScore: -1})
		if len(hits) != 50 {
			t.Fatalf("%d hits, want 50", len(hits))
		}
		for i, h := range hits {
			if h.DocID == "doc7" {
				t.Fatal("deleted document returned")
			}
			if i > 0 && h.Score > hits[i-1].Score+1e-6 {
				t.Fatalf("hits not sorted at %d", i)
			}
		}
	})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func vec(x ...float32) []float32 { return x }

func chunk(doc string, n int, text string, v []float32) search.Chunk {
	return search.Chunk{DocID: doc, ChunkID: fmt.Sprintf("%s#%d", doc, n), Text: text, Title: "Title " + doc, Source: "src",
		URL: "https://example.test/" + doc, Metadata: map[string]string{"lang": "en"}, Vector: v, Terms: lexical.Analyze(text)}
}

func texts(hs []search.Hit) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = h.Text
	}
	return out
}
