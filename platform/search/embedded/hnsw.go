package embedded

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"unsafe"
)

// graph is a Hierarchical Navigable Small World graph (Malkov & Yashunin, 2016) over unit vectors,
// scored by dot product (= cosine similarity). The partition's lock guards it (one writer or many
// readers); the one writer links a batch of new nodes on several goroutines (linkPending), as
// hnswlib does: each node's links are read and changed under its lock stripe, the link log and the
// entry point under locks of their own.
//
// Its vectors and int8 codes are fixed-size records in regions, files mapped into memory under the
// index folder, written once per node: opening a graph reads neither, and only the pages a search
// or an insert touches become resident. Its layer-0 links (nearly all of its links) are fixed-size
// records in memory (lk), persisted as a base file plus a log of the edits since (linkEdits): an
// insert changes the links of some 24 nodes spread over the whole graph, and changing them in a
// shared mapping made every flush write again each 4 KB page a new node touched (7.8x the
// vectors' size at 100k with a flush per 1,000 nodes; ~40 KB per node with a flush per node). The
// few nodes above layer 0 (about one in M) keep their upper links in memory (upper), persisted as
// a log of changed nodes.
//
// Searches walk the graph on int8 codes of the vectors (codes: each vector scaled by its largest
// component to [-127, 127], a quarter of its size) and re-rank the best candidates with the exact
// float32 vectors read with pread: a search makes resident only codes and links, never the float
// vectors. Inserts build on the float32 vectors (the graph's quality), through the mapping.
type graph struct {
	dim   int
	m, m0 int // links per node above layer 0, and at layer 0
	efC   int
	ml    float64
	n     int      // nodes
	vecs  *region  // node i's vector: float32s[i*dim:(i+1)*dim]
	lk    []uint32 // node i's layer-0 links: lk[i*(1+m0)]: count, then m0 slots
	// checked marks, per node, the layer-0 slots whose link was last pruned with the list
	// (worstNonDiverse): bit s of checked[i*ckW+s/64]. Memory only; a link written since is
	// unchecked (setLink clears its bit), and a node past len(checked)/ckW has all unchecked.
	checked []uint64
	ckW     int
	// linkEdits records every change of lk since the last flush (linkEdit records), when the
	// graph is persisted (logLinks): the flush appends them to the links log.
	linkEdits []byte
	logLinks  bool
	codes     *region // node i's code: cb[i*recQ:], dim int8s padded to 4 bytes, then its float32 scale
	recQ      int
	vf        []float32
	cb        []byte
	upper     map[uint32][][]uint32 // upper[i][l-1]: node i's links on layer l >= 1
	dirtyUp   map[uint32]struct{}   // nodes whose upper links changed since the last flush
	entry     int32                 // -1 when empty
	maxLevel  int
	rng       *rand.Rand
	visited   sync.Pool
	// pending are the nodes placed (vector, code, level) but not linked yet: an Upsert places its
	// chunks one after another and links them together before it returns (linkPending).
	pending []uint32
	// workers is how many goroutines link a batch (at most GOMAXPROCS).
	workers int
	// stripes guard the links of the nodes whose id they hold modulo len: every read of a node's
	// links while a batch is linked copies them under its stripe; no goroutine holds two stripes.
	stripes [linkStripes]sync.Mutex
	logMu   sync.Mutex // linkEdits and dirtyUp while a batch is linked
	entryMu sync.Mutex // entry and maxLevel while a batch is linked
}

// linkStripes is the number of lock stripes over the nodes' links: enough that the goroutines of
// a batch (a few per core) rarely wait on one another.
const linkStripes = 1024

func (g *graph) stripe(i uint32) *sync.Mutex { return &g.stripes[i%linkStripes] }

func newGraph(dim, m, efC int, seed uint64, vecs, codes *region) *graph {
	g := &graph{dim: dim, m: m, m0: 2 * m, ckW: (2*m + 63) / 64, efC: efC, ml: 1 / math.Log(float64(m)), entry: -1,
		vecs: vecs, codes: codes, recQ: codeSize(dim),
		upper: map[uint32][][]uint32{}, dirtyUp: map[uint32]struct{}{},
		rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), workers: 1}
	g.remap()
	return g
}

// remap refreshes the typed views after a region moved.
func (g *graph) remap() {
	g.vf, g.cb = g.vecs.float32s(), g.codes.b
}

// codeSize is the bytes of one code record: dim int8s padded to 4 bytes, then a float32 scale.
func codeSize(dim int) int { return (dim+3)/4*4 + 4 }

// code returns node i's int8 code and its scale.
func (g *graph) code(i uint32) ([]int8, float32) {
	o := int(i) * g.recQ
	c := unsafe.Slice((*int8)(unsafe.Pointer(&g.cb[o])), g.dim)
	return c, *(*float32)(unsafe.Pointer(&g.cb[o+g.recQ-4]))
}

// setCode writes node i's code for the unit vector v.
func (g *graph) setCode(i uint32, v []float32) {
	var mx float32
	for _, x := range v {
		mx = max(mx, x, -x)
	}
	o := int(i) * g.recQ
	rec := g.cb[o : o+g.recQ]
	scale := float32(0)
	if mx > 0 {
		scale = mx / 127
		for j, x := range v {
			rec[j] = byte(int8(math.Round(float64(x / scale))))
		}
	}
	*(*float32)(unsafe.Pointer(&rec[g.recQ-4])) = scale
}

// simQ is the approximate similarity of q and node i from its code.
func (g *graph) simQ(q []float32, i uint32) float32 {
	c, s := g.code(i)
	return dotQ8(q, c) * s
}

func (g *graph) len() int { return g.n }

func (g *graph) vec(i uint32) []float32 {
	o := int(i) * g.dim
	return g.vf[o : o+g.dim : o+g.dim]
}

// neighbors returns node i's links on layer l (a view: copy before keeping it). Callers skip a
// link at or past n, which only damaged files could hold (the links of manifest version 3 were
// changed in place and could name nodes a crash lost; see persist.go).
func (g *graph) neighbors(i uint32, l int) []uint32 {
	if l == 0 {
		o := int(i) * (1 + g.m0)
		c := min(int(g.lk[o]), g.m0)
		return g.lk[o+1 : o+1+c : o+1+c]
	}
	up := g.upper[i]
	if l-1 >= len(up) {
		return nil
	}
	return up[l-1]
}

// copyNeighbors appends node i's links on layer l to buf under its stripe: what a search reads while
// other goroutines may be linking.
func (g *graph) copyNeighbors(i uint32, l int, buf []uint32) []uint32 {
	mu := g.stripe(i)
	mu.Lock()
	buf = append(buf[:0], g.neighbors(i, l)...)
	mu.Unlock()
	return buf
}

// setNeighbors replaces node i's links on layer l; the caller holds i's stripe.
func (g *graph) setNeighbors(i uint32, l int, ids []uint32) {
	if l == 0 {
		if len(ids) == 0 {
			g.setLink(i, 0, 0, 0)
		}
		for j, x := range ids {
			g.setLink(i, j+1, j, x)
		}
		return
	}
	g.upper[i][l-1] = ids
	g.logMu.Lock()
	g.dirtyUp[i] = struct{}{}
	g.logMu.Unlock()
}

// linkEditSize is one edit of the layer-0 links: node (uint32), its new link count (uint8), the
// slot written (uint8) and the link in it (uint32). An insert makes about 2M of them (its own
// links, one per neighbour it joins): ~480 bytes at M 24, a third of a 384-d vector.
const linkEditSize = 10

// setLink sets node i's layer-0 link count to count and its slot to v, and records the edit. The
// caller holds i's stripe, so the edits of one node are logged in the order they were made.
func (g *graph) setLink(i uint32, count, slot int, v uint32) {
	g.writeLink(i, count, slot, v)
	if g.logLinks {
		g.logMu.Lock()
		g.linkEdits = binary.LittleEndian.AppendUint32(g.linkEdits, i)
		g.linkEdits = append(g.linkEdits, byte(count), byte(slot))
		g.linkEdits = binary.LittleEndian.AppendUint32(g.linkEdits, v)
		g.logMu.Unlock()
	}
}

// applyLinkEdits replays edits (recorded by setLink) on lk; nodes is the graph's size, which every
// node and link must be under.
func (g *graph) applyLinkEdits(b []byte, nodes int) error {
	if len(b)%linkEditSize != 0 {
		return errors.New("links log: a partial edit")
	}
	for ; len(b) > 0; b = b[linkEditSize:] {
		i, count, slot, v := binary.LittleEndian.Uint32(b), int(b[4]), int(b[5]), binary.LittleEndian.Uint32(b[6:])
		if int(i) >= nodes || int(v) >= nodes || count > g.m0 || slot >= g.m0 {
			return fmt.Errorf("links log: edit of node %d (count %d, slot %d, link %d) out of range", i, count, slot, v)
		}
		g.writeLink(i, count, slot, v)
	}
	return nil
}

// writeLink is setLink's edit without its record (applyLinkEdits replays recorded ones): the
// count, the slot, and the slot's link unchecked (worstNonDiverse).
func (g *graph) writeLink(i uint32, count, slot int, v uint32) {
	o := int(i) * (1 + g.m0)
	g.lk[o] = uint32(count)
	g.lk[o+1+slot] = v
	if w := int(i)*g.ckW + slot/64; w < len(g.checked) {
		g.checked[w] &^= 1 << (slot % 64)
	}
}

// reserve makes room for n more nodes before they are added (growing may move the regions).
func (g *graph) reserve(n int) error {
	if err := g.vecs.ensure((g.n + n) * g.dim * 4); err != nil {
		return err
	}
	if need := (g.n + n) * (1 + g.m0); need > len(g.lk) {
		g.lk = slices.Grow(g.lk, need-len(g.lk))[:need]
	}
	if need, old := (g.n+n)*g.ckW, len(g.checked); need > old {
		g.checked = slices.Grow(g.checked, need-old)[:need]
		clear(g.checked[old:]) // their links: unchecked
	}
	if err := g.codes.ensure((g.n + n) * g.recQ); err != nil {
		return err
	}
	g.remap()
	return nil
}

// visitSet marks nodes seen by one search; the epoch trick avoids clearing it between searches.
type visitSet struct {
	marks []uint32
	epoch uint32
}

func (g *graph) getVisited() *visitSet {
	v, _ := g.visited.Get().(*visitSet)
	if v == nil {
		v = &visitSet{}
	}
	if len(v.marks) < g.len() {
		v.marks = make([]uint32, g.len()+g.len()/4+16)
		v.epoch = 0
	}
	v.epoch++
	if v.epoch == 0 { // wrapped: clear
		clear(v.marks)
		v.epoch = 1
	}
	return v
}

func (v *visitSet) visit(i uint32) bool {
	if v.marks[i] == v.epoch {
		return false
	}
	v.marks[i] = v.epoch
	return true
}

type cand struct {
	id  uint32
	sim float32
}

// maxHeap pops the most similar candidate first; minHeap keeps the ef best with the worst on top.
type maxHeap []cand
type minHeap []cand

func (h *maxHeap) push(c cand) {
	*h = append(*h, c)
	s := *h
	i := len(s) - 1
	for i > 0 {
		p := (i - 1) / 2
		if s[p].sim >= s[i].sim {
			break
		}
		s[p], s[i] = s[i], s[p]
		i = p
	}
}

func (h *maxHeap) pop() cand {
	s := *h
	top := s[0]
	n := len(s) - 1
	s[0] = s[n]
	s = s[:n]
	i := 0
	for {
		l, r, b := 2*i+1, 2*i+2, i
		if l < n && s[l].sim > s[b].sim {
			b = l
		}
		if r < n && s[r].sim > s[b].sim {
			b = r
		}
		if b == i {
			break
		}
		s[i], s[b] = s[b], s[i]
		i = b
	}
	*h = s
	return top
}

func (h *minHeap) push(c cand) {
	*h = append(*h, c)
	s := *h
	i := len(s) - 1
	for i > 0 {
		p := (i - 1) / 2
		if s[p].sim <= s[i].sim {
			break
		}
		s[p], s[i] = s[i], s[p]
		i = p
	}
}

func (h *minHeap) pop() cand {
	s := *h
	top := s[0]
	n := len(s) - 1
	s[0] = s[n]
	s = s[:n]
	i := 0
	for {
		l, r, b := 2*i+1, 2*i+2, i
		if l < n && s[l].sim < s[b].sim {
			b = l
		}
		if r < n && s[r].sim < s[b].sim {
			b = r
		}
		if b == i {
			break
		}
		s[i], s[b] = s[b], s[i]
		i = b
	}
	*h = s
	return top
}

// searchLayer is the beam search of one layer from the entry points eps, keeping the ef best.
func (g *graph) searchLayer(score func(uint32) float32, eps []cand, ef, layer int, vs *visitSet) minHeap {
	cands := make(maxHeap, 0, ef*2)
	res := make(minHeap, 0, ef+1)
	for _, e := range eps {
		vs.visit(e.id)
		cands.push(e)
		res.push(e)
	}
	for len(res) > ef {
		res.pop()
	}
	var buf []uint32
	for len(cands) > 0 {
		c := cands.pop()
		if len(res) >= ef && c.sim < res[0].sim {
			break
		}
		buf = g.copyNeighbors(c.id, layer, buf)
		for _, nb := range buf {
			if nb >= uint32(g.n) || !vs.visit(nb) {
				continue
			}
			s := score(nb)
			if len(res) < ef || s > res[0].sim {
				cands.push(cand{nb, s})
				res.push(cand{nb, s})
				if len(res) > ef {
					res.pop()
				}
			}
		}
	}
	return res
}

// greedy descends from the entry point's layer top to layer `to`+1 with a beam of one.
func (g *graph) greedy(score func(uint32) float32, entry uint32, top, to int) cand {
	cur := cand{entry, score(entry)}
	var buf []uint32
	for l := top; l > to; l-- {
		for changed := true; changed; {
			changed = false
			buf = g.copyNeighbors(cur.id, l, buf)
			for _, nb := range buf {
				if nb >= uint32(g.n) {
					continue
				}
				if s := score(nb); s > cur.sim {
					cur, changed = cand{nb, s}, true
				}
			}
		}
	}
	return cur
}

// add inserts a unit vector and returns its node id. The caller reserved room for it.
func (g *graph) add(v []float32) uint32 {
	id := g.place(v)
	g.linkPending()
	return id
}

// place stores a unit vector as the next node, with its code and level, unlinked (pending) until
// linkPending. The caller reserved room for it.
func (g *graph) place(v []float32) uint32 {
	id := uint32(g.n)
	copy(g.vf[int(id)*g.dim:], v)
	g.setCode(id, v)
	g.n++
	level := int(math.Floor(-math.Log(1-g.rng.Float64()) * g.ml))
	// Every node has its upper layers' slices before any is linked: linking changes the slices
	// under the node's stripe, never the map.
	if level > 0 {
		g.upper[id] = make([][]uint32, level)
		g.dirtyUp[id] = struct{}{}
	}
	if g.entry < 0 {
		g.entry, g.maxLevel = int32(id), level
		return id
	}
	g.pending = append(g.pending, id)
	return id
}

// level is node i's top layer.
func (g *graph) level(i uint32) int { return len(g.upper[i]) }

// linkPending links the placed nodes, on up to g.workers goroutines. The nodes of a batch find
// one another as they are linked, as with one insert after another; which of two concurrent
// inserts sees the other first is up to the scheduler, so the graph is not the same from run to
// run (its quality is: BenchmarkFiles20k, BenchmarkHNSW20k).
func (g *graph) linkPending() {
	todo := g.pending
	g.pending = g.pending[:0]
	workers := min(g.workers, len(todo))
	if workers <= 1 {
		for _, id := range todo {
			g.link(id)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(len(todo)) {
					return
				}
				g.link(todo[i])
			}
		})
	}
	wg.Wait()
}

// link connects placed node id into the graph. Safe to run beside other links (linkPending).
func (g *graph) link(id uint32) {
	level := g.level(id)
	// A node that raises the graph's top holds the entry point's lock until it is linked, so no
	// other insert enters through a top layer with nothing linked on it yet (as hnswlib does).
	g.entryMu.Lock()
	entry, top := uint32(g.entry), g.maxLevel
	if level <= top {
		g.entryMu.Unlock()
	} else {
		defer func() {
			g.entry, g.maxLevel = int32(id), level
			g.entryMu.Unlock()
		}()
	}
	q := g.vec(id)
	score := func(i uint32) float32 { return dot(q, g.vec(i)) }
	ep := []cand{g.greedy(score, entry, top, level)}
	vs := g.getVisited()
	defer g.visited.Put(vs)
	for l := min(level, top); l >= 0; l-- {
		if l < min(level, top) {
			vs.epoch++
			if vs.epoch == 0 {
				clear(vs.marks)
				vs.epoch = 1
			}
		}
		w := g.searchLayer(score, ep, g.efC, l, vs)
		maxLinks := g.m
		if l == 0 {
			maxLinks = g.m0
		}
		nbs := g.selectNeighbors(w, g.m)
		mu := g.stripe(id)
		mu.Lock()
		g.setNeighbors(id, l, nbs)
		mu.Unlock()
		for _, nb := range nbs {
			g.connect(nb, id, l, maxLinks)
		}
		ep = []cand(w)
	}
}

// connect adds a link from -> to on layer l, pruning from's links when full. On layer 0, where
// nearly all links and all of an insert's pruning are, one link (or `to`) gives way: the worst
// non-diverse one, as Lucene's HNSW prunes (NeighborArray's findWorstNonDiverse): from the least
// similar to from upwards, the first link more similar to a better link than to from, else the
// least similar. A full list changes by one link at most, and the heuristic already spread the
// others, so running it again over all 2M+1 (a dot product per pair: 13% of an ingest's CPU at
// 100k) is not needed. The few upper layers' lists are pruned with the paper's heuristic.
func (g *graph) connect(from, to uint32, l, maxLinks int) {
	mu := g.stripe(from)
	mu.Lock()
	defer mu.Unlock()
	ls := g.neighbors(from, l)
	if len(ls) < maxLinks {
		if l == 0 {
			g.setLink(from, len(ls)+1, len(ls), to)
			return
		}
		g.setNeighbors(from, l, append(ls, to))
		return
	}
	fv := g.vec(from)
	if l == 0 {
		if slot, ok := g.worstNonDiverse(from, fv, ls, to); ok {
			if slot >= 0 {
				// One edit in the dropped link's slot: the links log grows by 10 bytes.
				g.setLink(from, len(ls), slot, to)
			}
			g.markChecked(from, len(ls))
			return
		}
	}
	cs := make(minHeap, 0, len(ls)+1)
	for _, x := range ls {
		if x < uint32(g.n) {
			cs = append(cs, cand{x, dot(fv, g.vec(x))})
		}
	}
	cs = append(cs, cand{to, dot(fv, g.vec(to))})
	keep := g.selectNeighbors(cs, maxLinks)
	if l == 0 && len(keep) == len(ls) {
		// The usual case: one of the full list's links gives way to `to` (or `to` is not kept).
		// Written as one edit in the dropped link's slot, not as the whole list again, so the
		// links log grows by 10 bytes, not 2M+1 edits.
		if slot, ok := droppedFor(ls, keep, to); ok {
			if slot >= 0 {
				g.setLink(from, len(ls), slot, to)
			}
			return
		}
	}
	g.setNeighbors(from, l, keep)
}

// slotCand is a candidate link and its slot in the list (-1: `to`, not in it yet).
type slotCand struct {
	cand
	slot int
}

// worstNonDiverse picks the link of the full list ls (of node from, whose vector is fv) that gives
// way to `to` (see connect): its slot, or -1 when `to` itself gives way. ok is false when ls holds
// a link past n (damaged files only): the caller prunes with the heuristic, which drops it.
//
// As Lucene does (NeighborArray's unchecked indexes), a link already checked with the list when it
// was last pruned (g.checked) is compared only with the better links not checked since (`to`, and
// links written since): its diversity against the others was established then, and they have not
// changed. An unchecked link is compared with every better one, as before. The scan stops once no
// unchecked link is left at or below it, and afterwards the whole list counts as checked (also
// unchecked links above a non-diverse one the scan stopped at, as in Lucene). For a list that
// changes by one link between prunes this is ~2·2M dot products instead of up to (2M)²/2.
func (g *graph) worstNonDiverse(from uint32, fv []float32, ls []uint32, to uint32) (slot int, ok bool) {
	var ck []uint64
	if o := int(from) * g.ckW; o+g.ckW <= len(g.checked) {
		ck = g.checked[o : o+g.ckW]
	}
	cs := make([]slotCand, 0, len(ls)+1)
	for i, x := range ls {
		if x >= uint32(g.n) {
			return 0, false
		}
		cs = append(cs, slotCand{cand{x, dot(fv, g.vec(x))}, i})
	}
	cs = append(cs, slotCand{cand{to, dot(fv, g.vec(to))}, -1})
	slices.SortFunc(cs, func(a, b slotCand) int { return moreSimilarFirst(a.cand, b.cand) })
	// unchecked: the indexes in cs (ascending) of `to` and of the links not checked.
	unchecked := make([]int, 0, len(cs))
	for i, c := range cs {
		if c.slot < 0 || ck == nil || ck[c.slot/64]&(1<<(c.slot%64)) == 0 {
			unchecked = append(unchecked, i)
		}
	}
	u := len(unchecked) - 1 // unchecked[u] <= i below
	for i := len(cs) - 1; i > 0 && u >= 0; i-- {
		cv := g.vec(cs[i].id)
		if i == unchecked[u] {
			for _, b := range cs[:i] {
				if dot(cv, g.vec(b.id)) > cs[i].sim {
					return cs[i].slot, true
				}
			}
			u--
			continue
		}
		for _, j := range unchecked[:u+1] {
			if dot(cv, g.vec(cs[j].id)) > cs[i].sim {
				return cs[i].slot, true
			}
		}
	}
	return cs[len(cs)-1].slot, true
}

// markChecked marks node i's first count layer-0 slots checked (worstNonDiverse); the caller holds
// i's stripe.
func (g *graph) markChecked(i uint32, count int) {
	o := int(i) * g.ckW
	if o+g.ckW > len(g.checked) {
		return
	}
	for w := range g.ckW {
		bits := min(max(count-64*w, 0), 64)
		g.checked[o+w] = 1<<bits - 1 // 1<<64 is 0 for a uint64: all ones
	}
}

// droppedFor compares a full link list with the one kept after `to` was offered: slot is the one
// link dropped for `to`, -1 when `to` was not kept and the list is unchanged; ok false when the
// lists differ otherwise (the caller writes the whole list).
func droppedFor(old, keep []uint32, to uint32) (slot int, ok bool) {
	in := func(x uint32, s []uint32) bool { return slices.Contains(s, x) }
	if !in(to, keep) {
		for _, x := range old {
			if !in(x, keep) {
				return 0, false
			}
		}
		return -1, true
	}
	slot = -1
	for i, x := range old {
		if !in(x, keep) {
			if slot >= 0 {
				return 0, false
			}
			slot = i
		}
	}
	return slot, slot >= 0
}

// selectNeighbors is the paper's heuristic (algorithm 4): take candidates best first, keeping one only
// if it is closer to the new node than to every neighbour kept so far, which keeps links spread out;
// then fill up with the best of the discarded ones.
func (g *graph) selectNeighbors(cs []cand, m int) []uint32 {
	sorted := append([]cand(nil), cs...)
	sortDesc(sorted)
	out := make([]uint32, 0, m)
	var skipped []uint32
	for _, c := range sorted {
		if len(out) >= m {
			break
		}
		ok := true
		cv := g.vec(c.id)
		for _, o := range out {
			if dot(cv, g.vec(o)) > c.sim {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, c.id)
		} else {
			skipped = append(skipped, c.id)
		}
	}
	for _, s := range skipped {
		if len(out) >= m {
			break
		}
		out = append(out, s)
	}
	return out
}

// sortDesc sorts cs most similar first. The similarities are dot products of finite vectors (never
// NaN), so a plain comparison orders them (cmp.Compare's NaN handling was a third of the sort).
func sortDesc(cs []cand) { slices.SortFunc(cs, moreSimilarFirst) }

// moreSimilarFirst orders two candidates most similar first, for sortDesc and the prune's sort.
func moreSimilarFirst(a, b cand) int {
	switch {
	case a.sim > b.sim:
		return -1
	case a.sim < b.sim:
		return 1
	}
	return 0
}

// search returns the ef best nodes for q by their codes' similarity, best first, skipping none
// (the caller drops tombstones and re-ranks).
func (g *graph) search(q []float32, ef int) []cand {
	if g.entry < 0 {
		return nil
	}
	score := func(i uint32) float32 { return g.simQ(q, i) }
	ep := g.greedy(score, uint32(g.entry), g.maxLevel, 0)
	vs := g.getVisited()
	res := g.searchLayer(score, []cand{ep}, ef, 0, vs)
	g.visited.Put(vs)
	out := []cand(res)
	sortDesc(out)
	return out
}
