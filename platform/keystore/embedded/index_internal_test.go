package embedded

import (
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"
)

// The table against a map, through inserts and removals that collide (tags drawn from few homes,
// so probes wrap and removals shift entries back), growth, and a write and reopen of the file.
func TestIndexTableMatchesAMap(t *testing.T) {
	x, err := newIndex(0)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	want := map[uint64][]int64{}
	var slot int64
	tagOf := func() uint64 { return uint64(r.IntN(2000))<<20 | uint64(r.IntN(64))*97 | 1 }
	check := func(x *keyIndex) {
		t.Helper()
		for tag, slots := range want {
			var got []int64
			if err := x.find(tag, func(s int64) (bool, error) { got = append(got, s); return false, nil }); err != nil {
				t.Fatal(err)
			}
			slices.Sort(got)
			if !slices.Equal(got, slots) {
				t.Fatalf("tag %x: slots %v, want %v", tag, got, slots)
			}
		}
	}
	for step := range 5000 {
		if n := len(want); n > 0 && r.IntN(3) == 0 {
			// remove a random present entry
			k := r.IntN(n)
			for tag, slots := range want {
				if k--; k < 0 {
					i := r.IntN(len(slots))
					if err := x.remove(tag, slots[i]); err != nil {
						t.Fatal(err)
					}
					if want[tag] = slices.Delete(slots, i, i+1); len(want[tag]) == 0 {
						delete(want, tag)
					}
					break
				}
			}
		} else {
			tag := tagOf()
			slot++
			if err := x.insert(tag, slot); err != nil {
				t.Fatal(err)
			}
			want[tag] = append(want[tag], slot)
			slices.Sort(want[tag])
		}
		if step%500 == 0 {
			check(x)
		}
	}
	check(x)
	total := 0
	for _, s := range want {
		total += len(s)
	}
	if x.used != uint64(total) || x.n < 4096 {
		t.Fatalf("used %d entries of %d, want %d (and a table that grew)", x.used, x.n, total)
	}
	path := filepath.Join(t.TempDir(), "keys.db.idx")
	db := dbStamp{token: [tokenSize]byte{1}, size: 4096, mtime: 7}
	if err := x.write(path, db, []int64{3, 5}); err != nil {
		t.Fatal(err)
	}
	y, err := openIndex(path, db, 100)
	if err != nil || y == nil {
		t.Fatalf("reopen: %v, %v", y, err)
	}
	defer y.close()
	check(y)
	if free, err := y.readFree(); err != nil || !slices.Equal(free, []int64{3, 5}) {
		t.Fatalf("free slots %v, %v", free, err)
	}
	db.mtime++
	if z, err := openIndex(path, db, 100); z != nil || err != nil {
		t.Fatalf("an index stamped for another keys.db was opened: %v", err)
	}
}
