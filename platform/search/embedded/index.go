// Package embedded is the in-process vector index: one HNSW graph per tenant (so a query can only
// ever walk its own tenant's vectors), exact scan for small or filtered searches, tombstones for
// deletes with compaction. Each tenant's index is a folder of files under the data folder (see
// persist.go): vectors and int8 codes are fixed-size records mapped into memory, so opening an
// index reads neither and memory holds only the pages searches touch; the layer-0 links are read
// into memory at open from a base file and a log of the edits since; chunk records and texts are
// append-only logs read only for the hits returned; a small manifest, rewritten atomically at each
// flush, says how much of each file is the index and the tenant's checkpoint (the event-log position
// it is complete up to, see search.Index). A tenant whose files are missing, torn or corrupt has
// checkpoint 0, and the retrieval module rebuilds it from the log.
package embedded

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"runtime"
	"slices"
	"sync"
	"time"
	"unsafe"

	"github.com/crispy-enigma/crispy/platform/search"
	"github.com/crispy-enigma/crispy/platform/tenant"

	"github.com/crispy-enigma/crispy/platform/atomicfile"
)

// Config configures the index.
type Config struct {
	// Dir holds one folder per tenant ({tenant}.ix). Empty: memory only (tests).
	Dir string
	// M is the number of links per node (default 24; twice that at layer 0). The defaults were chosen
	// with BenchmarkHNSW20k: M 16/ef 96 kept recall@10 at 1.0 on tight clusters but fell to 0.95 on
	// loose ones and 0.60 on uniform random vectors; M 24/efC 200/ef 128 gives 0.97 and 0.75 for about
	// twice the build time.
	M int
	// EfConstruction is the build beam width (default EfSearch, at least 2M: a node is linked to the neighbours
	// a beam as wide as a query's finds, the beam whose results the links serve; a wider one finds
	// links queries cannot use. It was 200: at 20,000 × 384 clustered-wide, 0.9655 recall@10 at
	// 200, 0.9615 at 128, 0.9625 at 100 — the query beam, not the build's, bounds recall there —
	// and the build beam is ~70% of an insert's CPU. Partitions keep the width they were built
	// with: it is in their manifest).
	EfConstruction int
	// EfSearch is the query beam width (default 128; raised to k when k is larger).
	EfSearch int
	// ExactBelow: partitions with fewer live chunks are searched exactly (default 2000).
	ExactBelow int
	// InsertWorkers is how many goroutines link the chunks of one Upsert into the graph (default
	// GOMAXPROCS; 1: one after another).
	InsertWorkers int
	Log           *slog.Logger
}

func (c *Config) defaults() {
	if c.M <= 0 {
		c.M = 24
	}
	// The links log records a link count and slot in one byte each (hnsw.go linkEditSize).
	c.M = min(c.M, 127)
	if c.EfSearch <= 0 {
		c.EfSearch = 128
	}
	if c.EfConstruction <= 0 {
		// Never fewer candidates than a full layer-0 link list (2M).
		c.EfConstruction = max(c.EfSearch, 2*c.M)
	}
	if c.InsertWorkers <= 0 {
		c.InsertWorkers = runtime.GOMAXPROCS(0)
	}
	if c.ExactBelow == 0 {
		c.ExactBelow = 2000
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
}

// Index is the embedded vector index.
type Index struct {
	cfg    Config
	mu     sync.RWMutex
	parts  map[tenant.ID]*partition
	closed bool
}

// chunkRef is where a node's chunk record and text are in the partition's logs.
type chunkRef struct {
	rec     int64
	recLen  uint32
	textLen uint32
	text    int64
}

// partition is one tenant's graph, chunk records and checkpoint.
type partition struct {
	mu       sync.RWMutex
	t        tenant.ID
	dir      string // the tenant's folder; "" without one
	gen      uint64 // file generation: a compaction writes the next one
	upperSeq uint64 // the upper-links log's number within the generation (persist.go)
	linkSeq  uint64 // the layer-0 links' base and log number within the generation (persist.go)
	linkBase int    // nodes in the links base file
	// oldLinks is the links log a rewrite replaced during a flush, until its manifest is written;
	// linksLost: a failed flush dropped link edits that are not on disk, so the next flush writes
	// a new base.
	oldLinks  *linksState
	linksLost bool
	g         *graph
	files     *partFiles
	refs      []chunkRef // by node id
	deleted   []bool
	ids       *ids // chunk and document ids to nodes (ids.go)
	lex       *lexIndex
	live      int
	dirty     bool   // changed since the last flush
	cp        uint64 // checkpoint: see search.Index
	gone      bool   // dropped by DeleteTenant or Close: its files are closed
}

// Open opens every tenant's index in cfg.Dir (reading manifests and chunk ids, not vectors). A
// tenant whose files are torn or corrupt is removed and starts empty with checkpoint 0, so the
// retrieval module rebuilds it from the log; so are snapshots of the older whole-file format.
func Open(cfg Config) (*Index, error) {
	cfg.defaults()
	ix := &Index{cfg: cfg, parts: map[tenant.ID]*partition{}}
	if cfg.Dir == "" {
		return ix, nil
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("embedded index: %w", err)
	}
	if err := ix.load(); err != nil {
		return nil, err
	}
	return ix, nil
}

// partitionList is the tenants' partitions at the time of the call, for work that then takes each
// partition's own lock without holding the index's.
func (ix *Index) partitionList() []*partition {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	parts := make([]*partition, 0, len(ix.parts))
	for _, p := range ix.parts {
		parts = append(parts, p)
	}
	return parts
}

func (ix *Index) seed(t tenant.ID, n int) uint64 {
	seed := uint64(n)
	for _, r := range t.String() {
		seed = seed*131 + uint64(r)
	}
	return seed
}

func (ix *Index) part(t tenant.ID, create bool, dim int) (*partition, error) {
	if t.IsZero() {
		return nil, fmt.Errorf("embedded index: missing tenant")
	}
	ix.mu.RLock()
	p, closed := ix.parts[t], ix.closed
	ix.mu.RUnlock()
	if closed {
		return nil, search.ErrClosed
	}
	if p != nil || !create {
		return p, nil
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.closed {
		return nil, search.ErrClosed
	}
	if p = ix.parts[t]; p == nil {
		var err error
		if p, err = ix.newPartition(t, dim, 1); err != nil {
			return nil, fmt.Errorf("embedded index of %s: %w", t, err)
		}
		ix.parts[t] = p
	}
	return p, nil
}

// lockCurrent returns t's partition locked for writing, making sure it is still the tenant's
// partition once locked: a DeleteTenant in between replaces it, and a write to the old one would be
// lost.
func (ix *Index) lockCurrent(t tenant.ID, create bool, dim int) (*partition, error) {
	for {
		p, err := ix.part(t, create, dim)
		if err != nil || p == nil {
			return nil, err
		}
		p.mu.Lock()
		ix.mu.RLock()
		current, closed := ix.parts[t] == p, ix.closed
		ix.mu.RUnlock()
		if closed {
			p.mu.Unlock()
			return nil, search.ErrClosed
		}
		if current && !p.gone {
			return p, nil
		}
		p.mu.Unlock()
	}
}

// CheckWrite implements search.Index: ErrClosed after Close, ErrDimension when t holds vectors of
// another dimension.
func (ix *Index) CheckWrite(ctx context.Context, t tenant.ID, dim int) error {
	p, err := ix.part(t, false, 0)
	if err != nil || p == nil || dim == 0 {
		return err
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.live > 0 && p.g.dim != dim {
		return fmt.Errorf("write to %s: %w: index has %d, vectors %d (reindex after changing the embeddings model)", t, search.ErrDimension, p.g.dim, dim)
	}
	return nil
}

// Checkpoint implements search.Index.
func (ix *Index) Checkpoint(ctx context.Context, t tenant.ID) (uint64, error) {
	p, err := ix.part(t, false, 0)
	if err != nil || p == nil {
		return 0, err
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.cp, nil
}

// SetCheckpoint implements search.Index. The checkpoint is written with the partition's next
// manifest, under the same lock as its content, so a manifest never claims more than the files
// hold. A tenant without chunks gets an empty partition, so its next start need not read the log
// from the beginning.
func (ix *Index) SetCheckpoint(ctx context.Context, t tenant.ID, pos uint64) error {
	p, err := ix.lockCurrent(t, true, 0)
	if err != nil {
		return err
	}
	defer p.mu.Unlock()
	if p.cp != pos {
		p.cp, p.dirty = pos, true
	}
	return nil
}

func normalized(v []float32) []float32 {
	var n float64
	for _, x := range v {
		n += float64(x) * float64(x)
	}
	out := make([]float32, len(v))
	if n == 0 {
		return out
	}
	inv := float32(1 / math.Sqrt(n))
	for i, x := range v {
		out[i] = x * inv
	}
	return out
}

// Upsert implements search.Index.
func (ix *Index) Upsert(ctx context.Context, t tenant.ID, chunks []search.Chunk) error {
	if len(chunks) == 0 {
		return nil
	}
	dim := len(chunks[0].Vector)
	for _, c := range chunks {
		if len(c.Vector) != dim {
			return fmt.Errorf("upsert %s for %s: %w: vectors of %d and %d dimensions in one write", c.ChunkID, t, search.ErrDimension, dim, len(c.Vector))
		}
	}
	p, err := ix.lockCurrent(t, true, dim)
	if err != nil || p == nil {
		return err
	}
	defer p.mu.Unlock()
	if p.live == 0 && p.g.dim != dim {
		// Nothing live of the old dimension (an empty tenant, or one whose documents were all
		// deleted): start a graph of the new one.
		if err := ix.rebuild(p, dim); err != nil {
			return err
		}
	}
	if dim != p.g.dim {
		return fmt.Errorf("upsert %s for %s: %w: index has %d, vector %d (reindex after changing the embeddings model)", chunks[0].ChunkID, t, search.ErrDimension, p.g.dim, dim)
	}
	if err := p.g.reserve(len(chunks)); err != nil {
		return fmt.Errorf("upsert for %s: %w", t, err)
	}
	p.dirty = true
	err = p.addAll(ctx, t, chunks)
	// The chunks added are linked together (on several cores), also when one failed: those
	// before it are in the index.
	p.g.linkPending()
	if err != nil {
		return err
	}
	return ix.maybeCompact(p)
}

// addAll adds chunks one after another, replacing older versions; their nodes are placed, and the
// caller links them (graph.linkPending).
func (p *partition) addAll(ctx context.Context, t tenant.ID, chunks []search.Chunk) error {
	for i, c := range chunks {
		if i%256 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		old, ok, err := p.findChunk(c.ChunkID)
		if err == nil && ok {
			if err = p.tombstone(old); err == nil {
				p.ids.removeChunk(p.ids.hash(c.ChunkID), old)
			}
		}
		if err != nil {
			return fmt.Errorf("upsert %s for %s: %w", c.ChunkID, t, err)
		}
		tfs, dl := termCounts(c.Terms)
		if err := p.add(c, normalized(c.Vector), []byte(c.Text), tfs, dl); err != nil {
			return fmt.Errorf("upsert %s for %s: %w", c.ChunkID, t, err)
		}
	}
	return nil
}

// add appends one chunk: its vector to the graph (placed: the caller links it), its text, record
// and terms to the logs.
func (p *partition) add(c search.Chunk, v []float32, text []byte, tfs []termFreq, dl uint32) error {
	id := uint32(p.g.len())
	toff, err := p.files.text.append(text)
	if err != nil {
		return err
	}
	tref, tlen, undoTerms, err := p.appendTerms(id, tfs, dl)
	if err != nil {
		return err
	}
	rec := encodeChunk(id, toff, uint32(len(text)), &c)
	roff, err := p.files.chunks.append(rec)
	if err == nil {
		err = p.setTermsRef(id, tref, tlen, dl)
	}
	if err != nil {
		undoTerms()
		return err
	}
	p.g.place(v)
	p.refs = append(p.refs, chunkRef{rec: roff, recLen: uint32(len(rec)), textLen: uint32(len(text)), text: toff})
	p.deleted = append(p.deleted, false)
	p.ids.addChunk(p.ids.hash(c.ChunkID), id)
	p.ids.addDoc(p.ids.hash(c.DocID), id)
	p.live++
	return p.addTerms(id, tfs, dl)
}

// findChunk returns the live node holding chunk id, if any.
func (p *partition) findChunk(id string) (uint32, bool, error) {
	for _, n := range p.ids.chunkCandidates(p.ids.hash(id)) {
		c, err := p.chunk(n)
		if err != nil {
			return 0, false, err
		}
		if c.ChunkID == id {
			return n, true, nil
		}
	}
	return 0, false, nil
}

// tombstone deletes node id: recorded in the tombstone log, and its text overwritten with zeros in
// place, so a deleted chunk's text does not stay readable in the index's files.
func (p *partition) tombstone(id uint32) error {
	if p.deleted[id] {
		return nil
	}
	if _, err := p.files.tombs.append(le32(id)); err != nil {
		return err
	}
	r := p.refs[id]
	if err := p.files.text.overwrite(make([]byte, r.textLen), r.text); err != nil {
		return err
	}
	p.deleted[id] = true
	p.removeTerms(id)
	p.live--
	p.dirty = true
	return nil
}

// maybeCompact rebuilds a partition whose tombstones outnumber its live chunks, so searches do not
// wade through the dead.
func (ix *Index) maybeCompact(p *partition) error {
	dead := p.g.len() - p.live
	if dead < 1000 || dead < p.live {
		return nil
	}
	return ix.rebuild(p, p.g.dim)
}

// DeleteDoc implements search.Index.
func (ix *Index) DeleteDoc(ctx context.Context, t tenant.ID, docID string) error {
	p, err := ix.lockCurrent(t, false, 0)
	if err != nil || p == nil {
		return err
	}
	defer p.mu.Unlock()
	n := 0
	h := p.ids.hash(docID)
	var others []uint32 // nodes of documents whose id hashes like docID's
	for _, id := range p.ids.docNodes(h) {
		if p.deleted[id] {
			continue
		}
		c, err := p.chunk(id)
		if err != nil {
			return fmt.Errorf("delete %s of %s: %w", docID, t, err)
		}
		if c.DocID != docID {
			others = append(others, id)
			continue
		}
		if err := p.tombstone(id); err != nil {
			return fmt.Errorf("delete %s of %s: %w", docID, t, err)
		}
		p.ids.removeChunk(p.ids.hash(c.ChunkID), id)
		n++
	}
	p.ids.setDocNodes(h, others)
	if n > 0 {
		return ix.maybeCompact(p)
	}
	return nil
}

// DeleteTenant implements search.Index: the tenant's partition, files and checkpoint are gone.
func (ix *Index) DeleteTenant(ctx context.Context, t tenant.ID) error {
	if t.IsZero() {
		return fmt.Errorf("embedded index: missing tenant")
	}
	// The partition's lock first (as every writer takes it), so no write or compaction of it is
	// under way while its files go; the index's lock while they go, so no new partition of the
	// tenant is created in the folder being removed.
	for {
		ix.mu.RLock()
		p, closed := ix.parts[t], ix.closed
		ix.mu.RUnlock()
		if closed {
			return search.ErrClosed
		}
		if p != nil {
			p.mu.Lock()
		}
		ix.mu.Lock()
		if ix.parts[t] != p {
			ix.mu.Unlock()
			if p != nil {
				p.mu.Unlock()
			}
			continue
		}
		delete(ix.parts, t)
		var err error
		if ix.cfg.Dir != "" {
			// Without its files the tenant restarts from checkpoint 0: a crash in the middle of
			// the rebuild that follows is caught up from the beginning of the log.
			if err = os.RemoveAll(ix.partDir(t)); err == nil {
				err = atomicfile.SyncDir(ix.cfg.Dir)
			}
		}
		ix.mu.Unlock()
		if p != nil {
			p.release()
			p.mu.Unlock()
		}
		if err != nil {
			return fmt.Errorf("delete the index files of %s: %w", t, err)
		}
		return nil
	}
}

// release closes the partition's files; it answers as empty from then on. The caller holds p.mu.
func (p *partition) release() {
	if p.gone {
		return
	}
	p.gone, p.live = true, 0
	if p.files != nil {
		_ = p.files.close()
	}
}

// Vectors implements search.VectorSource: the float vectors (unit length, as stored) of docID's
// live chunks that were written with an EmbedKey, read with pread like the re-rank's.
func (ix *Index) Vectors(ctx context.Context, t tenant.ID, docID string) (map[string][]float32, error) {
	p, err := ix.part(t, false, 0)
	if err != nil || p == nil {
		return nil, err
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	var out map[string][]float32
	for _, id := range p.ids.docNodes(p.ids.hash(docID)) {
		if p.deleted[id] {
			continue
		}
		c, err := p.chunk(id)
		if err != nil {
			return nil, fmt.Errorf("vectors of %s in %s: %w", docID, t, err)
		}
		if c.DocID != docID || c.EmbedKey == "" {
			continue // a document whose id hashes alike, or a chunk written without a key
		}
		v := make([]float32, p.g.dim)
		raw := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(v))), len(v)*4)
		if err := p.g.vecs.readAt(raw, int64(id)*int64(len(raw))); err != nil {
			return nil, fmt.Errorf("vectors of %s in %s: node %d: %w", docID, t, id, err)
		}
		if out == nil {
			out = map[string][]float32{}
		}
		out[c.EmbedKey] = v
	}
	return out, nil
}

// Count implements search.Index.
func (ix *Index) Count(ctx context.Context, t tenant.ID) (int, error) {
	p, err := ix.part(t, false, 0)
	if err != nil || p == nil {
		return 0, err
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.live, nil
}

// Search implements search.Index. The vector half: HNSW for large partitions, an exact scan for
// small ones and for filtered queries (a filter can exclude most of the graph, which breaks a beam
// search's recall). The lexical half: BM25 over the postings. Hybrid fuses the two by reciprocal
// rank on node ids, then fills in, for each hit returned, the score of the half that did not
// return it (its cosine from its float vector, its BM25 from the scores already summed). Only the
// hits returned have their chunk records and texts read.
func (ix *Index) Search(ctx context.Context, t tenant.ID, q search.Query) ([]search.Hit, error) {
	if q.K <= 0 {
		return nil, nil
	}
	mode := q.Mode
	if mode == "" {
		mode = search.ModeVector
	}
	p, err := ix.part(t, false, 0)
	if err != nil || p == nil {
		return nil, err
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.live == 0 {
		return nil, nil
	}
	var v []float32
	if mode != search.ModeLexical {
		if len(q.Vector) != p.g.dim {
			return nil, fmt.Errorf("search %s: %w: index has %d, query %d (reindex after changing the embeddings model)", t, search.ErrDimension, p.g.dim, len(q.Vector))
		}
		v = normalized(q.Vector)
	}
	depth := q.K
	if mode == search.ModeHybrid {
		depth = search.Depth(q.K)
	}
	// The query's own BM25 scores give every hit its LexicalScore (what a relevance threshold
	// reads); with feedback the ranking is by the expanded query's.
	q0 := queryTerms(q.Terms)
	scores, touched, best, err := p.lexScores(q0)
	if err != nil {
		return nil, fmt.Errorf("search %s: %w", t, err)
	}
	rankScores, rankTouched, rankBest := scores, touched, best
	vq, moved := v, false
	if q.Feedback && mode != search.ModeVector && len(touched) > 0 {
		fb, err := p.lexTop(scores, touched, feedbackDocs, q.Filter)
		if err == nil {
			var q1 []qterm
			if q1, err = p.rm3(q0, fb); err == nil {
				rankScores, rankTouched, rankBest, err = p.lexScores(q1)
				if err == nil && v != nil {
					vq, err = p.rocchio(v, fb)
					moved = true
				}
			}
		}
		if err != nil {
			return nil, fmt.Errorf("search %s: %w", t, err)
		}
	}
	var vec []cand
	if v != nil {
		if vec, err = ix.vectorTop(p, vq, depth, q.Filter); err != nil {
			return nil, fmt.Errorf("search %s: %w", t, err)
		}
	}
	var lex []cand
	if mode != search.ModeVector {
		if lex, err = p.lexTop(rankScores, rankTouched, depth, q.Filter); err != nil {
			return nil, fmt.Errorf("search %s: %w", t, err)
		}
	}
	norm := func(raw float32, best float64) float64 {
		if best <= 0 {
			return 0
		}
		return float64(raw) / best
	}
	type scored struct {
		id                  uint32
		score, cosine, bm25 float64
		hasCos              bool
	}
	var ranked []scored
	switch mode {
	case search.ModeVector:
		for _, c := range vec {
			ranked = append(ranked, scored{id: c.id, score: float64(c.sim), cosine: float64(c.sim), hasCos: true})
		}
	case search.ModeLexical:
		for _, c := range lex {
			ranked = append(ranked, scored{id: c.id, score: norm(c.sim, rankBest), bm25: norm(scores[c.id], best)})
		}
	default:
		f := q.Fusion.WithDefaults()
		fused := map[uint32]*scored{}
		var order []uint32
		vote := func(list []cand, w float64, isVec bool) {
			for i, c := range list {
				s := fused[c.id]
				if s == nil {
					s = &scored{id: c.id}
					fused[c.id] = s
					order = append(order, c.id)
				}
				if isVec && !moved {
					s.cosine, s.hasCos = float64(c.sim), true
				}
				s.score += w / float64(f.K+i+1)
			}
		}
		vote(vec, f.VectorWeight, true)
		vote(lex, f.LexicalWeight, false)
		best := (f.VectorWeight + f.LexicalWeight) / float64(f.K+1)
		for _, id := range order {
			s := fused[id]
			s.score /= best
			ranked = append(ranked, *s)
		}
		// Stable: ties keep the vector half's order, then the lexical half's.
		slices.SortStableFunc(ranked, func(a, b scored) int { return cmp.Compare(b.score, a.score) })
	}
	hits := make([]search.Hit, 0, min(q.K, len(ranked)))
	var buf []float32
	for _, r := range ranked {
		if len(hits) == q.K {
			break
		}
		if r.score < q.MinScore {
			break
		}
		if !r.hasCos && v != nil {
			if buf == nil {
				buf = make([]float32, p.g.dim)
			}
			if r.cosine, err = p.cosine(v, r.id, buf); err != nil {
				return nil, fmt.Errorf("search %s: %w", t, err)
			}
		}
		if scores != nil && r.bm25 == 0 {
			r.bm25 = norm(scores[r.id], best)
		}
		chunk, err := p.chunk(r.id)
		if err != nil {
			return nil, fmt.Errorf("search %s: %w", t, err)
		}
		text, err := p.text(r.id)
		if err != nil {
			return nil, fmt.Errorf("search %s: %w", t, err)
		}
		chunk.Text = string(text)
		hits = append(hits, search.Hit{Chunk: chunk, Score: r.score, VectorScore: r.cosine, LexicalScore: r.bm25})
	}
	return hits, nil
}

// vectorTop returns the k nearest live nodes that pass f, best first, scored on their float
// vectors.
func (ix *Index) vectorTop(p *partition, v []float32, k int, f search.Filter) ([]cand, error) {
	// Candidates by their codes, then the best of them re-ranked on their float vectors: enough
	// of them that quantisation error cannot push one of the k best out.
	keep := max(4*k, rerankMin)
	var cs []cand
	var err error
	if p.live < ix.cfg.ExactBelow || !f.IsZero() {
		if cs, err = p.exact(v, keep, f); err != nil {
			return nil, err
		}
	} else {
		ef := max(ix.cfg.EfSearch, k)
		// Tombstones take places in the beam; widen it by the dead share.
		if dead := p.g.len() - p.live; dead > 0 {
			ef = ef * p.g.len() / p.live
		}
		for _, c := range p.g.search(v, ef) {
			if !p.deleted[c.id] {
				cs = append(cs, c)
			}
		}
	}
	if cs, err = p.rerank(v, cs[:min(len(cs), keep)]); err != nil {
		return nil, err
	}
	return cs[:min(len(cs), k)], nil
}

// cosine scores node id on its float vector (read into buf with pread).
func (p *partition) cosine(v []float32, id uint32, buf []float32) (float64, error) {
	raw := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(buf))), len(buf)*4)
	if err := p.g.vecs.readAt(raw, int64(id)*int64(len(raw))); err != nil {
		return 0, fmt.Errorf("vector of node %d: %w", id, err)
	}
	return float64(dot(v, buf)), nil
}

// rerankMin is the fewest candidates re-ranked on float vectors.
const rerankMin = 40

// rerank scores cs on their float vectors, read with pread (so they never become resident), best
// first.
func (p *partition) rerank(v []float32, cs []cand) ([]cand, error) {
	buf := make([]float32, p.g.dim)
	raw := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(buf))), len(buf)*4)
	for i, c := range cs {
		if err := p.g.vecs.readAt(raw, int64(c.id)*int64(len(raw))); err != nil {
			return nil, fmt.Errorf("vector of node %d: %w", c.id, err)
		}
		cs[i].sim = dot(v, buf)
	}
	slices.SortFunc(cs, func(a, b cand) int { return cmp.Compare(b.sim, a.sim) })
	return cs, nil
}

// exact scans every live chunk that passes f on its code, keeping the k best (re-ranked after). With a document filter only that
// document's nodes are scanned; a metadata filter reads the chunk records of the nodes it checks.
func (p *partition) exact(v []float32, k int, f search.Filter) ([]cand, error) {
	h := make(minHeap, 0, k+1)
	consider := func(id uint32) error {
		if p.deleted[id] {
			return nil
		}
		if !f.IsZero() { // the document filter's candidates may hold a colliding document's nodes
			c, err := p.chunk(id)
			if err != nil {
				return err
			}
			if !f.Matches(&c) {
				return nil
			}
		}
		s := p.g.simQ(v, id)
		if len(h) < k {
			h.push(cand{id, s})
		} else if s > h[0].sim {
			h[0] = cand{id, s}
			h.push(h.pop()) // restore the heap after replacing the root
		}
		return nil
	}
	if len(f.DocIDs) > 0 {
		seen := map[uint32]bool{}
		for _, d := range f.DocIDs {
			for _, id := range p.ids.docNodes(p.ids.hash(d)) {
				if seen[id] {
					continue
				}
				seen[id] = true
				if err := consider(id); err != nil {
					return nil, err
				}
			}
		}
	} else {
		for id := range p.g.len() {
			if err := consider(uint32(id)); err != nil {
				return nil, err
			}
		}
	}
	out := []cand(h)
	slices.SortFunc(out, func(a, b cand) int { return cmp.Compare(b.sim, a.sim) })
	return out, nil
}

// Close writes every changed partition's manifest and releases the index.
func (ix *Index) Close() error {
	ix.lexFinal()
	ix.foldLinksForClose()
	err := ix.Flush(context.Background())
	ix.mu.Lock()
	if ix.closed {
		ix.mu.Unlock()
		return err
	}
	ix.closed = true
	parts := ix.parts
	ix.mu.Unlock()
	for _, p := range parts {
		p.mu.Lock()
		p.release()
		p.mu.Unlock()
	}
	return err
}

// FlushEvery writes changed partitions every interval until ctx ends (run it in the module's errgroup).
func (ix *Index) FlushEvery(ctx context.Context, interval time.Duration) error {
	tk := time.NewTicker(interval)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tk.C:
			if err := ix.Flush(ctx); err != nil {
				ix.cfg.Log.Error("embedded index flush failed", "error", err)
			}
		}
	}
}

var _ search.Index = (*Index)(nil)
var _ search.Flusher = (*Index)(nil)
var _ search.VectorSource = (*Index)(nil)
