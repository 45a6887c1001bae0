package embedded_test

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/crispy-enigma/crispy/platform/search"
	"github.com/crispy-enigma/crispy/platform/search/embedded"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// The vectors of a document's chunks come back by their embed keys, from memory and after a
// reopen; a deleted document's do not, another tenant's never, chunks without a key are left out.
func TestVectorsByEmbedKey(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a, b := tenant.MustParse("acme"), tenant.MustParse("globex")
	cfg := embedded.Config{Dir: dir}
	ix, err := embedded.Open(cfg)
	must(t, err)
	r := rand.New(rand.NewPCG(81, 82))
	cs := randomChunks(r, 6, 16)
	for i := range cs {
		cs[i].DocID, cs[i].ChunkID = "guide", "guide#"+itoa(i)
		if i < 5 {
			cs[i].EmbedKey = "k" + itoa(i)
		}
	}
	must(t, ix.Upsert(ctx, a, cs))
	other := randomChunks(r, 3, 16)
	for i := range other {
		other[i].DocID, other[i].ChunkID, other[i].EmbedKey = "notes", "notes#"+itoa(i), "n"+itoa(i)
	}
	must(t, ix.Upsert(ctx, a, other))
	check := func(ix *embedded.Index, when string) {
		t.Helper()
		got, err := ix.Vectors(ctx, a, "guide")
		must(t, err)
		if len(got) != 5 {
			t.Fatalf("%s: %d vectors, want the 5 chunks with a key", when, len(got))
		}
		for i := range 5 {
			v := got["k"+itoa(i)]
			if len(v) != 16 || dot32(v, unit(cs[i].Vector)) < 0.9999 {
				t.Fatalf("%s: vector of k%d differs from the one written", when, i)
			}
		}
		if got, err := ix.Vectors(ctx, b, "guide"); err != nil || len(got) != 0 {
			t.Fatalf("%s: another tenant's vectors %v %v", when, got, err)
		}
	}
	check(ix, "in memory")
	must(t, ix.Close())
	ix2, err := embedded.Open(cfg)
	must(t, err)
	defer ix2.Close()
	check(ix2, "after a reopen")
	must(t, ix2.DeleteDoc(ctx, a, "guide"))
	if got, err := ix2.Vectors(ctx, a, "guide"); err != nil || len(got) != 0 {
		t.Fatalf("a deleted document's vectors %v %v", got, err)
	}
	if got, err := ix2.Vectors(ctx, a, "notes"); err != nil || len(got) != 3 {
		t.Fatalf("another document's vectors after the delete: %d %v", len(got), err)
	}
	hits, err := ix2.Search(ctx, a, search.Query{Vector: other[1].Vector, K: 1, MinScore: -1})
	must(t, err)
	if len(hits) != 1 || hits[0].EmbedKey != "n1" {
		t.Fatalf("a hit's embed key: %+v", hits)
	}
}

func dot32(a, b []float32) float32 {
	var s float32
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

func unit(v []float32) []float32 {
	var n float32
	for _, x := range v {
		n += x * x
	}
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = x / float32(math.Sqrt(float64(n)))
	}
	return out
}
