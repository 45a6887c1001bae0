package embedded_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/crispy-enigma/crispy/platform/search"
	"github.com/crispy-enigma/crispy/platform/search/embedded"
	"github.com/crispy-enigma/crispy/platform/search/searchtest"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

func TestAcceptance(t *testing.T) {
	searchtest.Run(t, func(t *testing.T) search.Index {
		ix, err := embedded.Open(embedded.Config{Dir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = ix.Close() })
		return ix
	})
}

// TestAcceptanceGraphPath forces the HNSW path (no exact scan for small tenants).
func TestAcceptanceGraphPath(t *testing.T) {
	searchtest.Run(t, func(t *testing.T) search.Index {
		ix, err := embedded.Open(embedded.Config{ExactBelow: -1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = ix.Close() })
		return ix
	})
}

func randomChunks(r *rand.Rand, n, dim int) []search.Chunk {
	cs := make([]search.Chunk, n)
	for i := range cs {
		v := make([]float32, dim)
		for j := range v {
			v[j] = float32(r.NormFloat64())
		}
		cs[i] = search.Chunk{DocID: "d", ChunkID: "d#" + itoa(i), Text: itoa(i), Vector: v}
	}
	return cs
}

func itoa(i int) string {
	b := []byte{}
	for {
		b = append([]byte{byte('0' + i%10)}, b...)
		i /= 10
		if i == 0 {
			return string(b)
		}
	}
}

func TestFilesRoundTripCheckpointCrashAndCorruption(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a, b, c := tenant.MustParse("acme"), tenant.MustParse("beta"), tenant.MustParse("gamma")
	ix, err := embedded.Open(embedded.Config{Dir: dir, ExactBelow: -1})
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	cs := randomChunks(r, 500, 16)
	cs[3].Metadata = map[string]string{"lang": "en", "k": "v"}
	cs[3].Title, cs[3].Source, cs[3].URL = "T", "S", "https://u.test/3"
	if err := ix.Upsert(ctx, a, cs); err != nil {
		t.Fatal(err)
	}
	if err := ix.Upsert(ctx, b, cs[:10]); err != nil {
		t.Fatal(err)
	}
	if err := ix.DeleteDoc(ctx, b, "d"); err != nil {
		t.Fatal(err)
	}
	must(t, ix.SetCheckpoint(ctx, a, 41))
	must(t, ix.SetCheckpoint(ctx, c, 7)) // a tenant without chunks keeps its place in the log too
	q := search.Query{Vector: cs[42].Vector, K: 5, MinScore: -1}
	before, _ := ix.Search(ctx, a, q)
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}

	ix2, err := embedded.Open(embedded.Config{Dir: dir, ExactBelow: -1})
	if err != nil {
		t.Fatal(err)
	}
	after, _ := ix2.Search(ctx, a, q)
	if len(after) != 5 || after[0].ChunkID != before[0].ChunkID || after[0].ChunkID != "d#42" || after[0].Text != "42" {
		t.Fatalf("after reload %v, before %v", after, before)
	}
	got, _ := ix2.Search(ctx, a, search.Query{Vector: cs[3].Vector, K: 1, MinScore: -1, Filter: search.Filter{Metadata: map[string]string{"lang": "en"}}})
	if len(got) != 1 || got[0].ChunkID != "d#3" || got[0].Title != "T" || got[0].Source != "S" || got[0].URL != "https://u.test/3" || got[0].Metadata["k"] != "v" || got[0].Text != "3" {
		t.Fatalf("chunk fields after reload: %+v", got)
	}
	if n, _ := ix2.Count(ctx, b); n != 0 {
		t.Fatalf("beta count %d after reload, want 0", n)
	}
	for tn, want := range map[tenant.ID]uint64{a: 41, b: 0, c: 7} {
		if cp, err := ix2.Checkpoint(ctx, tn); err != nil || cp != want {
			t.Fatalf("checkpoint of %s after reload: %d %v, want %d", tn, cp, err, want)
		}
	}
	// A change after the last flush is not part of the index until the next one: a crash (the
	// folder copied as it is on disk, no Close) leaves the last manifest, with the old checkpoint,
	// which is what lets retrieval replay what came after.
	must(t, ix2.Upsert(ctx, a, randomChunks(r, 1, 16)))
	must(t, ix2.DeleteDoc(ctx, a, "nothing"))
	must(t, ix2.SetCheckpoint(ctx, a, 99))
	crashed := filepath.Join(t.TempDir(), "index")
	must(t, os.CopyFS(crashed, os.DirFS(dir)))
	ix3, err := embedded.Open(embedded.Config{Dir: crashed})
	if err != nil {
		t.Fatal(err)
	}
	if cp, _ := ix3.Checkpoint(ctx, a); cp != 41 {
		t.Fatalf("checkpoint after a crash %d, want the manifest's 41", cp)
	}
	if n, _ := ix3.Count(ctx, a); n != 500 {
		t.Fatalf("count after a crash %d, want the manifest's 500", n)
	}
	// Writes after the crash go on from the manifest's state.
	must(t, ix3.Upsert(ctx, a, randomChunks(r, 3, 16)[2:]))
	if n, _ := ix3.Count(ctx, a); n != 500 {
		t.Fatalf("count after an upsert of an existing chunk id: %d", n)
	}
	// DeleteTenant drops content, files and checkpoint.
	must(t, ix3.DeleteTenant(ctx, a))
	if cp, _ := ix3.Checkpoint(ctx, a); cp != 0 {
		t.Fatalf("checkpoint after DeleteTenant %d", cp)
	}
	if _, err := os.Stat(filepath.Join(crashed, "acme.ix")); !os.IsNotExist(err) {
		t.Fatalf("files after DeleteTenant: %v", err)
	}
	must(t, ix3.Close())
	must(t, ix2.Close()) // acme at checkpoint 99, d#0 replaced

	ix4, err := embedded.Open(embedded.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := ix4.Count(ctx, a); n != 500 {
		t.Fatalf("count after Close %d, want 500", n)
	}
	if cp, _ := ix4.Checkpoint(ctx, a); cp != 99 {
		t.Fatalf("checkpoint after Close %d, want 99", cp)
	}

	// Damage: a chunk record's byte flipped, a manifest cut, a vectors file shorter than the
	// manifest says; and an older whole-file snapshot. Each such tenant's files are removed and it
	// starts empty from checkpoint 0 (retrieval rebuilds it from the log).
	must(t, ix4.Close())
	flip := func(path string) {
		raw, err := os.ReadFile(path)
		must(t, err)
		raw[len(raw)/2] ^= 0xff
		must(t, os.WriteFile(path, raw, 0o644))
	}
	flip(filepath.Join(dir, "acme.ix", "chunks.1"))
	raw, err := os.ReadFile(filepath.Join(dir, "gamma.ix", "MANIFEST"))
	must(t, err)
	must(t, os.WriteFile(filepath.Join(dir, "gamma.ix", "MANIFEST"), raw[:len(raw)-3], 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "delta.hnsw"), []byte("CRISPY-HNSW-2\nold gob and checksum"), 0o644))
	ix5, err := embedded.Open(embedded.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer ix5.Close()
	for _, tn := range []tenant.ID{a, c, tenant.MustParse("delta")} {
		if n, _ := ix5.Count(ctx, tn); n != 0 {
			t.Fatalf("%s: unusable files loaded %d chunks", tn, n)
		}
		if cp, _ := ix5.Checkpoint(ctx, tn); cp != 0 {
			t.Fatalf("%s: unusable files gave checkpoint %d", tn, cp)
		}
	}
	for _, name := range []string{"acme.ix", "gamma.ix", "delta.hnsw"} {
		if _, err := os.Stat(filepath.Join(dir, name)); !os.IsNotExist(err) {
			t.Fatalf("unusable %s must be removed: %v", name, err)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestCheckWriteAndNewDimensionAfterEmptying: CheckWrite refuses vectors of another dimension while
// the tenant has live chunks; once they are all deleted, the tenant takes the new dimension.
func TestCheckWriteAndNewDimensionAfterEmptying(t *testing.T) {
	ctx := context.Background()
	ix, _ := embedded.Open(embedded.Config{})
	a := tenant.MustParse("acme")
	must(t, ix.CheckWrite(ctx, a, 3)) // nothing yet: any dimension
	must(t, ix.Upsert(ctx, a, []search.Chunk{{DocID: "d", ChunkID: "d#0", Vector: []float32{1, 0}}}))
	must(t, ix.CheckWrite(ctx, a, 2))
	must(t, ix.CheckWrite(ctx, a, 0)) // a deletion
	if err := ix.CheckWrite(ctx, a, 3); !errors.Is(err, search.ErrDimension) {
		t.Fatalf("CheckWrite of another dimension: %v", err)
	}
	must(t, ix.CheckWrite(ctx, tenant.MustParse("beta"), 3)) // per tenant
	must(t, ix.DeleteDoc(ctx, a, "d"))
	must(t, ix.CheckWrite(ctx, a, 3))
	must(t, ix.Upsert(ctx, a, []search.Chunk{{DocID: "e", ChunkID: "e#0", Vector: []float32{0, 0, 1}}}))
	if hits, err := ix.Search(ctx, a, search.Query{Vector: []float32{0, 0, 1}, K: 3, MinScore: -1}); err != nil || len(hits) != 1 || hits[0].DocID != "e" {
		t.Fatalf("after the new dimension: %v %v", hits, err)
	}
	_ = ix.Close()
	if err := ix.CheckWrite(ctx, a, 3); !errors.Is(err, search.ErrClosed) {
		t.Fatalf("CheckWrite after Close: %v", err)
	}
}

func TestDimensionMismatch(t *testing.T) {
	ctx := context.Background()
	ix, _ := embedded.Open(embedded.Config{})
	a := tenant.MustParse("acme")
	if err := ix.Upsert(ctx, a, []search.Chunk{{DocID: "d", ChunkID: "d#0", Vector: []float32{1, 0}}}); err != nil {
		t.Fatal(err)
	}
	if err := ix.Upsert(ctx, a, []search.Chunk{{DocID: "d", ChunkID: "d#1", Vector: []float32{1, 0, 0}}}); err == nil {
		t.Fatal("mixed dimensions must fail")
	}
	if _, err := ix.Search(ctx, a, search.Query{Vector: []float32{1, 0, 0}, K: 1}); err == nil {
		t.Fatal("a query of another dimension must fail")
	}
}

// TestRecallSmall checks the graph against exact search on a small random set (the 100k benchmark
// is in bench_test.go).
func TestRecallSmall(t *testing.T) {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(7, 8))
	const n, dim = 5000, 64
	cs := randomChunks(r, n, dim)
	approx, _ := embedded.Open(embedded.Config{ExactBelow: -1})
	exact, _ := embedded.Open(embedded.Config{ExactBelow: 1 << 30})
	a := tenant.MustParse("acme")
	for _, ix := range []*embedded.Index{approx, exact} {
		if err := ix.Upsert(ctx, a, cs); err != nil {
			t.Fatal(err)
		}
	}
	found, total := 0, 0
	for range 100 {
		q := randomChunks(r, 1, dim)[0].Vector
		want, _ := exact.Search(ctx, a, search.Query{Vector: q, K: 10, MinScore: -1})
		got, _ := approx.Search(ctx, a, search.Query{Vector: q, K: 10, MinScore: -1})
		ids := map[string]bool{}
		for _, h := range got {
			ids[h.ChunkID] = true
		}
		for _, h := range want {
			total++
			if ids[h.ChunkID] {
				found++
			}
		}
	}
	if recall := float64(found) / float64(total); recall < 0.9 {
		t.Fatalf("recall@10 %.3f on 5,000 random 64-dim vectors, want >= 0.9", recall)
	}
}

// TestWritesDuringDeleteTenantAreNotLost races upserts with DeleteTenant (run it with -race) and checks
// that writes after the last delete all land in the tenant's live partition.
func TestWritesDuringDeleteTenantAreNotLost(t *testing.T) {
	ctx := context.Background()
	ix, _ := embedded.Open(embedded.Config{})
	a := tenant.MustParse("acme")
	r := rand.New(rand.NewPCG(5, 6))
	cs := randomChunks(r, 200, 8)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 50 {
			_ = ix.DeleteTenant(ctx, a)
		}
	}()
	for i := range cs {
		if err := ix.Upsert(ctx, a, cs[i:i+1]); err != nil {
			t.Fatal(err)
		}
	}
	<-done
	// After the deletes stopped, one more write of each chunk must all land in the live partition.
	if err := ix.Upsert(ctx, a, cs); err != nil {
		t.Fatal(err)
	}
	if n, _ := ix.Count(ctx, a); n != len(cs) {
		t.Fatalf("count %d, want %d", n, len(cs))
	}
}

// Tenants' folders are opened several at once: each tenant gets its own content back, and a
// tenant whose files are torn (a log shorter than its manifest, a vectors file cut) is removed while
// the others load.
func TestFoldersOfManyTenantsOpenTogetherAndDamageStaysLocal(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	ix, err := embedded.Open(embedded.Config{Dir: dir, ExactBelow: -1})
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(3, 4))
	tenants := []tenant.ID{}
	for i := range 8 {
		tid := tenant.MustParse(fmt.Sprintf("t%d", i))
		tenants = append(tenants, tid)
		if err := ix.Upsert(ctx, tid, randomChunks(r, 50+10*i, 16)); err != nil {
			t.Fatal(err)
		}
		must(t, ix.SetCheckpoint(ctx, tid, uint64(100+i)))
	}
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}
	must(t, os.Truncate(filepath.Join(dir, "t1.ix", "text.1"), 40))
	must(t, os.Truncate(filepath.Join(dir, "t2.ix", "vectors.1"), 100))

	ix2, err := embedded.Open(embedded.Config{Dir: dir, ExactBelow: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer ix2.Close()
	for i, tid := range tenants {
		n, _ := ix2.Count(ctx, tid)
		cp, _ := ix2.Checkpoint(ctx, tid)
		damaged := i == 1 || i == 2
		switch {
		case damaged && (n != 0 || cp != 0):
			t.Errorf("%s: damaged files loaded: %d chunks, checkpoint %d", tid, n, cp)
		case !damaged && (n != 50+10*i || cp != uint64(100+i)):
			t.Errorf("%s: %d chunks at checkpoint %d, want %d at %d", tid, n, cp, 50+10*i, 100+i)
		}
		if !damaged {
			hits, err := ix2.Search(ctx, tid, search.Query{Vector: randomChunks(r, 1, 16)[0].Vector, K: 3, MinScore: -1})
			if err != nil || len(hits) != 3 {
				t.Errorf("%s: search after open: %v %v", tid, hits, err)
			}
		}
	}
}
