package embedded

import (
	"hash/maphash"
	"sync"
)

// ids finds a tenant's nodes by chunk id and by document id through a hash of the id, keeping no
// string per chunk: opening a tenant of 28,000 chunks spent most of its 40 ms allocating the id
// strings and hashing them into maps. Hashes can collide, so every answer is a set of candidates
// that the caller confirms against the chunk record (collisions are rare: the record is read only
// when an id's hash is present, i.e. on a replacement, a delete or a document filter). The seed is
// per process: the maps are rebuilt at each open.
//
// An open only lists the hashes (opened, 24 bytes a node); the maps are built from the list when
// they are first used (an upsert, a delete, a document filter, Vectors), not at the open: building
// them was a third of the index's open at a 1M-event restart (maps of 28,000 and more entries per
// tenant) for tenants nobody writes to or filters right after a start. Every method builds them
// first; build is safe beside other readers (the partition's read lock): sync.Once.
type ids struct {
	seed   maphash.Seed
	once   sync.Once
	opened []uint64            // chunk id hash, document id hash, node: of the live nodes read at open
	chunk  map[uint64]uint32   // chunk id hash -> a live node with it
	more   map[uint64][]uint32 // further live nodes whose chunk id hash is taken (collisions)
	doc    map[uint64][]uint32 // document id hash -> its nodes (may hold tombstones, and colliding documents' nodes)
}

func newIDs() *ids { return &ids{seed: maphash.MakeSeed()} }

// expect sizes the open's list for n live nodes (one allocation instead of a doubling append's).
func (x *ids) expect(n int) { x.opened = make([]uint64, 0, 3*n) }

// opening lists a live node read at open (before any other use of x).
func (x *ids) opening(chunkH, docH uint64, n uint32) {
	x.opened = append(x.opened, chunkH, docH, uint64(n))
}

// built makes the maps from what the open listed, once.
func (x *ids) built() {
	x.once.Do(func() {
		n := len(x.opened) / 3
		x.chunk, x.more, x.doc = make(map[uint64]uint32, n), map[uint64][]uint32{}, make(map[uint64][]uint32, n/8)
		for i := 0; i < len(x.opened); i += 3 {
			x.add(x.opened[i], uint32(x.opened[i+2]))
			x.doc[x.opened[i+1]] = append(x.doc[x.opened[i+1]], uint32(x.opened[i+2]))
		}
		x.opened = nil
	})
}

func (x *ids) hash(s string) uint64 { return maphash.String(x.seed, s) }

func (x *ids) hashBytes(b []byte) uint64 { return maphash.Bytes(x.seed, b) }

func (x *ids) addChunk(h uint64, n uint32) {
	x.built()
	x.add(h, n)
}

func (x *ids) add(h uint64, n uint32) {
	if _, taken := x.chunk[h]; taken {
		x.more[h] = append(x.more[h], n)
		return
	}
	x.chunk[h] = n
}

func (x *ids) removeChunk(h uint64, n uint32) {
	x.built()
	more := x.more[h]
	if m, ok := x.chunk[h]; ok && m == n {
		if len(more) == 0 {
			delete(x.chunk, h)
			return
		}
		x.chunk[h] = more[0]
		more = more[1:]
	} else {
		for i, m := range more {
			if m == n {
				more = append(more[:i:i], more[i+1:]...)
				break
			}
		}
	}
	if len(more) == 0 {
		delete(x.more, h)
	} else {
		x.more[h] = more
	}
}

// chunkCandidates are the live nodes whose chunk id hashes to h.
func (x *ids) chunkCandidates(h uint64) []uint32 {
	x.built()
	n, ok := x.chunk[h]
	if !ok {
		return nil
	}
	return append([]uint32{n}, x.more[h]...)
}

func (x *ids) addDoc(h uint64, n uint32) {
	x.built()
	x.doc[h] = append(x.doc[h], n)
}

// docNodes are the nodes listed under document id hash h (the caller must not change them).
func (x *ids) docNodes(h uint64) []uint32 {
	x.built()
	return x.doc[h]
}

// setDocNodes replaces the nodes listed under h (none: h is dropped).
func (x *ids) setDocNodes(h uint64, nodes []uint32) {
	x.built()
	if len(nodes) == 0 {
		delete(x.doc, h)
		return
	}
	x.doc[h] = nodes
}
