package embedded

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"unsafe"

	"github.com/crispy-enigma/crispy/platform/search"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

func linkTestChunks(r *rand.Rand, n, dim, from int) []search.Chunk {
	out := make([]search.Chunk, n)
	for i := range out {
		v := make([]float32, dim)
		for j := range v {
			v[j] = float32(r.NormFloat64())
		}
		out[i] = search.Chunk{DocID: "d", ChunkID: "d#" + itoaInternal(from+i), Vector: v}
	}
	return out
}

func itoaInternal(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}

// linksOf copies the layer-0 links of a's partition.
func linksOf(t *testing.T, ix *Index, a tenant.ID) []uint32 {
	t.Helper()
	p, err := ix.part(a, false, 0)
	if err != nil || p == nil {
		t.Fatalf("partition: %v", err)
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	return slices.Clone(p.g.lk[:p.g.len()*(1+p.g.m0)])
}

func searchAll(t *testing.T, ix *Index, a tenant.ID, qs []search.Chunk) [][]string {
	t.Helper()
	var out [][]string
	for _, q := range qs {
		hits, err := ix.Search(context.Background(), a, search.Query{Vector: q.Vector, K: 10, MinScore: -1})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, h := range hits {
			ids = append(ids, h.ChunkID)
		}
		out = append(out, ids)
	}
	return out
}

// The layer-0 links are a base file plus a log of edits, one frame per flush; once the log
// outgrows the floor (made small here) a new base is written and the old pair removed. Reopened,
// the links are exactly the ones in memory before, whichever base and log they came from.
func TestLinksLogRewrittenAndReplayedExactly(t *testing.T) {
	defer func(f int64) { linksLogFloor = f }(linksLogFloor)
	linksLogFloor = 16 << 10
	ctx := context.Background()
	dir := t.TempDir()
	a := tenant.MustParse("acme")
	cfg := Config{Dir: dir, M: 6, EfConstruction: 32, ExactBelow: -1}
	ix, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(61, 62))
	cs := linkTestChunks(r, 3000, 12, 0)
	for s := 0; s < len(cs); s += 25 {
		if err := ix.Upsert(ctx, a, cs[s:s+25]); err != nil {
			t.Fatal(err)
		}
		if s%100 == 0 { // some flushes carry more edits than others
			if err := ix.Flush(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Deletes and re-inserts of the same chunk ids add nodes linked among the old ones.
	if err := ix.Upsert(ctx, a, linkTestChunks(r, 50, 12, 0)); err != nil {
		t.Fatal(err)
	}
	want := linksOf(t, ix, a)
	qs := linkTestChunks(r, 30, 12, 10_000)
	before := searchAll(t, ix, a, qs)
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}
	part := filepath.Join(dir, "acme.ix")
	bases, _ := filepath.Glob(filepath.Join(part, "links-*"))
	logs, _ := filepath.Glob(filepath.Join(part, "linklog-*"))
	if len(bases) != 1 || len(logs) != 1 || filepath.Base(bases[0]) == "links-0.1" {
		t.Fatalf("links files %v %v: want one base and one log, rewritten at least once", bases, logs)
	}
	if st, err := os.Stat(logs[0]); err != nil || st.Size() == 0 {
		t.Fatalf("links log %v %v: want edits after the last base", st, err)
	}
	ix2, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ix2.Close()
	if got := linksOf(t, ix2, a); !slices.Equal(got, want) {
		t.Fatal("links after the reopen differ from the ones before")
	}
	if after := searchAll(t, ix2, a, qs); !slices.EqualFunc(after, before, slices.Equal) {
		t.Fatalf("searches after the reopen %v, before %v", after, before)
	}
}

// A folder of manifest version 3 (links changed in place in links.G, which may name nodes a crash
// lost) is taken over as it is: its links become the base, links past the manifest's nodes are
// dropped, and the next flush writes a version 4 manifest. No document is embedded again.
func TestVersion3FolderIsTakenOver(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a := tenant.MustParse("acme")
	cfg := Config{Dir: dir, M: 6, EfConstruction: 32, ExactBelow: -1}
	ix, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(71, 72))
	if err := ix.Upsert(ctx, a, linkTestChunks(r, 1500, 12, 0)); err != nil {
		t.Fatal(err)
	}
	if err := ix.SetCheckpoint(ctx, a, 77); err != nil {
		t.Fatal(err)
	}
	want := linksOf(t, ix, a)
	qs := linkTestChunks(r, 30, 12, 10_000)
	before := searchAll(t, ix, a, qs)
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}
	// Rewrite the folder as version 3 left it: links.G in a sparse mapped file, with one link
	// naming a node past the manifest's count (written in place before a crash).
	part := filepath.Join(dir, "acme.ix")
	m, err := readManifest(part)
	if err != nil {
		t.Fatal(err)
	}
	rec := 1 + 2*m.M
	v3 := slices.Clone(want)
	if c := v3[5*rec]; int(c) < 2*m.M {
		v3[5*rec+1+int(c)] = uint32(m.Nodes + 3)
		v3[5*rec] = c + 1
	} else {
		v3[5*rec+1] = uint32(m.Nodes + 3)
		want[5*rec] = c - 1
		copy(want[5*rec+1:5*rec+1+int(c)-1], v3[5*rec+2:5*rec+1+int(c)])
	}
	v3 = append(v3, make([]uint32, 7*rec)...) // the file grew past the manifest's nodes
	raw := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(v3))), len(v3)*4)
	if err := os.WriteFile(filepath.Join(part, fileName("links", m.Gen)), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, pat := range []string{"links-*", "linklog-*"} {
		old, _ := filepath.Glob(filepath.Join(part, pat))
		for _, f := range old {
			os.Remove(f)
		}
	}
	m.Version, m.LinkSeq, m.LinkBase, m.LinkLog = linksVersion3, 0, 0, 0
	if err := writeManifest(part, m); err != nil {
		t.Fatal(err)
	}

	ix2, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := ix2.Count(ctx, a); n != 1500 {
		t.Fatalf("count %d after the take-over, want 1500 (the tenant was dropped?)", n)
	}
	if cp, _ := ix2.Checkpoint(ctx, a); cp != 77 {
		t.Fatalf("checkpoint %d after the take-over, want 77", cp)
	}
	if got := linksOf(t, ix2, a); !slices.Equal(got, want) {
		t.Fatal("links after the take-over differ (the link past the nodes should be all that is dropped)")
	}
	after := searchAll(t, ix2, a, qs)
	if len(after) != len(before) {
		t.Fatal("searches differ")
	}
	if err := ix2.Upsert(ctx, a, linkTestChunks(r, 10, 12, 5000)); err != nil {
		t.Fatal(err)
	}
	if err := ix2.Close(); err != nil {
		t.Fatal(err)
	}
	m2, err := readManifest(part)
	if err != nil || m2.Version != manifestVersion || m2.LinkLog == 0 {
		t.Fatalf("manifest after the take-over %+v %v: want version %d with a links log", m2, err, manifestVersion)
	}
	if _, err := os.Stat(filepath.Join(part, fileName("links", m.Gen))); !os.IsNotExist(err) {
		t.Fatalf("links.G still there: %v", err)
	}
	ix3, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ix3.Close()
	if n, _ := ix3.Count(ctx, a); n != 1510 {
		t.Fatalf("count %d after reopening the taken-over folder, want 1510", n)
	}
}

// A clean Close writes the links whole when their log is past linksFoldAtClose, so the next open
// replays no edit; the links and searches after it are the ones before. A log below it is kept.
func TestCloseFoldsALongLinksLog(t *testing.T) {
	defer func(f int64) { linksFoldAtClose = f }(linksFoldAtClose)
	linksFoldAtClose = 8 << 10
	ctx := context.Background()
	dir := t.TempDir()
	a, b := tenant.MustParse("acme"), tenant.MustParse("bravo")
	cfg := Config{Dir: dir, M: 6, EfConstruction: 32, ExactBelow: -1}
	ix, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(81, 82))
	cs := linkTestChunks(r, 1500, 12, 0)
	for s := 0; s < len(cs); s += 50 {
		if err := ix.Upsert(ctx, a, cs[s:s+50]); err != nil {
			t.Fatal(err)
		}
		if err := ix.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := ix.Upsert(ctx, b, linkTestChunks(r, 20, 12, 0)); err != nil {
		t.Fatal(err)
	}
	if err := ix.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	logOf := func(tn string) int64 {
		m, err := readManifest(filepath.Join(dir, tn+".ix"))
		if err != nil {
			t.Fatal(err)
		}
		return m.LinkLog
	}
	if logOf("acme") <= linksFoldAtClose || logOf("bravo") == 0 || logOf("bravo") > linksFoldAtClose {
		t.Fatalf("links logs before the Close: acme %d, bravo %d bytes; want acme's past %d and bravo's below (the checks below could not fail)", logOf("acme"), logOf("bravo"), linksFoldAtClose)
	}
	want := linksOf(t, ix, a)
	qs := linkTestChunks(r, 30, 12, 10_000)
	before := searchAll(t, ix, a, qs)
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}
	if logOf("acme") != 0 || logOf("bravo") == 0 {
		t.Fatalf("links logs after the Close: acme %d bytes (want 0: written whole), bravo %d (want kept)", logOf("acme"), logOf("bravo"))
	}
	ix2, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ix2.Close()
	if got := linksOf(t, ix2, a); !slices.Equal(got, want) {
		t.Fatal("links after the reopen differ from the ones before the Close")
	}
	if after := searchAll(t, ix2, a, qs); !slices.EqualFunc(after, before, slices.Equal) {
		t.Fatalf("searches after the reopen %v, before %v", after, before)
	}
}
