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

// FastHasher computes ComputeHash without its allocations: the canonical bytes are built in one
// reused buffer and hashed with one write into one reused SHA-256, and data that is already compact
// (what json.Marshal writes, so nearly all of it) is not re-compacted. A mismatch is always
// re-checked with ComputeHash, so this fast path can cost speed but never change a verdict. One per
// goroutine.
type FastHasher struct {
	h       hash.Hash
	buf     []byte // the bytes hashed: prev, then the canonical bytes
	scratch []byte
	compact bytes.Buffer
	sum     [sha256.Size]byte
	hex     [2 * sha256.Size]byte
}

// NewFastHasher returns a hasher for one goroutine.
func NewFastHasher() *FastHasher {
	return &FastHasher{h: sha256.New(), buf: make([]byte, 0, 1024), scratch: make([]byte, 0, 64)}
}

func (x *FastHasher) put(s string) {
	x.buf = binary.AppendUvarint(x.buf, uint64(len(s)))
	x.buf = append(x.buf, s...)
}

func (x *FastHasher) putBytes(b []byte) {
	x.buf = binary.AppendUvarint(x.buf, uint64(len(b)))
	x.buf = append(x.buf, b...)
}

// hash returns e's hash as ComputeHash(e.Prev, e) would, or ok=false when it cannot tell
// quickly (data that does not compact); the caller then asks the reference implementation.
func (x *FastHasher) hash(e *Event) (string, bool) {
	if !x.sumHex(e) {
		return "", false
	}
	return string(x.hex[:]), true
}

// sumHex leaves e's hash, hex-encoded, in x.hex (see hash).
func (x *FastHasher) sumHex(e *Event) bool {
	data := e.Data
	if len(data) > 0 && !isCompact(data) {
		x.compact.Reset()
		if err := json.Compact(&x.compact, data); err != nil {
			return false
		}
		data = x.compact.Bytes()
	}
	x.buf = append(x.buf[:0], e.Prev...)
	x.put("crispy.event.v1")
	x.put(e.ID)
	x.put(e.Type)
	x.put(e.Tenant.String())
	x.put(e.Stream)
	x.scratch = strconv.AppendUint(x.scratch[:0], e.Revision, 10)
	x.putBytes(x.scratch)
	x.scratch = appendRFC3339NanoUTC(x.scratch[:0], e.Time)
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
	x.h.Reset()
	x.h.Write(x.buf)
	hex.Encode(x.hex[:], x.h.Sum(x.sum[:0]))
	return true
}

// Check returns e's recomputed hash, using the reference implementation whenever the fast path
// disagrees with the stored hash or cannot decide.
func (x *FastHasher) Check(e *Event) (string, error) {
	if h, ok := x.hash(e); ok && h == e.Hash {
		return h, nil
	}
	return ComputeHash(e.Prev, e)
}

// Matches reports whether e.Hash is e's hash recomputed, as Check(e) == e.Hash, without
// allocating when it is (verification asks it of every stored event). A mismatch is confirmed by
// the reference implementation.
func (x *FastHasher) Matches(e *Event) (bool, error) {
	if x.sumHex(e) && string(x.hex[:]) == e.Hash {
		return true, nil
	}
	h, err := ComputeHash(e.Prev, e)
	if err != nil {
		return false, err
	}
	return h == e.Hash, nil
}

// isCompact reports whether JSON text has no whitespace outside strings, i.e. json.Compact would
// leave it unchanged. Strings, most of an event's data, are skipped with bytes.IndexByte to their
// closing quote (one not preceded by an odd run of backslashes), so the bytes inside them are
// not looked at one by one.
func isCompact(b []byte) bool {
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			return false
		case '"':
			// Find the quote that closes this string.
			for {
				j := bytes.IndexByte(b[i+1:], '"')
				if j < 0 {
					return true // unterminated: not JSON; json.Compact fails and the reference decides
				}
				i += 1 + j
				k := 0
				for k < i && b[i-1-k] == '\\' {
					k++
				}
				if k%2 == 0 {
					break
				}
			}
		}
	}
	return true
}

// appendRFC3339NanoUTC appends t.UTC().Format(time.RFC3339Nano) (the fraction without trailing
// zeros, none when zero; "Z"): the general formatter was a sixth of the hash's cost per event.
// Years outside 0-9999 go through the general formatter.
func appendRFC3339NanoUTC(b []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return t.AppendFormat(b, time.RFC3339Nano)
	}
	hour, min, sec := t.Clock()
	two := func(b []byte, v int) []byte { return append(b, byte('0'+v/10), byte('0'+v%10)) }
	b = append(b, byte('0'+year/1000), byte('0'+year/100%10), byte('0'+year/10%10), byte('0'+year%10), '-')
	b = append(two(b, int(month)), '-')
	b = append(two(b, day), 'T')
	b = append(two(b, hour), ':')
	b = append(two(b, min), ':')
	b = two(b, sec)
	if ns := t.Nanosecond(); ns != 0 {
		var frac [9]byte
		for i := 8; i >= 0; i-- {
			frac[i] = byte('0' + ns%10)
			ns /= 10
		}
		n := 9
		for frac[n-1] == '0' {
			n--
		}
		b = append(append(b, '.'), frac[:n]...)
	}
	return append(b, 'Z')
}
