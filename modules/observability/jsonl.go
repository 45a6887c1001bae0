package observability

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/crispy-enigma/crispy/platform/eventstore"
)

// appendEventJSON appends e as one line of JSON with the same fields and names as encoding/json
// gives eventstore.Event. Replay writes millions of events; this avoids reflection and re-compacting
// data that the store already holds as JSON (only data containing a line break is compacted, so every
// event stays on one line).
// content, when not nil, is the opened form of sealed data, written as "content" after "data".
func appendEventJSON(b []byte, e *eventstore.Event, content json.RawMessage) ([]byte, error) {
	b = append(b, `{"id":`...)
	b = appendString(b, e.ID)
	b = append(b, `,"type":`...)
	b = appendString(b, e.Type)
	b = append(b, `,"tenant":`...)
	b = appendString(b, e.Tenant.String())
	b = append(b, `,"stream":`...)
	b = appendString(b, e.Stream)
	b = append(b, `,"revision":`...)
	b = strconv.AppendUint(b, e.Revision, 10)
	b = append(b, `,"position":`...)
	b = strconv.AppendUint(b, uint64(e.Position), 10)
	b = append(b, `,"time":"`...)
	b = e.Time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	for _, f := range [...]struct{ name, v string }{{"requestId", e.RequestID}, {"actor", e.Actor}, {"user", e.User}, {"causationId", e.CausationID}, {"correlationId", e.CorrelationID}} {
		if f.v != "" {
			b = append(b, ',', '"')
			b = append(b, f.name...)
			b = append(b, '"', ':')
			b = appendString(b, f.v)
		}
	}
	b = append(b, `,"data":`...)
	b, err := appendRawJSON(b, e.Data)
	if err != nil {
		return b, err
	}
	if content != nil {
		b = append(b, `,"content":`...)
		if b, err = appendRawJSON(b, content); err != nil {
			return b, err
		}
	}
	b = append(b, `,"prev":`...)
	b = appendString(b, e.Prev)
	b = append(b, `,"hash":`...)
	b = appendString(b, e.Hash)
	if e.Erased { // its content's key was destroyed: data holds only what was kept plain
		b = append(b, `,"erased":true`...)
	}
	return append(b, '}', '\n'), nil
}

// appendRawJSON appends JSON data on one line.
func appendRawJSON(b []byte, data json.RawMessage) ([]byte, error) {
	switch {
	case len(data) == 0:
		return append(b, "null"...), nil
	case bytes.IndexAny(data, "\r\n") >= 0:
		var buf bytes.Buffer
		if err := json.Compact(&buf, data); err != nil {
			return b, err
		}
		return append(b, buf.Bytes()...), nil
	default:
		// Stored data is valid JSON: sealing an event compacts its data, which fails on anything else,
		// and a record altered afterwards is what Verify is for.
		return append(b, data...), nil
	}
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string: quotes, backslashes and control characters escaped,
// invalid UTF-8 replaced by U+FFFD (as encoding/json does).
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
