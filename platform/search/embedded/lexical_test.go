package embedded_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/crispy-enigma/crispy/platform/erasuretest"
	"github.com/crispy-enigma/crispy/platform/search"
	"github.com/crispy-enigma/crispy/platform/search/embedded"
	"github.com/crispy-enigma/crispy/platform/search/lexical"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// The lexical half is persisted with the vectors: after a close and reopen (and after a compaction
// rewrote the files) a word search finds the same chunks, per tenant, and the files hold term
// hashes, never the words.
func TestLexicalHalfSurvivesReopenAndCompactionPerTenant(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a, b := tenant.MustParse("acme"), tenant.MustParse("beta")
	r := rand.New(rand.NewPCG(5, 6))
	ix, err := embedded.Open(embedded.Config{Dir: dir})
	must(t, err)
	cs := randomChunks(r, 1200, 8)
	for i := range cs {
		cs[i].DocID, cs[i].ChunkID = fmt.Sprintf("d%d", i), fmt.Sprintf("d%d#0", i)
		cs[i].Text = fmt.Sprintf("routine entry %d about nothing", i)
		if i == 1100 {
			cs[i].Text = "the hypersonic XYLOPHONIST reports"
		}
		cs[i].Terms = lexical.Analyze(cs[i].Text)
	}
	must(t, ix.Upsert(ctx, a, cs))
	must(t, ix.Upsert(ctx, b, []search.Chunk{{DocID: "x", ChunkID: "x#0", Text: "beta only", Vector: cs[0].Vector, Terms: lexical.Analyze("beta only")}}))
	must(t, ix.Close())
	if f := erasuretest.FilesHolding(t, dir, []byte("xylophonist")); len(f) > 0 {
		t.Fatalf("a word is readable in %v: the files must hold hashes only", f)
	}
	find := func(ix *embedded.Index, tn tenant.ID, q string) []search.Hit {
		t.Helper()
		hits, err := ix.Search(ctx, tn, search.Query{Mode: search.ModeLexical, Terms: lexical.Analyze(q), K: 5, MinScore: -1})
		must(t, err)
		return hits
	}
	ix, err = embedded.Open(embedded.Config{Dir: dir})
	must(t, err)
	if hits := find(ix, a, "xylophonists"); len(hits) != 1 || hits[0].ChunkID != "d1100#0" {
		t.Fatalf("after reopen: %+v", hits)
	}
	if hits := find(ix, b, "xylophonists"); len(hits) != 0 {
		t.Fatalf("tenant B found A's word: %+v", hits)
	}
	// Delete most documents: a compaction rewrites the partition with the survivors' terms.
	for i := range 1000 {
		must(t, ix.DeleteDoc(ctx, a, fmt.Sprintf("d%d", i)))
	}
	must(t, ix.Close())
	ix, err = embedded.Open(embedded.Config{Dir: dir})
	must(t, err)
	defer ix.Close()
	if n, _ := ix.Count(ctx, a); n != 200 {
		t.Fatalf("count %d, want 200", n)
	}
	if hits := find(ix, a, "hypersonic"); len(hits) != 1 || !strings.Contains(hits[0].Text, "XYLOPHONIST") {
		t.Fatalf("after compaction and reopen: %+v", hits)
	}
	if hits := find(ix, a, "routine entry 5"); len(hits) != 5 || hits[0].LexicalScore <= 0 {
		t.Fatalf("common words: %+v", hits)
	}
}
