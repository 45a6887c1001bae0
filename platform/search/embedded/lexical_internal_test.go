package embedded

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/crispy-enigma/crispy/platform/search"
	"github.com/crispy-enigma/crispy/platform/search/lexical"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// smallSegments makes the lexical thresholds a few hundred postings, so a test of a few thousand
// chunks has several segments, merges and a replayed tail.
func smallSegments(t *testing.T) {
	f, m, c := flushPostings, memPostings, mergeCap
	flushPostings, memPostings, mergeCap = 300, 2000, 6000
	t.Cleanup(func() { flushPostings, memPostings, mergeCap = f, m, c })
}

// zipfChunks makes n chunks of words drawn from a Zipf vocabulary (like text), each with a random
// vector; prefix keeps two tenants' words apart.
func zipfChunks(r *rand.Rand, n int, prefix string) []search.Chunk {
	z := rand.NewZipf(r, 1.2, 1, 1999)
	cs := make([]search.Chunk, n)
	for i := range cs {
		var sb strings.Builder
		for range 10 + r.IntN(30) {
			fmt.Fprintf(&sb, "%sw%dx ", prefix, z.Uint64())
		}
		v := make([]float32, 8)
		for j := range v {
			v[j] = float32(r.NormFloat64())
		}
		cs[i] = search.Chunk{DocID: fmt.Sprintf("d%d", i/2), ChunkID: fmt.Sprintf("d%d#%d", i/2, i%2), Text: sb.String(), Vector: v, Terms: lexical.Analyze(sb.String())}
	}
	return cs
}

// sameHits fails unless both indexes answer every query alike: the same chunks in the same order
// with the same scores, to the bit.
func sameHits(t *testing.T, want, got *Index, tn tenant.ID, qs []search.Query) {
	t.Helper()
	ctx := context.Background()
	matched := 0
	for i, q := range qs {
		a, err := want.Search(ctx, tn, q)
		must(t, err)
		b, err := got.Search(ctx, tn, q)
		must(t, err)
		if len(a) != len(b) {
			t.Fatalf("query %d (%s %v): %d hits, want %d", i, q.Mode, q.Terms, len(b), len(a))
		}
		for j := range a {
			if a[j].ChunkID != b[j].ChunkID || a[j].Score != b[j].Score || a[j].LexicalScore != b[j].LexicalScore || a[j].VectorScore != b[j].VectorScore || a[j].Text != b[j].Text {
				t.Fatalf("query %d (%s %v) hit %d: %+v, want %+v", i, q.Mode, q.Terms, j, b[j], a[j])
			}
		}
		matched += len(a)
	}
	if matched == 0 {
		t.Fatal("no query matched anything: the comparison proves nothing")
	}
}

func queriesFrom(r *rand.Rand, cs []search.Chunk, n int) []search.Query {
	var qs []search.Query
	for i := range n {
		words := strings.Fields(cs[r.IntN(len(cs))].Text)
		terms := lexical.Analyze(strings.Join(words[:min(3, len(words))], " "))
		mode := []search.Mode{search.ModeLexical, search.ModeHybrid}[i%2]
		qs = append(qs, search.Query{Mode: mode, Terms: terms, Vector: cs[i].Vector, K: 10, MinScore: -1, Feedback: i%3 == 0})
	}
	return qs
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func segFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "lexseg-*"))
	must(t, err)
	return m
}

// BM25 over mapped segments, merged segments, a replayed tail and the memtable scores exactly as
// the all-in-memory postings do, before and after a restart, with deletes and replaced chunks;
// and each tenant's postings stay its own after the restart.
func TestLexicalSegmentsScoreLikeMemoryAndStayPerTenant(t *testing.T) {
	smallSegments(t)
	ctx := context.Background()
	dir := t.TempDir()
	a, b := tenant.MustParse("acme"), tenant.MustParse("beta")
	r := rand.New(rand.NewPCG(7, 8))
	ca, cb := zipfChunks(r, 1500, ""), zipfChunks(r, 600, "b")
	ca[1234].Text, ca[1234].Terms = "the hypersonic xylophonist", lexical.Analyze("the hypersonic xylophonist")
	cfg := Config{ExactBelow: 1 << 30} // exact vector scans: both indexes' vector halves agree
	mem, err := Open(cfg)
	must(t, err)
	cfg.Dir = dir
	disk, err := Open(cfg)
	must(t, err)
	for _, ix := range []*Index{mem, disk} {
		for s := 0; s < len(ca); s += 100 {
			must(t, ix.Upsert(ctx, a, ca[s:s+100]))
			must(t, ix.Flush(ctx))
			if s == 700 {
				for d := 0; d < 40; d++ {
					must(t, ix.DeleteDoc(ctx, a, fmt.Sprintf("d%d", 3*d)))
				}
				// A new version of a chunk: the old node is a tombstone in a segment.
				re := ca[11]
				re.Text, re.Terms = "revised w1x w2x w3x", lexical.Analyze("revised w1x w2x w3x")
				must(t, ix.Upsert(ctx, a, []search.Chunk{re}))
			}
		}
		must(t, ix.Upsert(ctx, b, cb))
		must(t, ix.Upsert(ctx, a, ca[:5])) // replaced after the last flush: in the memtable only
	}
	p := disk.parts[a]
	if len(p.files.lex.segs) < 2 || p.lex.memN == 0 {
		t.Fatalf("%d segments, %d postings in the memtable: the test does not cover merging or the memtable", len(p.files.lex.segs), p.lex.memN)
	}
	qa := queriesFrom(r, ca, 60)
	qb := queriesFrom(r, cb, 20)
	sameHits(t, mem, disk, a, qa)
	sameHits(t, mem, disk, b, qb)
	// A crash after a flush that left the small memtable in the terms log: the start replays it.
	must(t, disk.Flush(ctx))
	crashed := filepath.Join(t.TempDir(), "index")
	must(t, os.CopyFS(crashed, os.DirFS(dir)))
	must(t, disk.Close())
	ccfg := cfg
	ccfg.Dir = crashed
	cix, err := Open(ccfg)
	must(t, err)
	if cix.parts[a].lex.memN == 0 {
		t.Fatal("nothing replayed from the terms log: the test does not cover the tail")
	}
	sameHits(t, mem, cix, a, qa)
	sameHits(t, mem, cix, b, qb)
	must(t, cix.Close())

	// After a clean stop every posting is in a segment: the start replays nothing.
	disk, err = Open(cfg)
	must(t, err)
	defer disk.Close()
	if n, m := len(disk.parts[a].files.lex.segs), disk.parts[a].lex.memN; n < 2 || m != 0 {
		t.Fatalf("%d segments and %d postings replayed after a clean stop", n, m)
	}
	sameHits(t, mem, disk, a, qa)
	sameHits(t, mem, disk, b, qb)
	// Tenant isolation after the restart: A's rare word is found in A only, and no query of
	// either tenant's words finds anything of the other.
	xylo := search.Query{Mode: search.ModeLexical, Terms: lexical.Analyze("xylophonist"), K: 5, MinScore: -1}
	if hits, err := disk.Search(ctx, a, xylo); err != nil || len(hits) != 1 || hits[0].ChunkID != "d617#0" {
		t.Fatalf("A's word in A: %+v %v", hits, err)
	}
	for _, q := range append(append([]search.Query{xylo}, qa...), qb...) {
		for _, tn := range []tenant.ID{a, b} {
			hits, err := disk.Search(ctx, tn, search.Query{Mode: search.ModeLexical, Terms: q.Terms, K: 10, MinScore: -1})
			must(t, err)
			for _, h := range hits {
				own := strings.HasPrefix(h.Text, "bw") == (tn == b)
				if !own {
					t.Fatalf("tenant %s found the other tenant's chunk %s (%q)", tn, h.ChunkID, h.Text)
				}
			}
		}
	}
	// The files hold hashes, never words.
	for _, f := range segFiles(t, filepath.Join(dir, "acme.ix")) {
		raw, err := os.ReadFile(f)
		must(t, err)
		if bytes.Contains(raw, []byte("xylophon")) {
			t.Fatalf("a word is readable in %s", f)
		}
	}
}

// Damaged segments are found and rebuilt from the terms log, with a log line: a flipped bit in a
// posting list fails that query and the next flush rebuilds; a torn, missing or mangled segment
// at open is rebuilt there. The answers are then those of an undamaged index.
func TestLexicalSegmentDamageIsDetectedAndRebuilt(t *testing.T) {
	smallSegments(t)
	ctx := context.Background()
	dir := t.TempDir()
	a := tenant.MustParse("acme")
	r := rand.New(rand.NewPCG(9, 10))
	cs := zipfChunks(r, 800, "")
	var logs bytes.Buffer
	cfg := Config{Dir: dir, ExactBelow: 1 << 30, Log: slog.New(slog.NewTextHandler(&logs, nil))}
	ix, err := Open(cfg)
	must(t, err)
	for s := 0; s < len(cs); s += 100 {
		must(t, ix.Upsert(ctx, a, cs[s:s+100]))
		must(t, ix.Flush(ctx))
	}
	must(t, ix.Close())
	ref, err := Open(Config{ExactBelow: 1 << 30})
	must(t, err)
	must(t, ref.Upsert(ctx, a, cs))
	qs := queriesFrom(r, cs, 30)
	part := filepath.Join(dir, "acme.ix")

	// A flipped bit in the postings of the most common term (every query's feedback reads it).
	ix, err = Open(cfg)
	must(t, err)
	segs := ix.parts[a].files.lex.segs
	if len(segs) == 0 {
		t.Fatal("no segment to damage")
	}
	s := segs[0]
	common := lexical.Analyze("w1x")
	raw, err := s.lookup(lexical.Hash(common[0]))
	if err != nil || len(raw) == 0 {
		t.Fatalf("the common term is not in the first segment: %v", err)
	}
	off := int64(len(s.b[:cap(s.b)]) - cap(raw)) // raw's place in the file
	path := s.f.Name()
	fh, err := os.OpenFile(path, os.O_RDWR, 0)
	must(t, err)
	_, err = fh.WriteAt([]byte{raw[4] ^ 0x40}, off+4)
	must(t, err)
	must(t, fh.Close())
	_, err = ix.Search(ctx, a, search.Query{Mode: search.ModeLexical, Terms: common, K: 5, MinScore: -1})
	if err == nil || !strings.Contains(err.Error(), "checksum") {
		t.Fatalf("a flipped bit in a posting list: %v", err)
	}
	if !strings.Contains(logs.String(), "lexical segment corrupt") {
		t.Fatalf("no log line: %s", logs.String())
	}
	must(t, ix.Flush(ctx))
	if !strings.Contains(logs.String(), "rebuilt from the terms log") {
		t.Fatalf("the flush did not say it rebuilt: %s", logs.String())
	}
	sameHits(t, ref, ix, a, qs)
	must(t, ix.Close())
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("the damaged segment is still there: %v", err)
	}

	damage := map[string]func(path string){
		"torn":    func(path string) { must(t, os.Truncate(path, 100)) },
		"missing": func(path string) { must(t, os.Remove(path)) },
		"header": func(path string) {
			fh, err := os.OpenFile(path, os.O_RDWR, 0)
			must(t, err)
			var h [8]byte
			binary.LittleEndian.PutUint64(h[:], 99)
			_, err = fh.WriteAt(h[:], 16)
			must(t, err)
			must(t, fh.Close())
		},
	}
	for name, hurt := range damage {
		segs := segFiles(t, part)
		if len(segs) == 0 {
			t.Fatalf("%s: no segment to damage", name)
		}
		hurt(segs[len(segs)-1])
		logs.Reset()
		ix, err = Open(cfg)
		must(t, err)
		if n, _ := ix.Count(ctx, a); n != len(cs) {
			t.Fatalf("%s: count %d: the tenant was dropped instead of its segments rebuilt", name, n)
		}
		if !strings.Contains(logs.String(), "lexical segments unusable") {
			t.Fatalf("%s: no log line: %s", name, logs.String())
		}
		sameHits(t, ref, ix, a, qs)
		must(t, ix.Close()) // writes the rebuilt segments
	}
}

// A crash after a write cut a segment but before a manifest named it: the segment is not part of
// the index (removed at open), and the index is the last manifest's. An index written before the
// lexical segments (no lexical part in its manifest) opens by reading its terms log once.
func TestLexicalCrashBeforeManifestAndOlderIndex(t *testing.T) {
	smallSegments(t)
	ctx := context.Background()
	dir := t.TempDir()
	a := tenant.MustParse("acme")
	r := rand.New(rand.NewPCG(11, 12))
	cs := zipfChunks(r, 900, "")
	ix, err := Open(Config{Dir: dir, ExactBelow: 1 << 30})
	must(t, err)
	must(t, ix.Upsert(ctx, a, cs[:400]))
	must(t, ix.Flush(ctx))
	part := filepath.Join(dir, "acme.ix")
	before := len(segFiles(t, part))
	must(t, ix.Upsert(ctx, a, cs[400:])) // cuts segments (memPostings) no manifest names yet
	if len(segFiles(t, part)) <= before {
		t.Fatal("the write cut no segment: the test proves nothing")
	}
	crashed := filepath.Join(t.TempDir(), "index")
	must(t, os.CopyFS(crashed, os.DirFS(dir)))
	must(t, ix.Close())
	ref, err := Open(Config{ExactBelow: 1 << 30})
	must(t, err)
	must(t, ref.Upsert(ctx, a, cs[:400]))
	cix, err := Open(Config{Dir: crashed, ExactBelow: 1 << 30})
	must(t, err)
	if n, _ := cix.Count(ctx, a); n != 400 {
		t.Fatalf("count after the crash %d, want the manifest's 400", n)
	}
	cm, err := readManifest(filepath.Join(crashed, "acme.ix"))
	must(t, err)
	if got, named := len(segFiles(t, filepath.Join(crashed, "acme.ix"))), len(cm.Lex.Segs); got != named || named == 0 {
		t.Fatalf("%d segment files after the crash, the manifest names %d", got, named)
	}
	sameHits(t, ref, cix, a, queriesFrom(r, cs[:400], 20))
	must(t, cix.Close())

	// The whole index with its manifest's lexical part removed, as an older version wrote it.
	m, err := readManifest(part)
	must(t, err)
	m.Lex = nil
	must(t, writeManifest(part, m))
	ix, err = Open(Config{Dir: dir, ExactBelow: 1 << 30})
	must(t, err)
	must(t, ref.Upsert(ctx, a, cs[400:]))
	sameHits(t, ref, ix, a, queriesFrom(r, cs, 20))
	must(t, ix.Close())
	if m, err = readManifest(part); err != nil || m.Lex == nil || len(m.Lex.Segs) == 0 {
		t.Fatalf("after the older index was opened and closed: %+v %v", m, err)
	}
}

// lexTop's bounded heap picks the k best exactly as sorting every scored node does, ties (common
// with BM25's few distinct values) by node id.
func TestLexTopMatchesAFullSort(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	p := &partition{}
	for _, n := range []int{0, 1, 5, 100, 3000} {
		scores := make([]float32, n)
		var touched []uint32
		for _, id := range r.Perm(n) {
			scores[id] = float32(r.IntN(7)) // few values: many ties
			touched = append(touched, uint32(id))
		}
		want := make([]cand, 0, n)
		for _, id := range touched {
			want = append(want, cand{id, scores[id]})
		}
		slices.SortFunc(want, func(a, b cand) int {
			if c := cmp.Compare(b.sim, a.sim); c != 0 {
				return c
			}
			return cmp.Compare(a.id, b.id)
		})
		for _, k := range []int{0, 1, 10, 40, n + 3} {
			got, err := p.lexTop(scores, touched, k, search.Filter{})
			must(t, err)
			if w := want[:min(k, n)]; !slices.Equal(got, w) {
				t.Fatalf("n %d k %d: %v, want %v", n, k, got, w)
			}
		}
	}
}

// FuzzLexSegment: a segment file of any bytes (a valid one mangled) opens with an error or
// answers lookups and a merge read with errors, never a panic or a read outside the file.
func FuzzLexSegment(f *testing.F) {
	dir := f.TempDir()
	valid := filepath.Join(dir, "seed")
	ps := map[uint64][]posting{3: {{1, 2, 9}, {4, 1, 7}}, 10: {{2, 5, 8}}, 77: {{0, 1, 1}, {1, 1, 9}, {4, 3, 7}}}
	s, err := writeSeg(valid, 0, 0, 5, func(yield func(uint64, []posting) error) error {
		for _, h := range []uint64{3, 10, 77} {
			if err := yield(h, ps[h]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		f.Fatal(err)
	}
	_ = s.close()
	seed, err := os.ReadFile(valid)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add(seed[:len(seed)-5])
	f.Add(append(slices.Clone(seed[:64]), make([]byte, 40)...))
	f.Fuzz(func(t *testing.T, raw []byte) {
		path := filepath.Join(t.TempDir(), "lexseg-0.1")
		if err := os.WriteFile(path, raw, 0o600); err != nil {
			t.Fatal(err)
		}
		// The manifest's view taken from the header itself, so mangled bodies behind a whole
		// header reach the dictionary and postings.
		want := lexSegInfo{Size: int64(len(raw))}
		if len(raw) >= segHeaderSize {
			want.Lo, want.Hi = binary.LittleEndian.Uint32(raw[8:]), binary.LittleEndian.Uint32(raw[12:])
			want.Postings = int64(binary.LittleEndian.Uint64(raw[24:]))
		}
		s, err := openSeg(path, want)
		if err != nil {
			return
		}
		defer s.close()
		for _, h := range []uint64{0, 3, 10, 77, 1 << 63} {
			if raw, err := s.lookup(h); err == nil {
				for j := range len(raw) / segPostSize {
					_ = postingAt(raw, j)
				}
			}
		}
		_ = mergeSource([]*lexSeg{s}, func(uint32) bool { return false })(func(uint64, []posting) error { return nil })
	})
}

// Merges are written outside the partition's lock: queries run beside the flushes that merge
// (checked under -race), answers stay those of the in-memory postings; a merge whose segments a
// rebuild replaced meanwhile is dropped, its file removed.
func TestLexicalMergesRunBesideQueries(t *testing.T) {
	smallSegments(t)
	ctx := context.Background()
	a := tenant.MustParse("acme")
	r := rand.New(rand.NewPCG(15, 16))
	cs := zipfChunks(r, 1200, "")
	qs := queriesFrom(r, cs, 20)
	cfg := Config{Dir: t.TempDir(), ExactBelow: 1 << 30}
	ix, err := Open(cfg)
	must(t, err)
	defer ix.Close()
	mem, err := Open(Config{ExactBelow: 1 << 30})
	must(t, err)
	must(t, mem.Upsert(ctx, a, cs))
	must(t, ix.Upsert(ctx, a, cs[:50]))
	stop := make(chan struct{})
	done := make(chan error)
	go func() {
		var err error
		for i := 0; err == nil; i++ {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			_, err = ix.Search(ctx, a, qs[i%len(qs)])
		}
		done <- err
	}()
	merged := 0
	for s := 50; s < len(cs); s += 50 {
		must(t, ix.Upsert(ctx, a, cs[s:s+50]))
		next := ix.parts[a].lex.next
		must(t, ix.Flush(ctx))
		ix.parts[a].mu.RLock()
		merged += int(ix.parts[a].lex.next - next)
		ix.parts[a].mu.RUnlock()
	}
	close(stop)
	must(t, <-done)
	if merged < 5 {
		t.Fatalf("%d segments written by the flushes: merges not covered", merged)
	}
	sameHits(t, mem, ix, a, qs)

	// A rebuild from the terms log while a merge is planned: the merge is moot.
	p := ix.parts[a]
	must(t, ix.Upsert(ctx, a, cs[:300])) // new versions: cuts segments, none merged yet
	p.mu.Lock()
	plan := p.planMerge()
	p.mu.Unlock()
	if plan == nil {
		t.Fatal("no merge to plan")
	}
	p.mu.Lock()
	must(t, p.relex())
	segs := slices.Clone(p.files.lex.segs)
	p.mu.Unlock()
	must(t, p.runMerge(plan))
	if _, err := os.Stat(filepath.Join(p.dir, fileName(segKind(plan.seq), p.gen))); !os.IsNotExist(err) {
		t.Fatalf("the moot merge's file is there: %v", err)
	}
	if !slices.Equal(segs, p.files.lex.segs) || p.lex.merging {
		t.Fatal("the moot merge changed the segments")
	}
	must(t, mem.Upsert(ctx, a, cs[:300]))
	sameHits(t, mem, ix, a, qs)
}
