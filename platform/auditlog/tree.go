// Package auditlog is the tenant-wide, append-only Merkle log of the event store (issue 12 §1-3):
// an RFC 6962 tree per tenant over every event of the tenant in global position order, whose leaf
// input is the 32 bytes of the event's stored per-stream hash (Event.Hash, hex-decoded; it covers
// the event's canonical bytes as stored and its stream's previous hash). Removing, inserting,
// editing, reordering or truncating any event changes the tree's root, which a signed checkpoint
// fixes ({tenant, size, rootHash, time}, Ed25519).
//
// The tree's nodes are derived state: a checkpointed bus projection (auditlog.merkle, a bbolt file
// under <data>/readmodels) stores every perfect-subtree node once, so a root, an inclusion proof or
// a consistency proof at any size up to the tree's reads O(log n) stored hashes; it can always be
// rebuilt from the store. Verification never trusts it: it recomputes every hash from the raw
// stored events and compares the root with a signed checkpoint; the stored tree only helps to name
// the first position at fault.
//
// The hashing and proofs are github.com/transparency-dev/merkle (the RFC 6962 hasher, compact
// ranges and proof verification used by Trillian and the Go checksum database's tooling), so a
// third party can check our proofs with the same well-kept library.
package auditlog

import (
	"crypto"
	_ "crypto/sha256" // the RFC 6962 hasher's SHA-256
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	bolt "go.etcd.io/bbolt"

	"github.com/crispy-enigma/crispy/platform/tenant"
)

// Hasher is the RFC 6962 SHA-256 hasher: leaf = SHA-256(0x00 || input), node = SHA-256(0x01 || l || r).
var Hasher = rfc6962.New(crypto.SHA256)

var rangeFactory = &compact.RangeFactory{Hash: Hasher.HashChildren}

// LeafHash is the tree's leaf for an event whose stored hash (Event.Hash) is hexHash.
func LeafHash(hexHash string) ([]byte, error) {
	var in [32]byte
	if len(hexHash) != 64 {
		return nil, fmt.Errorf("event hash %q is not 64 hex digits", hexHash)
	}
	if _, err := hex.Decode(in[:], []byte(hexHash)); err != nil {
		return nil, fmt.Errorf("event hash %q: %w", hexHash, err)
	}
	return Hasher.HashLeaf(in[:]), nil
}

// ErrNotInTree is returned for an event the tenant's tree does not hold (yet, or at all).
var ErrNotInTree = errors.New("event not in the tenant's audit log")

// Layout in the projection's state bucket: one sub-bucket per tenant ("t/<tenant>"), holding
//
//	"n"     nodes: key level (1 byte) || index (8 bytes BE) -> 32-byte hash; level 0 are the leaves
//	"i"     event id (16 bytes for a UUID, else its text) -> leaf index (8) || position (8)
var (
	bucketNode = []byte("n")
	bucketID   = []byte("i")
)

func tenantKey(t tenant.ID) []byte { return []byte("t/" + t.String()) }

func nodeKey(level uint, index uint64) []byte {
	var k [9]byte
	k[0] = byte(level)
	binary.BigEndian.PutUint64(k[1:], index)
	return k[:]
}

func idKey(id string) []byte {
	if u, err := uuid.Parse(id); err == nil && len(id) == 36 {
		return u[:]
	}
	return []byte(id)
}

// Tenants lists the tenants the tree holds, with their sizes.
func Tenants(state *bolt.Bucket) (map[tenant.ID]uint64, error) {
	out := map[tenant.ID]uint64{}
	err := state.ForEachBucket(func(k []byte) error {
		if len(k) < 3 || string(k[:2]) != "t/" {
			return nil
		}
		t, err := tenant.Parse(string(k[2:]))
		if err != nil {
			return nil
		}
		out[t] = sizeOf(state.Bucket(k))
		return nil
	})
	return out, err
}

func sizeOf(b *bolt.Bucket) uint64 {
	if b == nil {
		return 0
	}
	return leafCount(b.Bucket(bucketNode))
}

// leafCount is the number of leaves: one past the last level-0 node (leaves are appended in order,
// so the size needs no write of its own per event).
func leafCount(nodes *bolt.Bucket) uint64 {
	if nodes == nil {
		return 0
	}
	c := nodes.Cursor()
	k, _ := c.Seek(nodeKey(1, 0))
	if k == nil {
		k, _ = c.Last()
	} else {
		k, _ = c.Prev()
	}
	if len(k) != 9 || k[0] != 0 {
		return 0
	}
	return binary.BigEndian.Uint64(k[1:]) + 1
}

// Size is the number of leaves of t's tree.
func Size(state *bolt.Bucket, t tenant.ID) uint64 { return sizeOf(state.Bucket(tenantKey(t))) }

// appender appends leaves; it keeps each tenant's compact range between events so an append costs
// O(1) amortised reads and writes, and, within one transaction, the tenant's open buckets and size
// (finding them again per event cost as much as the writes). A range is used only while its size
// matches the stored size: after a rolled-back transaction it is rebuilt from the stored nodes.
type appender struct {
	ranges map[tenant.ID]*compact.Range
	state  *bolt.Bucket // the state bucket of the transaction open holds handles of
	open   map[tenant.ID]*openTree
}

type openTree struct {
	tb, nodes, ids *bolt.Bucket
	size           uint64
}

func newAppender() *appender { return &appender{ranges: map[tenant.ID]*compact.Range{}} }

func (a *appender) openTree(state *bolt.Bucket, t tenant.ID) (*openTree, error) {
	if state != a.state {
		// Another transaction (a bucket is only valid in its own): holding the old pointer until
		// here keeps a new bucket from ever having its address.
		a.state, a.open = state, map[tenant.ID]*openTree{}
	}
	if ot := a.open[t]; ot != nil {
		return ot, nil
	}
	tb, err := state.CreateBucketIfNotExists(tenantKey(t))
	if err != nil {
		return nil, fmt.Errorf("audit log of %s: %w", t, err)
	}
	nodes, err := tb.CreateBucketIfNotExists(bucketNode)
	if err != nil {
		return nil, err
	}
	ids, err := tb.CreateBucketIfNotExists(bucketID)
	if err != nil {
		return nil, err
	}
	// Nodes and ids are written in increasing key order per level: fill pages fully.
	nodes.FillPercent, ids.FillPercent = 0.95, 0.9
	ot := &openTree{tb: tb, nodes: nodes, ids: ids, size: leafCount(nodes)}
	a.open[t] = ot
	return ot, nil
}

// Append adds the event (id, position, stored hash) as t's next leaf.
func (a *appender) Append(state *bolt.Bucket, t tenant.ID, id string, pos uint64, hexHash string) error {
	leaf, err := LeafHash(hexHash)
	if err != nil {
		return err
	}
	ot, err := a.openTree(state, t)
	if err != nil {
		return err
	}
	size := ot.size
	r := a.ranges[t]
	if r == nil || r.End() != size {
		if r, err = rangeAt(ot.nodes, size); err != nil {
			return fmt.Errorf("audit log of %s: %w", t, err)
		}
		a.ranges[t] = r
	}
	if err := ot.nodes.Put(nodeKey(0, size), leaf); err != nil {
		return err
	}
	var putErr error
	if err := r.Append(leaf, func(id compact.NodeID, h []byte) {
		if putErr == nil && id.Level >= minStoredLevel {
			putErr = ot.nodes.Put(nodeKey(id.Level, id.Index), h)
		}
	}); err != nil {
		return err
	}
	if putErr != nil {
		return putErr
	}
	var v [16]byte
	binary.BigEndian.PutUint64(v[:8], size)
	binary.BigEndian.PutUint64(v[8:], pos)
	if err := ot.ids.Put(idKey(id), v[:]); err != nil {
		return err
	}
	ot.size = size + 1
	return nil
}

// rangeAt is the compact range [0, size) from the stored perfect-subtree nodes.
func rangeAt(nodes *bolt.Bucket, size uint64) (*compact.Range, error) {
	ids := compact.RangeNodes(0, size, nil)
	hashes, err := fetch(nodes, ids)
	if err != nil {
		return nil, err
	}
	return rangeFactory.NewRange(0, size, hashes)
}

// minStoredLevel: nodes of levels 1 to minStoredLevel-1 are not stored but hashed again from their
// (at most 8) leaves when a root or a proof needs one. Storing them was most of the node writes (7 of
// every 8); a proof needs at most one per level, so it reads at most 14 more leaves, in 3 cursor scans.
const minStoredLevel = 4

func fetch(nodes *bolt.Bucket, ids []compact.NodeID) ([][]byte, error) {
	out := make([][]byte, len(ids))
	for i, id := range ids {
		if id.Level > 0 && id.Level < minStoredLevel {
			h, err := subtreeFromLeaves(nodes, id)
			if err != nil {
				return nil, err
			}
			out[i] = h
			continue
		}
		var v []byte
		if nodes != nil {
			v = nodes.Get(nodeKey(id.Level, id.Index))
		}
		if len(v) != 32 {
			return nil, fmt.Errorf("stored audit tree lacks node %d/%d", id.Level, id.Index)
		}
		out[i] = append([]byte(nil), v...)
	}
	return out, nil
}

// subtreeFromLeaves hashes the perfect subtree id from its stored leaves.
func subtreeFromLeaves(nodes *bolt.Bucket, id compact.NodeID) ([]byte, error) {
	if nodes == nil {
		return nil, fmt.Errorf("stored audit tree lacks node %d/%d", id.Level, id.Index)
	}
	first, n := id.Index<<id.Level, uint64(1)<<id.Level
	level := make([][]byte, 0, n)
	c := nodes.Cursor()
	for k, v := c.Seek(nodeKey(0, first)); uint64(len(level)) < n; k, v = c.Next() {
		if len(k) != 9 || k[0] != 0 || binary.BigEndian.Uint64(k[1:]) != first+uint64(len(level)) || len(v) != 32 {
			return nil, fmt.Errorf("stored audit tree lacks leaf %d of node %d/%d", first+uint64(len(level)), id.Level, id.Index)
		}
		level = append(level, v)
	}
	for len(level) > 1 {
		next := level[:0:0]
		for j := 0; j < len(level); j += 2 {
			next = append(next, Hasher.HashChildren(level[j], level[j+1]))
		}
		level = next
	}
	return append([]byte(nil), level[0]...), nil
}

// Tree reads one tenant's stored tree (in a read or write transaction).
type Tree struct {
	size  uint64
	nodes *bolt.Bucket
	ids   *bolt.Bucket
}

// Open is t's stored tree (empty when it has none).
func Open(state *bolt.Bucket, t tenant.ID) Tree {
	tb := state.Bucket(tenantKey(t))
	if tb == nil {
		return Tree{}
	}
	nodes := tb.Bucket(bucketNode)
	return Tree{size: leafCount(nodes), nodes: nodes, ids: tb.Bucket(bucketID)}
}

// Size is the number of leaves.
func (tr Tree) Size() uint64 { return tr.size }

// Root is the root hash of the tree's first size leaves.
func (tr Tree) Root(size uint64) ([]byte, error) {
	if size > tr.size {
		return nil, fmt.Errorf("the audit log holds %d events, not %d", tr.size, size)
	}
	if size == 0 {
		return Hasher.EmptyRoot(), nil
	}
	r, err := rangeAt(tr.nodes, size)
	if err != nil {
		return nil, err
	}
	return r.GetRootHash(nil)
}

// Leaf is the stored leaf hash at index.
func (tr Tree) Leaf(index uint64) ([]byte, error) {
	if index >= tr.size {
		return nil, fmt.Errorf("leaf %d of %d", index, tr.size)
	}
	h, err := fetch(tr.nodes, []compact.NodeID{compact.NewNodeID(0, index)})
	if err != nil {
		return nil, err
	}
	return h[0], nil
}

// Locate is the leaf index and store position of event id.
func (tr Tree) Locate(id string) (index, position uint64, err error) {
	if tr.ids == nil {
		return 0, 0, ErrNotInTree
	}
	v := tr.ids.Get(idKey(id))
	if len(v) != 16 {
		return 0, 0, ErrNotInTree
	}
	return binary.BigEndian.Uint64(v[:8]), binary.BigEndian.Uint64(v[8:]), nil
}

// Inclusion is the RFC 6962 inclusion proof of leaf index in the tree of size leaves.
func (tr Tree) Inclusion(index, size uint64) ([][]byte, error) {
	if size > tr.size || index >= size {
		return nil, fmt.Errorf("no inclusion proof of leaf %d in a tree of %d (the log holds %d)", index, size, tr.size)
	}
	n, err := proof.Inclusion(index, size)
	if err != nil {
		return nil, err
	}
	return tr.rehash(n)
}

// Consistency is the RFC 6962 consistency proof from size1 to size2 leaves.
func (tr Tree) Consistency(size1, size2 uint64) ([][]byte, error) {
	if size2 > tr.size || size1 > size2 {
		return nil, fmt.Errorf("no consistency proof from %d to %d (the log holds %d)", size1, size2, tr.size)
	}
	n, err := proof.Consistency(size1, size2)
	if err != nil {
		return nil, err
	}
	return tr.rehash(n)
}

func (tr Tree) rehash(n proof.Nodes) ([][]byte, error) {
	hashes, err := fetch(tr.nodes, n.IDs)
	if err != nil {
		return nil, err
	}
	return n.Rehash(hashes, Hasher.HashChildren)
}
