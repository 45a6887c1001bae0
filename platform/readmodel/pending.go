package readmodel

import (
	"slices"

	bolt "go.etcd.io/bbolt"
)

// Pending is a write transaction's changed values of keys of the state bucket (Tx.Bucket), kept in
// memory and each written once when the transaction commits (a Deferred). For counters and totals
// that many events of one transaction add to (a tenant's tokens of the day, usage of a 5-minute
// bucket): each event read its key and wrote it back, two B-tree searches an event and a key, while
// a commit of a catching-up read model holds thousands of events over a few keys. Read those keys
// in the transaction through Get; a key also deleted from the bucket meanwhile must be forgotten
// (Forget) so that the commit does not write it back.
type Pending struct {
	b    *bolt.Bucket
	vals map[string][]byte
}

// Pending returns the transaction's Pending under key (one per key: a read model's handlers share
// theirs).
func (t *Tx) Pending(key any) *Pending {
	return t.Deferred(key, func() Deferred { return &Pending{b: t.state, vals: map[string][]byte{}} }).(*Pending)
}

// Get is key's value in the transaction: pending, or as stored (valid until the transaction ends,
// like a bucket's; do not modify it).
func (p *Pending) Get(key []byte) []byte {
	if v, ok := p.vals[string(key)]; ok {
		return v
	}
	return p.b.Get(key)
}

// Put sets key's value, written at the commit. v is the Pending's from then on: do not reuse it.
func (p *Pending) Put(key, v []byte) { p.vals[string(key)] = v }

// Forget drops the pending values of the keys from lo (included) to hi (excluded), which the caller
// deletes from the bucket itself.
func (p *Pending) Forget(lo, hi []byte) {
	for k := range p.vals {
		if k >= string(lo) && k < string(hi) {
			delete(p.vals, k)
		}
	}
}

// Flush implements Deferred: the pending values, in key order.
func (p *Pending) Flush(*Tx) error {
	keys := make([]string, 0, len(p.vals))
	for k := range p.vals {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if err := p.b.Put([]byte(k), p.vals[k]); err != nil {
			return err
		}
	}
	clear(p.vals)
	return nil
}
