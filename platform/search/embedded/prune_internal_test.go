package embedded

import (
	"math"
	"testing"
)

// A full layer-0 list offered a new link (connect) counts as checked once pruned: the next prune
// compares its links only with the links written since, as Lucene's HNSW does. A link rewritten
// since (setLink) is compared with every better link again, and so is every link of a list never
// pruned.
func TestPruneComparesCheckedLinksOnlyWithNewOnes(t *testing.T) {
	// Node 0 is e0; a link a·e0 + b·e_k has similarity a to it, and links on different axes k are
	// diverse. Links 2 and 3 lie on the same axis (3 is too similar to 2: non-diverse); 5 is the
	// new link, the least similar, diverse.
	vec := func(a float64, axes ...float64) []float32 {
		v := make([]float32, 8)
		v[0] = float32(a)
		for i, x := range axes {
			v[1+i] = float32(x)
		}
		var n float64
		for _, x := range v {
			n += float64(x) * float64(x)
		}
		for i := range v {
			v[i] = float32(float64(v[i]) / math.Sqrt(n))
		}
		return v
	}
	vs := [][]float32{
		vec(1),
		vec(0.9, 0.44),
		vec(0.8, 0, 0.6),
		vec(0.79, 0, 0.6, 0.05),
		vec(0.7, 0, 0, 0, 0.71),
		vec(0.6, 0, 0, 0, 0, 0.8),
	}
	g := newGraph(8, 2, 8, 1, &region{}, &region{}) // 2M = 4 links at layer 0
	if err := g.reserve(len(vs)); err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		g.place(v)
	}
	g.setNeighbors(0, 0, []uint32{1, 2, 3, 4})
	fv := g.vec(0)

	// Nothing checked: the full scan finds link 3 (slot 2) non-diverse.
	if slot, ok := g.worstNonDiverse(0, fv, g.neighbors(0, 0), 5); !ok || slot != 2 {
		t.Fatalf("unchecked list: slot %d, %v; want 2", slot, ok)
	}
	// All checked: only the new link is compared with the others; it is diverse and the least
	// similar, so it gives way and the list stays.
	g.markChecked(0, 4)
	if slot, ok := g.worstNonDiverse(0, fv, g.neighbors(0, 0), 5); !ok || slot != -1 {
		t.Fatalf("checked list: slot %d, %v; want -1 (the new link)", slot, ok)
	}
	// Link 3 written again: unchecked, so compared with every better link.
	g.setLink(0, 4, 2, 3)
	if slot, ok := g.worstNonDiverse(0, fv, g.neighbors(0, 0), 5); !ok || slot != 2 {
		t.Fatalf("a link rewritten: slot %d, %v; want 2", slot, ok)
	}
	// connect prunes (link 3 gives way to 5) and marks the whole list checked.
	g.connect(0, 5, 0, g.m0)
	if got := g.neighbors(0, 0); got[2] != 5 || g.checked[0] != 0b1111 {
		t.Fatalf("after connect: links %v, checked %b; want 5 in slot 2, all 4 checked", got, g.checked[0])
	}
	// Nodes added later start with nothing checked.
	if err := g.reserve(4); err != nil {
		t.Fatal(err)
	}
	for i := len(vs); i < len(vs)+4; i++ {
		if g.checked[i*g.ckW] != 0 {
			t.Fatalf("node %d: checked %b before any prune", i, g.checked[i*g.ckW])
		}
	}
}
