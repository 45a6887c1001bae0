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

func TestSnapshotRoundTripCheckpointAndCorruption(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a, b, c := tenant.MustParse("acme"), tenant.MustParse("beta"), tenant.MustParse("gamma")
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
	if len(after) != 5 || after[0].ChunkID != before[0].ChunkID || after[0].ChunkID != "d#42" {
		t.Fatalf("after reload %v, before %v", after, before)
	}
	if n, _ := ix2.Count(ctx, b); n != 0 {
		t.Fatalf("beta count %d after reload, want 0", n)
	}
	for tn, want := range map[tenant.ID]uint64{a: 41, b: 0, c: 7} {
		if cp, err := ix2.Checkpoint(ctx, tn); err != nil || cp != want {
			t.Fatalf("checkpoint of %s after reload: %d %v, want %d", tn, cp, err, want)
		}
	}
	// A change after the snapshot is not on disk until the next one: a crash (no Close) leaves the
	// old snapshot, with the old checkpoint, which is what lets retrieval replay what came after.
	if err := ix2.Upsert(ctx, a, randomChunks(r, 1, 16)); err != nil {
		t.Fatal(err)
	}
	must(t, ix2.SetCheckpoint(ctx, a, 99))
	ix3, err := embedded.Open(embedded.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if cp, _ := ix3.Checkpoint(ctx, a); cp != 41 {
		t.Fatalf("checkpoint after a crash %d, want the snapshot's 41", cp)
	}
	if n, _ := ix3.Count(ctx, a); n != 500 {
		t.Fatalf("count after a crash %d, want the snapshot's 500", n)
	}
	// DeleteTenant drops content, snapshot and checkpoint.
	must(t, ix3.DeleteTenant(ctx, a))
	if cp, _ := ix3.Checkpoint(ctx, a); cp != 0 {
		t.Fatalf("checkpoint after DeleteTenant %d", cp)
	}
	if _, err := os.Stat(filepath.Join(dir, "acme.hnsw")); !os.IsNotExist(err) {
		t.Fatalf("snapshot after DeleteTenant: %v", err)
	}
	_ = ix3.Close()
	_ = ix2.Close() // writes acme again (its content and checkpoint 99): the last writer's view

	// Flip a byte: the snapshot is set aside; the tenant starts empty from checkpoint 0.
	p := filepath.Join(dir, "acme.hnsw")
	raw, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	raw[len(raw)/2] ^= 0xff
	if err := os.WriteFile(p, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	// A version 1 snapshot (no checkpoint) and its dirty marker count as nothing either.
	if err := os.WriteFile(filepath.Join(dir, "delta.hnsw"), []byte("CRISPY-HNSW-1\nold gob and checksum"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "delta.dirty"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ix4, err := embedded.Open(embedded.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer ix4.Close()
	for _, tn := range []tenant.ID{a, tenant.MustParse("delta")} {
		if n, _ := ix4.Count(ctx, tn); n != 0 {
			t.Fatalf("%s: unusable snapshot loaded %d chunks", tn, n)
		}
		if cp, _ := ix4.Checkpoint(ctx, tn); cp != 0 {
			t.Fatalf("%s: unusable snapshot gave checkpoint %d", tn, cp)
		}
	}
	if _, err := os.Stat(p + ".corrupt"); err != nil {
		t.Fatalf("the corrupt snapshot must be set aside: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "delta.dirty")); !os.IsNotExist(err) {
		t.Fatalf("the version 1 marker must go: %v", err)
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

// Snapshots are read streamed and several tenants at once: each tenant gets its own content back,
// and a snapshot cut short or with bytes after its checksum is set aside while the others load.
func TestSnapshotsOfManyTenantsLoadTogetherAndDamageStaysLocal(t *testing.T) {
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
	cut := filepath.Join(dir, "t1.hnsw")
	raw, err := os.ReadFile(cut)
	if err != nil {
		t.Fatal(err)
	}
	must(t, os.WriteFile(cut, raw[:len(raw)-40], 0o644))
	long := filepath.Join(dir, "t2.hnsw")
	raw, err = os.ReadFile(long)
	if err != nil {
		t.Fatal(err)
	}
	must(t, os.WriteFile(long, append(raw, "trailing"...), 0o644))

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
			t.Errorf("%s: damaged snapshot loaded: %d chunks, checkpoint %d", tid, n, cp)
		case !damaged && (n != 50+10*i || cp != uint64(100+i)):
			t.Errorf("%s: %d chunks at checkpoint %d, want %d at %d", tid, n, cp, 50+10*i, 100+i)
		}
	}
	for _, p := range []string{cut, long} {
		if _, err := os.Stat(p + ".corrupt"); err != nil {
			t.Errorf("damaged snapshot not set aside: %v", err)
		}
	}
}
