package embedded_test

import (
	"context"
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

func TestSnapshotRoundTripAndCorruption(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a, b := tenant.MustParse("acme"), tenant.MustParse("beta")
	ix, err := embedded.Open(embedded.Config{Dir: dir, ExactBelow: -1})
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	cs := randomChunks(r, 500, 16)
	if err := ix.Upsert(ctx, a, cs); err != nil {
		t.Fatal(err)
	}
	if err := ix.Upsert(ctx, b, cs[:10]); err != nil {
		t.Fatal(err)
	}
	if err := ix.DeleteDoc(ctx, b, "d"); err != nil {
		t.Fatal(err)
	}
	q := search.Query{Vector: cs[42].Vector, K: 5, MinScore: -1}
	before, _ := ix.Search(ctx, a, q)
	if _, err := os.Stat(filepath.Join(dir, "acme.dirty")); err != nil {
		t.Fatalf("a change before a snapshot must leave a dirty marker: %v", err)
	}
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "acme.dirty")); !os.IsNotExist(err) {
		t.Fatalf("the marker must go once the snapshot is written: %v", err)
	}

	ix2, err := embedded.Open(embedded.Config{Dir: dir, ExactBelow: -1})
	if err != nil {
		t.Fatal(err)
	}
	if ix2.NeedsRebuild(a) {
		t.Fatal("a clean snapshot needs no rebuild")
	}
	after, _ := ix2.Search(ctx, a, q)
	if len(after) != 5 || after[0].ChunkID != before[0].ChunkID || after[0].ChunkID != "d#42" {
		t.Fatalf("after reload %v, before %v", after, before)
	}
	if n, _ := ix2.Count(ctx, b); n != 0 {
		t.Fatalf("beta count %d after reload, want 0", n)
	}
	// A change without a snapshot (crash) leaves the marker: the tenant must be rebuilt.
	if err := ix2.Upsert(ctx, a, randomChunks(r, 1, 16)); err != nil {
		t.Fatal(err)
	}
	ix3, err := embedded.Open(embedded.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if !ix3.NeedsRebuild(a) {
		t.Fatal("a stale snapshot must ask for a rebuild")
	}
	if err := ix3.DeleteTenant(ctx, a); err != nil || ix3.NeedsRebuild(a) {
		t.Fatalf("DeleteTenant starts the rebuild: %v", err)
	}
	_ = ix2.Close()
	_ = ix3.Close()

	// Flip a byte: the snapshot is set aside and the tenant reported.
	p := filepath.Join(dir, "acme.hnsw")
	raw, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	raw[len(raw)/2] ^= 0xff
	if err := os.WriteFile(p, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	_ = os.Remove(filepath.Join(dir, "acme.dirty"))
	ix4, err := embedded.Open(embedded.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer ix4.Close()
	if !ix4.NeedsRebuild(a) {
		t.Fatal("a corrupt snapshot must ask for a rebuild")
	}
	if n, _ := ix4.Count(ctx, a); n != 0 {
		t.Fatalf("corrupt snapshot loaded %d chunks", n)
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
