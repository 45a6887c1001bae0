package eventstore

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"hash"
	"strconv"
	"time"
)

// FastHasher computes ComputeHash without its allocations: the canonical bytes are streamed
// into one reused SHA-256, and data that is already compact (what json.Marshal writes, so nearly all
// of it) is not re-compacted. A mismatch is always re-checked with ComputeHash, so this
// fast path can cost speed but never change a verdict. One per goroutine.
type FastHasher struct {
	h       hash.Hash
	scratch []byte
	compact bytes.Buffer
	sum     [sha256.Size]byte
}

// NewFastHasher returns a hasher for one goroutine.
func NewFastHasher() *FastHasher { return &FastHasher{h: sha256.New(), scratch: make([]byte, 0, 64)} }

func (x *FastHasher) put(s string) {
	var n [binary.MaxVarintLen64]byte
	x.h.Write(n[:binary.PutUvarint(n[:], uint64(len(s)))])
	x.h.Write([]byte(s))
}

func (x *FastHasher) putBytes(b []byte) {
	var n [binary.MaxVarintLen64]byte
	x.h.Write(n[:binary.PutUvarint(n[:], uint64(len(b)))])
	x.h.Write(b)
}

// hash returns e's hash as ComputeHash(e.Prev, e) would, or ok=false when it cannot tell
// quickly (data that does not compact); the caller then asks the reference implementation.
func (x *FastHasher) hash(e *Event) (string, bool) {
	data := e.Data
	if len(data) > 0 && !isCompact(data) {
		x.compact.Reset()
		if err := json.Compact(&x.compact, data); err != nil {
			return "", false
		}
		data = x.compact.Bytes()
	}
	x.h.Reset()
	x.h.Write([]byte(e.Prev))
	x.put("crispy.event.v1")
	x.put(e.ID)
	x.put(e.Type)
	x.put(e.Tenant.String())
	x.put(e.Stream)
	x.scratch = strconv.AppendUint(x.scratch[:0], e.Revision, 10)
	x.putBytes(x.scratch)
	x.scratch = e.Time.UTC().AppendFormat(x.scratch[:0], time.RFC3339Nano)
	x.putBytes(x.scratch)
	x.put(e.RequestID)
	x.put(e.Actor)
	x.put(e.CausationID)
	x.put(e.CorrelationID)
	x.putBytes(data)
	if e.User != "" {
		// As CanonicalBytes: the user is tagged after the data, only when set.
		x.put("user")
		x.put(e.User)
	}
	return hex.EncodeToString(x.h.Sum(x.sum[:0])), true
}

// Check returns e's recomputed hash, using the reference implementation whenever the fast path
// disagrees with the stored hash or cannot decide.
func (x *FastHasher) Check(e *Event) (string, error) {
	if h, ok := x.hash(e); ok && h == e.Hash {
		return h, nil
	}
	return ComputeHash(e.Prev, e)
}

// isCompact reports whether JSON text has no whitespace outside strings, i.e. json.Compact would
// leave it unchanged.
func isCompact(b []byte) bool {
	in, esc := false, false
	for _, c := range b {
		switch {
		case esc:
			esc = false
		case in && c == '\\':
			esc = true
		case c == '"':
			in = !in
		case !in && (c == ' ' || c == '\t' || c == '\n' || c == '\r'):
			return false
		}
	}
	return true
}
