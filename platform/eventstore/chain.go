package eventstore

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sync"
	"time"
)

// sealers are Seal's hashers, one per goroutine at a time.
var sealers = sync.Pool{New: func() any { return NewFastHasher() }}

// maxPooledSealer bounds the buffers a pooled hasher keeps: one large event does not pin its size.
const maxPooledSealer = 64 << 10

// CanonicalBytes is the byte string an event's hash covers: every envelope field that the writer
// decides (not the global position, which some engines assign after the hash is computed), each
// length-prefixed so that no two different events encode alike. Data is compacted JSON, so
// insignificant whitespace does not change the hash.
//
// User came after the first events were written: it is added after the data, tagged, only when set,
// so an event without one has the bytes (and hash) it always had, and logs written before it still
// verify. The tag keeps a user from passing for trailing data: the data is length-prefixed, so
// anything after it is a field of its own.
func CanonicalBytes(e *Event) ([]byte, error) {
	var data bytes.Buffer
	if len(e.Data) > 0 {
		if err := json.Compact(&data, e.Data); err != nil {
			return nil, fmt.Errorf("canonical data of %s: %w", e.ID, err)
		}
	}
	var b bytes.Buffer
	b.Grow(128 + data.Len())
	put := func(s string) {
		var n [binary.MaxVarintLen64]byte
		b.Write(n[:binary.PutUvarint(n[:], uint64(len(s)))])
		b.WriteString(s)
	}
	put("crispy.event.v1")
	put(e.ID)
	put(e.Type)
	put(e.Tenant.String())
	put(e.Stream)
	put(fmt.Sprint(e.Revision))
	put(e.Time.UTC().Format(time.RFC3339Nano))
	put(e.RequestID)
	put(e.Actor)
	put(e.CausationID)
	put(e.CorrelationID)
	put(data.String())
	if e.User != "" {
		put(canonicalUserTag)
		put(e.User)
	}
	return b.Bytes(), nil
}

// canonicalUserTag names the optional user field in CanonicalBytes.
const canonicalUserTag = "user"

// ComputeHash returns hex(SHA-256(prev || canonical bytes of e)).
func ComputeHash(prev string, e *Event) (string, error) {
	c, err := CanonicalBytes(e)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	h.Write([]byte(prev))
	h.Write(c)
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Seal sets e.Prev and e.Hash given the hash of the stream's previous event ("" for the first).
//
// Every append seals its events, so Seal hashes with a pooled FastHasher (one allocation, the hash
// string, instead of about a dozen: the canonical buffers, the revision and time strings, a new
// SHA-256) when the data is valid JSON; the FastHasher hashes the same bytes as ComputeHash
// (TestSealMatchesComputeHash). Data that is not valid JSON goes to ComputeHash, which refuses it
// as before: the FastHasher skips the compaction, and with it the validation, of data that has no
// whitespace to remove.
func Seal(prev string, e *Event) error {
	e.Prev = prev
	if len(e.Data) > 0 && json.Valid(e.Data) {
		x := sealers.Get().(*FastHasher)
		h, ok := x.hash(e)
		if cap(x.buf) <= maxPooledSealer && x.compact.Cap() <= maxPooledSealer {
			sealers.Put(x)
		}
		if ok {
			e.Hash = h
			return nil
		}
	}
	h, err := ComputeHash(prev, e)
	if err != nil {
		return err
	}
	e.Hash = h
	return nil
}

// ChainError describes the first event at which a chain does not verify.
type ChainError struct {
	EventID  string
	Stream   string
	Revision uint64
	Reason   string
}

func (e *ChainError) Error() string {
	return fmt.Sprintf("hash chain broken at %s@%d (event %s): %s", e.Stream, e.Revision, e.EventID, e.Reason)
}

// ChainVerifier checks per-stream hash chains over events fed in any interleaving of streams, as long
// as each stream's events arrive in revision order. A stream's first readable event may follow
// truncated ones; its prev is then taken on trust (the truncation is recorded in the stream itself).
type ChainVerifier struct {
	last    map[string]lastLink
	Checked int
}

type lastLink struct {
	rev  uint64
	hash string
}

// NewChainVerifier returns an empty verifier.
func NewChainVerifier() *ChainVerifier { return &ChainVerifier{last: map[string]lastLink{}} }

// Check verifies e against its own hash and its stream's previous event. It returns a *ChainError on
// the first problem.
func (v *ChainVerifier) Check(e *Event) error {
	v.Checked++
	want, err := ComputeHash(e.Prev, e)
	if err != nil {
		return &ChainError{EventID: e.ID, Stream: e.Stream, Revision: e.Revision, Reason: err.Error()}
	}
	if want != e.Hash {
		return &ChainError{EventID: e.ID, Stream: e.Stream, Revision: e.Revision, Reason: "hash does not match the event's contents"}
	}
	prev, seen := v.last[e.Stream]
	switch {
	case !seen && e.Revision == 0 && e.Prev != "":
		return &ChainError{EventID: e.ID, Stream: e.Stream, Revision: e.Revision, Reason: "first event of the stream has a prev hash"}
	case seen && e.Revision != prev.rev+1:
		return &ChainError{EventID: e.ID, Stream: e.Stream, Revision: e.Revision, Reason: fmt.Sprintf("revision gap after %d", prev.rev)}
	case seen && e.Prev != prev.hash:
		return &ChainError{EventID: e.ID, Stream: e.Stream, Revision: e.Revision, Reason: "prev does not match the previous event's hash"}
	}
	v.last[e.Stream] = lastLink{rev: e.Revision, hash: e.Hash}
	return nil
}
