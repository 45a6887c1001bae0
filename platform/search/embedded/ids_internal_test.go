package embedded

import (
	"slices"
	"testing"
)

// Colliding chunk id hashes keep every node as a candidate until it is removed, whichever of them
// is removed first.
func TestIDsKeepCollidingChunks(t *testing.T) {
	x := newIDs(0)
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
