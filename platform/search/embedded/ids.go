package embedded

import "hash/maphash"

// ids finds a tenant's nodes by chunk id and by document id through a hash of the id, keeping no
// string per chunk: opening a tenant of 28,000 chunks spent most of its 40 ms allocating the id
// strings and hashing them into maps. Hashes can collide, so every answer is a set of candidates
// that the caller confirms against the chunk record (collisions are rare: the record is read only
// when an id's hash is present, i.e. on a replacement, a delete or a document filter). The seed is
// per process: the maps are rebuilt at each open.
type ids struct {
	seed  maphash.Seed
	chunk map[uint64]uint32   // chunk id hash -> a live node with it
	more  map[uint64][]uint32 // further live nodes whose chunk id hash is taken (collisions)
	doc   map[uint64][]uint32 // document id hash -> its nodes (may hold tombstones, and colliding documents' nodes)
}

func newIDs(n int) *ids {
	return &ids{seed: maphash.MakeSeed(), chunk: make(map[uint64]uint32, n), more: map[uint64][]uint32{}, doc: map[uint64][]uint32{}}
}

func (x *ids) hash(s string) uint64 { return maphash.String(x.seed, s) }

func (x *ids) hashBytes(b []byte) uint64 { return maphash.Bytes(x.seed, b) }

func (x *ids) addChunk(h uint64, n uint32) {
	if _, taken := x.chunk[h]; taken {
		x.more[h] = append(x.more[h], n)
		return
	}
	x.chunk[h] = n
}

func (x *ids) removeChunk(h uint64, n uint32) {
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
	n, ok := x.chunk[h]
	if !ok {
		return nil
	}
	return append([]uint32{n}, x.more[h]...)
}

func (x *ids) addDoc(h uint64, n uint32) { x.doc[h] = append(x.doc[h], n) }
