package embedded

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"

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
	d := decoder{b: b}
	var e eventstore.Event
	e.ID = d.string()
	e.Type = d.string()
	e.Stream = d.string()
	e.Revision = d.uvarint()
	e.Position = eventstore.Position(d.uvarint())
	e.Time = time.Unix(0, int64(d.uvarint())).UTC()
	e.RequestID = d.string()
	e.Actor = d.string()
	e.CausationID = d.string()
	e.CorrelationID = d.string()
	data := d.bytes()
	e.Prev = d.string()
	e.Hash = d.string()
	for d.err == nil && len(d.b) != 0 {
		// After the hash the encoder writes only tagged optional fields: anything else is damage,
		// not slack.
		switch tag := d.uvarint(); {
		case d.err != nil:
		case tag == tagUser && e.User == "":
			e.User = d.string()
			if d.err == nil && e.User == "" {
				return e, fmt.Errorf("decode event %s: empty user field after the hash", e.ID)
			}
		default:
			return e, fmt.Errorf("decode event %s: unknown or repeated field %d after the hash", e.ID, tag)
		}
	}
	if d.err != nil {
		return e, fmt.Errorf("decode event: %w", d.err)
	}
	e.Data = append([]byte(nil), data...)
	st, err := tenant.ParseStream(e.Stream)
	if err != nil {
		return e, fmt.Errorf("decode event %s: %w", e.ID, err)
	}
	e.Tenant = st.Tenant()
	return e, nil
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
