package auditlog

import (
	"bytes"
	"fmt"
	"testing"
)

// The folder Verify and Compute use gives the roots of the library's compact range at every size,
// and leafOf the library's leaf hash, for stored hashes well formed or not.
func TestFolderMatchesCompactRange(t *testing.T) {
	t.Parallel()
	var f folder
	r := rangeFactory.NewEmptyRange(0)
	for i := range 300 {
		h := hashHex(i)
		switch i % 50 {
		case 7:
			h = "not hex at all"
		case 8:
			h = h[:63] + "G"
		case 9:
			h = fmt.Sprintf("%X", i) + h[len(fmt.Sprintf("%X", i)):] // upper-case digits decode as well
		}
		want, err := LeafHash(h)
		if err != nil {
			want = Hasher.HashLeaf([]byte(h))
		}
		leaf := leafOf(h)
		if !bytes.Equal(leaf[:], want) {
			t.Fatalf("leaf %d (%q): %x, want %x", i, h, leaf, want)
		}
		f.append(&leaf)
		if err := r.Append(want, nil); err != nil {
			t.Fatal(err)
		}
		root, err := r.GetRootHash(nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := f.root(); !bytes.Equal(got, root) || f.size != uint64(i+1) {
			t.Fatalf("size %d: root %x, want %x", i+1, got, root)
		}
	}
}
