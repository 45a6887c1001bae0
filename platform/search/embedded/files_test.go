package embedded_test

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crispy-enigma/crispy/platform/search"
	"github.com/crispy-enigma/crispy/platform/search/embedded"
	"github.com/crispy-enigma/crispy/platform/tenant"

	"github.com/crispy-enigma/crispy/platform/erasuretest"
)

// A deleted document's chunks are not returned, and their text is not left readable in the index's
// files: neither after DeleteDoc nor for a chunk replaced by a newer version; nor after a compaction.
func TestDeletedTextIsErasedFromFiles(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a := tenant.MustParse("acme")
	ix, err := embedded.Open(embedded.Config{Dir: dir})
	must(t, err)
	r := rand.New(rand.NewPCG(9, 9))
	cs := randomChunks(r, 3, 8)
	cs[0].DocID, cs[0].ChunkID, cs[0].Text = "secret", "secret#0", "the launch code is SWORDFISH-0"
	cs[1].DocID, cs[1].ChunkID, cs[1].Text = "secret", "secret#1", "the vault opens with OCTOPUS-1"
	cs[2].DocID, cs[2].ChunkID, cs[2].Text = "kept", "kept#0", "public notes KEPT-2"
	must(t, ix.Upsert(ctx, a, cs))
	must(t, ix.Flush(ctx))
	if len(erasuretest.FilesHolding(t, dir, []byte("SWORDFISH-0"))) == 0 {
		t.Fatal("the test cannot fail: the text was never in the files")
	}
	// A new version of kept#0 replaces the old text.
	must(t, ix.Upsert(ctx, a, []search.Chunk{{DocID: "kept", ChunkID: "kept#0", Text: "revised notes REVISED-3", Vector: cs[2].Vector}}))
	must(t, ix.DeleteDoc(ctx, a, "secret"))
	must(t, ix.Close())
	for _, gone := range []string{"SWORDFISH-0", "OCTOPUS-1", "KEPT-2"} {
		if f := erasuretest.FilesHolding(t, dir, []byte(gone)); len(f) > 0 {
			t.Errorf("%s still in %v", gone, f)
		}
	}
	ix2, err := embedded.Open(embedded.Config{Dir: dir})
	must(t, err)
	defer ix2.Close()
	hits, err := ix2.Search(ctx, a, search.Query{Vector: cs[0].Vector, K: 10, MinScore: -1})
	must(t, err)
	if len(hits) != 1 || hits[0].ChunkID != "kept#0" || hits[0].Text != "revised notes REVISED-3" {
		t.Fatalf("after delete and reopen: %+v", hits)
	}
}

// Tenant isolation holds across a reopen from the files: tenant B, searching with A's exact vectors
// and the same document ids, gets only its own chunks; deleting B's document leaves A's.
func TestTenantIsolationAfterReopen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a, b := tenant.MustParse("acme"), tenant.MustParse("beta")
	r := rand.New(rand.NewPCG(21, 22))
	ca, cb := randomChunks(r, 3000, 16), randomChunks(r, 3000, 16) // above ExactBelow: the graph path
	for i := range ca {
		ca[i].Text, cb[i].Text = "A-"+ca[i].Text, "B-"+cb[i].Text
	}
	ix, err := embedded.Open(embedded.Config{Dir: dir})
	must(t, err)
	must(t, ix.Upsert(ctx, a, ca))
	must(t, ix.Upsert(ctx, b, cb))
	must(t, ix.Close())
	ix2, err := embedded.Open(embedded.Config{Dir: dir})
	must(t, err)
	defer ix2.Close()
	for i := 0; i < len(ca); i += 97 {
		hits, err := ix2.Search(ctx, b, search.Query{Vector: ca[i].Vector, K: 10, MinScore: -1})
		must(t, err)
		if len(hits) != 10 {
			t.Fatalf("B got %d hits", len(hits))
		}
		for _, h := range hits {
			if !strings.HasPrefix(h.Text, "B-") {
				t.Fatalf("tenant B got %q", h.Text)
			}
		}
		hits, err = ix2.Search(ctx, b, search.Query{Vector: ca[i].Vector, K: 10, MinScore: -1, Filter: search.Filter{DocIDs: []string{"d"}}})
		must(t, err)
		for _, h := range hits {
			if !strings.HasPrefix(h.Text, "B-") {
				t.Fatalf("tenant B (filtered) got %q", h.Text)
			}
		}
	}
	must(t, ix2.DeleteDoc(ctx, b, "d"))
	if n, _ := ix2.Count(ctx, a); n != len(ca) {
		t.Fatalf("A count %d after B's delete", n)
	}
	if hits, _ := ix2.Search(ctx, b, search.Query{Vector: cb[0].Vector, K: 10, MinScore: -1}); len(hits) != 0 {
		t.Fatalf("B after its delete: %d hits", len(hits))
	}
}

// A flush appends what changed: after one more chunk the files written before keep their bytes,
// the logs grow by that chunk's record and text only, and the vectors stay in the same file.
func TestFlushAppendsInsteadOfRewriting(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a := tenant.MustParse("acme")
	ix, err := embedded.Open(embedded.Config{Dir: dir})
	must(t, err)
	defer ix.Close()
	r := rand.New(rand.NewPCG(31, 32))
	must(t, ix.Upsert(ctx, a, randomChunks(r, 5000, 32)))
	must(t, ix.Flush(ctx))
	part := filepath.Join(dir, "acme.ix")
	read := func(name string) []byte {
		raw, err := os.ReadFile(filepath.Join(part, name))
		must(t, err)
		return raw
	}
	chunks0, text0 := read("chunks.1"), read("text.1")
	st0, err := os.Stat(filepath.Join(part, "vectors.1"))
	must(t, err)
	one := randomChunks(r, 1, 32)[0]
	one.DocID, one.ChunkID, one.Text = "e", "e#0", "one more chunk"
	must(t, ix.Upsert(ctx, a, []search.Chunk{one}))
	must(t, ix.Flush(ctx))
	chunks1, text1 := read("chunks.1"), read("text.1")
	if !bytes.HasPrefix(chunks1, chunks0) || !bytes.HasPrefix(text1, text0) {
		t.Fatal("a flush changed bytes written before")
	}
	if grew := len(chunks1) - len(chunks0); grew <= 0 || grew > 64 {
		t.Fatalf("chunk log grew by %d bytes for one chunk", grew)
	}
	if string(text1[len(text0):]) != "one more chunk" {
		t.Fatalf("text log grew by %q", text1[len(text0):])
	}
	st1, err := os.Stat(filepath.Join(part, "vectors.1"))
	must(t, err)
	if !os.SameFile(st0, st1) {
		t.Fatal("the vectors file was replaced")
	}
}

// The upper-links log, appended to at every flush, is rewritten once it is mostly superseded
// records; the graph reopened from the rewritten log answers as before.
func TestUpperLinksLogIsRewrittenAndReopens(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a := tenant.MustParse("acme")
	cfg := embedded.Config{Dir: dir, M: 3, EfConstruction: 16, ExactBelow: -1} // M 3: half the nodes have upper layers
	ix, err := embedded.Open(cfg)
	must(t, err)
	r := rand.New(rand.NewPCG(41, 42))
	cs := randomChunks(r, 8000, 8)
	for s := 0; s < len(cs); s += 20 {
		must(t, ix.Upsert(ctx, a, cs[s:s+20]))
		must(t, ix.Flush(ctx))
	}
	part := filepath.Join(dir, "acme.ix")
	uppers, err := filepath.Glob(filepath.Join(part, "upper-*"))
	must(t, err)
	if len(uppers) != 1 || filepath.Base(uppers[0]) == "upper-0.1" {
		t.Fatalf("upper-links logs %v: want one, rewritten at least once", uppers)
	}
	queries := randomChunks(r, 20, 8)
	var before [][]search.Hit
	for _, q := range queries {
		hits, err := ix.Search(ctx, a, search.Query{Vector: q.Vector, K: 5, MinScore: -1})
		must(t, err)
		before = append(before, hits)
	}
	must(t, ix.Close())
	ix2, err := embedded.Open(cfg)
	must(t, err)
	defer ix2.Close()
	for i, q := range queries {
		hits, err := ix2.Search(ctx, a, search.Query{Vector: q.Vector, K: 5, MinScore: -1})
		must(t, err)
		if len(hits) != len(before[i]) {
			t.Fatalf("query %d: %d hits after reopen, %d before", i, len(hits), len(before[i]))
		}
		for j := range hits {
			if hits[j].ChunkID != before[i][j].ChunkID {
				t.Fatalf("query %d: %v after reopen, %v before", i, hits[j].ChunkID, before[i][j].ChunkID)
			}
		}
	}
}

// Links are changed in place, so after a crash committed nodes may link to nodes the manifest no
// longer counts (added after the last flush): searches skip those and return only chunks the
// manifest holds, and the nodes added after the crash reuse those ids without confusion.
func TestCrashAfterLinksChangedInPlace(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a := tenant.MustParse("acme")
	r := rand.New(rand.NewPCG(51, 52))
	ix, err := embedded.Open(embedded.Config{Dir: dir, ExactBelow: -1})
	must(t, err)
	defer ix.Close()
	committed := randomChunks(r, 3000, 16)
	must(t, ix.Upsert(ctx, a, committed))
	must(t, ix.Flush(ctx))
	later := randomChunks(r, 1500, 16)
	for i := range later {
		later[i].DocID, later[i].ChunkID = "later", "later#"+itoa(i)
	}
	must(t, ix.Upsert(ctx, a, later)) // links of committed nodes now name these
	crashed := filepath.Join(t.TempDir(), "index")
	must(t, os.CopyFS(crashed, os.DirFS(dir)))

	ix2, err := embedded.Open(embedded.Config{Dir: crashed, ExactBelow: -1})
	must(t, err)
	defer ix2.Close()
	check := func(when string, allowed func(string) bool) {
		t.Helper()
		for _, q := range randomChunks(r, 30, 16) {
			hits, err := ix2.Search(ctx, a, search.Query{Vector: q.Vector, K: 10, MinScore: -1})
			must(t, err)
			if len(hits) != 10 {
				t.Fatalf("%s: %d hits", when, len(hits))
			}
			for _, h := range hits {
				if !allowed(h.ChunkID) {
					t.Fatalf("%s: hit %s", when, h.ChunkID)
				}
			}
		}
	}
	check("after the crash", func(id string) bool { return strings.HasPrefix(id, "d#") })
	other := randomChunks(r, 500, 16)
	for i := range other {
		other[i].DocID, other[i].ChunkID, other[i].Text = "other", "other#"+itoa(i), "other"
	}
	must(t, ix2.Upsert(ctx, a, other))
	check("after new writes", func(id string) bool { return strings.HasPrefix(id, "d#") || strings.HasPrefix(id, "other#") })
	if n, _ := ix2.Count(ctx, a); n != 3500 {
		t.Fatalf("count %d, want 3500", n)
	}
	hits, err := ix2.Search(ctx, a, search.Query{Vector: other[7].Vector, K: 1, MinScore: -1})
	must(t, err)
	if len(hits) != 1 || hits[0].ChunkID != "other#7" || hits[0].Text != "other" {
		t.Fatalf("a chunk added after the crash: %+v", hits)
	}
}
