package embedded

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"
	"unsafe"

	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// On-disk format. The log is a sequence of records:
//
//	[4 bytes little-endian payload length][4 bytes CRC-32C of kind+payload][1 byte kind][payload]
//
// A record is the unit of atomicity: one Append (all its events) is one record, so a crash can never
// leave half an append behind. Group commit writes many records with one write and one fsync.
const (
	headerSize = 9

	kindEvents   byte = 1 // payload: uvarint count, then count × (uvarint len, encoded event)
	kindMetadata byte = 2 // payload: stream name, JSON StreamMetadata

	maxRecord = 64 << 20
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

var errShort = errors.New("short buffer")

func appendUvarint(b []byte, v uint64) []byte { return binary.AppendUvarint(b, v) }

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// Optional fields follow the hash as (uvarint tag, string) pairs, each written only when set, so an
// event without them is encoded exactly as before they existed (logs written then read unchanged).
// An unknown tag is damage: this version knows every tag it could have written.
const (
	tagUser = 1 // Event.User
)

// encodeEvent writes the envelope compactly: strings length-prefixed, numbers as varints. The data
// stays the JSON the caller gave, so reads never re-encode it.
func encodeEvent(b []byte, e *eventstore.Event) []byte {
	b = appendString(b, e.ID)
	b = appendString(b, e.Type)
	b = appendString(b, e.Stream)
	b = appendUvarint(b, e.Revision)
	b = appendUvarint(b, uint64(e.Position))
	b = appendUvarint(b, uint64(e.Time.UnixNano()))
	b = appendString(b, e.RequestID)
	b = appendString(b, e.Actor)
	b = appendString(b, e.CausationID)
	b = appendString(b, e.CorrelationID)
	b = appendString(b, string(e.Data))
	b = appendString(b, e.Prev)
	b = appendString(b, e.Hash)
	if e.User != "" {
		b = appendUvarint(b, tagUser)
		b = appendString(b, e.User)
	}
	return b
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	if len(d.b) > 0 && d.b[0] < 0x80 {
		// One byte: every string length under 128 and most small numbers (the common case).
		v := uint64(d.b[0])
		d.b = d.b[1:]
		return v
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errShort
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if uint64(len(d.b)) < n {
		d.err = errShort
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string { return string(d.bytes()) }

func decodeEvent(b []byte) (eventstore.Event, error) {
	var e eventstore.Event
	err := decodeEventInto(&e, b, nil)
	return e, err
}

// decodeCache makes reading many events cheaper (verification reads every event of a tenant, a
// projection's catch-up every event): the strings that repeat from event to event (stream, type,
// actor, user) are made once, a stream's name is parsed once for its tenant, and the strings
// unique to an event share one allocation (see decodeEventInto). It holds at most cacheMax names;
// one per goroutine (Store.decoders pools them).
type decodeCache struct {
	streams map[string]streamName
	strs    map[string]string
}

type streamName struct {
	name string
	t    tenant.ID
}

const cacheMax = 8192

func newDecodeCache() *decodeCache {
	return &decodeCache{streams: map[string]streamName{}, strs: map[string]string{}}
}

// stream returns the stream named b and its tenant.
func (c *decodeCache) stream(b []byte) (streamName, error) {
	if sn, ok := c.streams[string(b)]; ok {
		return sn, nil
	}
	name := string(b)
	st, err := tenant.ParseStream(name)
	if err != nil {
		return streamName{}, err
	}
	if len(c.streams) >= cacheMax {
		clear(c.streams)
	}
	sn := streamName{name: name, t: st.Tenant()}
	c.streams[name] = sn
	return sn, nil
}

// str returns b as a string, the same one as the last time b was seen.
func (c *decodeCache) str(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if v, ok := c.strs[string(b)]; ok {
		return v
	}
	v := string(b)
	if len(c.strs) >= cacheMax {
		clear(c.strs)
	}
	c.strs[v] = v
	return v
}

// decodeEventInto decodes b into e. With a cache (nil: none), the repeating strings come from it and
// the event's own strings (id, request, causation and correlation ids, prev and hash) are views of
// one copy of their bytes, made with unsafe.String: that copy is never written after, as a string's
// bytes must not be, and holding any of them keeps only those ~250 bytes alive. Data is a copy of
// its own, so that a caller changing it in place changes nothing else, and holding an id never
// keeps the data alive.
func decodeEventInto(e *eventstore.Event, b []byte, c *decodeCache) error {
	return decodeEventData(e, b, c, true)
}

// decodeEventData is decodeEventInto; with copyData false, Data is the part of b that holds it (capped,
// so an append to it never writes into b's next bytes), not a copy: for a caller whose b is a buffer
// of its own that is never written again (readRecs for a subscription).
func decodeEventData(e *eventstore.Event, b []byte, c *decodeCache, copyData bool) error {
	d := decoder{b: b}
	id := d.bytes()
	typ := d.bytes()
	stream := d.bytes()
	e.Revision = d.uvarint()
	e.Position = eventstore.Position(d.uvarint())
	e.Time = time.Unix(0, int64(d.uvarint())).UTC()
	requestID := d.bytes()
	actor := d.bytes()
	causation := d.bytes()
	correlation := d.bytes()
	data := d.bytes()
	prev := d.bytes()
	hash := d.bytes()
	var user []byte
	hasUser := false
	for d.err == nil && len(d.b) != 0 {
		// After the hash the encoder writes only tagged optional fields: anything else is damage,
		// not slack.
		switch tag := d.uvarint(); {
		case d.err != nil:
		case tag == tagUser && !hasUser:
			user, hasUser = d.bytes(), true
			if d.err == nil && len(user) == 0 {
				return fmt.Errorf("decode event %s: empty user field after the hash", id)
			}
		default:
			return fmt.Errorf("decode event %s: unknown or repeated field %d after the hash", id, tag)
		}
	}
	if d.err != nil {
		return fmt.Errorf("decode event: %w", d.err)
	}
	if copyData {
		e.Data = append([]byte(nil), data...)
	} else {
		e.Data = data[:len(data):len(data)]
	}
	if c == nil {
		e.ID, e.Type, e.Stream = string(id), string(typ), string(stream)
		e.RequestID, e.Actor, e.CausationID, e.CorrelationID = string(requestID), string(actor), string(causation), string(correlation)
		e.Prev, e.Hash, e.User = string(prev), string(hash), string(user)
		st, err := tenant.ParseStream(e.Stream)
		if err != nil {
			return fmt.Errorf("decode event %s: %w", e.ID, err)
		}
		e.Tenant = st.Tenant()
		return nil
	}
	own := make([]byte, 0, len(id)+len(requestID)+len(causation)+len(correlation)+len(prev)+len(hash))
	view := func(b []byte) string {
		if len(b) == 0 {
			return ""
		}
		at := len(own)
		own = append(own, b...) // within own's capacity: never moves
		return unsafe.String(&own[at], len(b))
	}
	e.ID, e.RequestID, e.CausationID, e.CorrelationID = view(id), view(requestID), view(causation), view(correlation)
	e.Prev, e.Hash = view(prev), view(hash)
	e.Type, e.Actor, e.User = c.str(typ), c.str(actor), c.str(user)
	sn, err := c.stream(stream)
	if err != nil {
		return fmt.Errorf("decode event %s: %w", e.ID, err)
	}
	e.Stream, e.Tenant = sn.name, sn.t
	return nil
}

// frame wraps a payload in a record header.
func frame(b []byte, kind byte, payload []byte) []byte {
	var h [headerSize]byte
	binary.LittleEndian.PutUint32(h[0:4], uint32(len(payload)))
	c := crc32.Update(0, crcTable, []byte{kind})
	c = crc32.Update(c, crcTable, payload)
	binary.LittleEndian.PutUint32(h[4:8], c)
	h[8] = kind
	b = append(b, h[:]...)
	return append(b, payload...)
}
