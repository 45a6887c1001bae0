package embedded

import (
	"slices"
	"sync"
	"testing"
)

// Colliding chunk id hashes keep every node as a candidate until it is removed, whichever of them
// is removed first.
func TestIDsKeepCollidingChunks(t *testing.T) {
	x := newIDs()
	const h = 42
	for _, n := range []uint32{1, 2, 3} {
		x.addChunk(h, n)
	}
	x.addChunk(7, 9)
	for _, step := range []struct {
		remove uint32
		want   []uint32
	}{{0, []uint32{1, 2, 3}}, {1, []uint32{2, 3}}, {3, []uint32{2}}, {2, nil}} {
		if step.remove != 0 {
			x.removeChunk(h, step.remove)
		}
		if got := x.chunkCandidates(h); !slices.Equal(got, step.want) {
			t.Fatalf("after removing %d: candidates %v, want %v", step.remove, got, step.want)
		}
	}
	if got := x.chunkCandidates(7); !slices.Equal(got, []uint32{9}) {
		t.Fatalf("another hash: %v", got)
	}
	if len(x.more) != 0 || len(x.chunk) != 1 {
		t.Fatalf("left behind: chunk %v more %v", x.chunk, x.more)
	}
}

// The maps are not built by the open's listing, and once built (by whichever use comes first,
// even several readers at once) they answer as if every node had been added one by one.
func TestIDsBuiltOnFirstUse(t *testing.T) {
	x := newIDs()
	x.opening(42, 7, 1)
	x.opening(42, 7, 2) // a colliding chunk id hash, same document
	x.opening(5, 8, 3)
	if x.chunk != nil || x.doc != nil {
		t.Fatal("the open built the maps")
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if got := x.docNodes(7); !slices.Equal(got, []uint32{1, 2}) {
				t.Errorf("document 7: %v, want [1 2]", got)
			}
		})
	}
	wg.Wait()
	if got := x.chunkCandidates(42); !slices.Equal(got, []uint32{1, 2}) {
		t.Fatalf("chunk 42: %v, want [1 2]", got)
	}
	if got := x.chunkCandidates(5); !slices.Equal(got, []uint32{3}) || x.opened != nil {
		t.Fatalf("chunk 5: %v (opened list kept: %v)", got, x.opened != nil)
	}
	x.setDocNodes(8, nil)
	if got := x.docNodes(8); got != nil {
		t.Fatalf("document 8 after dropping it: %v", got)
	}
}
