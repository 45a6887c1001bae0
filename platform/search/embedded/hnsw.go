package embedded

import (
	"cmp"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
)

// graph is a Hierarchical Navigable Small World graph (Malkov & Yashunin, 2016) over unit vectors,
// scored by dot product (= cosine similarity). It is not safe for concurrent use: the partition's lock
// guards it (one writer or many readers).
type graph struct {
	dim      int
	m, m0    int // links per node above layer 0, and at layer 0
	efC      int
	ml       float64
	vecs     []float32    // node i's vector is vecs[i*dim:(i+1)*dim]
	links    [][][]uint32 // links[node][layer]
	entry    int32        // -1 when empty
	maxLevel int
	rng      *rand.Rand
	visited  sync.Pool
}

func newGraph(dim, m, efC int, seed uint64) *graph {
	return &graph{dim: dim, m: m, m0: 2 * m, efC: efC, ml: 1 / math.Log(float64(m)), entry: -1,
		rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

func (g *graph) len() int { return len(g.links) }

func (g *graph) vec(i uint32) []float32 {
	o := int(i) * g.dim
	return g.vecs[o : o+g.dim : o+g.dim]
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
func (g *graph) searchLayer(q []float32, eps []cand, ef, layer int, vs *visitSet) minHeap {
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
	for len(cands) > 0 {
		c := cands.pop()
		if len(res) >= ef && c.sim < res[0].sim {
			break
		}
		for _, nb := range g.links[c.id][layer] {
			if !vs.visit(nb) {
				continue
			}
			s := dot(q, g.vec(nb))
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

// greedy descends from the top layer to layer `to`+1 with a beam of one.
func (g *graph) greedy(q []float32, to int) cand {
	cur := cand{uint32(g.entry), dot(q, g.vec(uint32(g.entry)))}
	for l := g.maxLevel; l > to; l-- {
		for changed := true; changed; {
			changed = false
			for _, nb := range g.links[cur.id][l] {
				if s := dot(q, g.vec(nb)); s > cur.sim {
					cur, changed = cand{nb, s}, true
				}
			}
		}
	}
	return cur
}

// add inserts a unit vector and returns its node id.
func (g *graph) add(v []float32) uint32 {
	id := uint32(g.len())
	g.vecs = append(g.vecs, v...)
	level := int(math.Floor(-math.Log(1-g.rng.Float64()) * g.ml))
	g.links = append(g.links, make([][]uint32, level+1))
	if g.entry < 0 {
		g.entry, g.maxLevel = int32(id), level
		return id
	}
	q := g.vec(id)
	ep := []cand{g.greedy(q, level)}
	vs := g.getVisited()
	defer g.visited.Put(vs)
	for l := min(level, g.maxLevel); l >= 0; l-- {
		if l < min(level, g.maxLevel) {
			vs.epoch++
			if vs.epoch == 0 {
				clear(vs.marks)
				vs.epoch = 1
			}
		}
		w := g.searchLayer(q, ep, g.efC, l, vs)
		maxLinks := g.m
		if l == 0 {
			maxLinks = g.m0
		}
		nbs := g.selectNeighbors(w, g.m)
		g.links[id][l] = nbs
		for _, nb := range nbs {
			g.connect(nb, id, l, maxLinks)
		}
		ep = []cand(w)
	}
	if level > g.maxLevel {
		g.entry, g.maxLevel = int32(id), level
	}
	return id
}

// connect adds a link from -> to on layer l, pruning from's links with the heuristic when full.
func (g *graph) connect(from, to uint32, l, maxLinks int) {
	ls := g.links[from][l]
	if len(ls) < maxLinks {
		g.links[from][l] = append(ls, to)
		return
	}
	fv := g.vec(from)
	cs := make(minHeap, 0, len(ls)+1)
	for _, x := range ls {
		cs = append(cs, cand{x, dot(fv, g.vec(x))})
	}
	cs = append(cs, cand{to, dot(fv, g.vec(to))})
	g.links[from][l] = g.selectNeighbors(cs, maxLinks)
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

func sortDesc(cs []cand) {
	slices.SortFunc(cs, func(a, b cand) int { return cmp.Compare(b.sim, a.sim) })
}

// search returns the ef best nodes for q, best first, skipping none (the caller drops tombstones).
func (g *graph) search(q []float32, ef int) []cand {
	if g.entry < 0 {
		return nil
	}
	ep := g.greedy(q, 0)
	vs := g.getVisited()
	res := g.searchLayer(q, []cand{ep}, ef, 0, vs)
	g.visited.Put(vs)
	out := []cand(res)
	sortDesc(out)
	return out
}
