package openai

import (
	"bytes"
	"encoding/json"
)

// chunkMeter is what metering reads of a streamed chunk.
type chunkMeter struct {
	finish  string // the last non-empty finish_reason of its choices
	usage   *usage
	choices int
	err     *apiError
}

// meterChunk reads a streamed chunk for metering. A relayed stream's chunks go out as they came,
// so decoding each one whole into a struct (encoding/json validates it all, then reflects over it)
// only to learn a finish_reason and a usage was most of the SSE relay's own CPU: the chunk's
// top level and its choices are walked instead, and only the usage object is decoded. A chunk that
// carries an error, or that the walk cannot read (not an object, a key with escapes, bytes after
// the object), is decoded whole, as before. A non-streamed completion is read the same way.
func meterChunk(data []byte) (chunkMeter, error) {
	if m, ok := walkChunk(data); ok {
		return m, nil
	}
	var c passChunk
	if err := json.Unmarshal(data, &c); err != nil {
		return chunkMeter{}, err
	}
	m := chunkMeter{usage: c.Usage, choices: len(c.Choices), err: c.Error}
	for _, ch := range c.Choices {
		if ch.FinishReason != nil && *ch.FinishReason != "" {
			m.finish = *ch.FinishReason
		}
	}
	return m, nil
}

// walkChunk is meterChunk's fast path; ok is false when the chunk must be decoded whole.
func walkChunk(data []byte) (m chunkMeter, ok bool) {
	i := skipSpace(data, 0)
	end := walkObject(data, i, func(key []byte, vs, ve int) bool {
		v := data[vs:ve]
		switch string(key) {
		case "error":
			return string(v) == "null" // an error is decoded whole
		case "usage":
			if string(v) == "null" {
				return true
			}
			if v[0] != '{' {
				return false
			}
			m.usage = new(usage)
			return json.Unmarshal(v, m.usage) == nil
		case "choices":
			if string(v) == "null" {
				return true
			}
			if v[0] != '[' {
				return false
			}
			return walkArray(data, vs, func(es, ee int) bool {
				m.choices++
				if data[es] != '{' {
					return false
				}
				return walkObject(data, es, func(key []byte, vs, ve int) bool {
					if string(key) != "finish_reason" {
						return !bytes.EqualFold(key, []byte("finish_reason"))
					}
					f := data[vs:ve]
					if string(f) == "null" {
						return true
					}
					if f[0] != '"' {
						return false
					}
					if bytes.IndexByte(f, '\\') < 0 {
						if s := f[1 : len(f)-1]; len(s) > 0 {
							m.finish = string(s)
						}
						return true
					}
					var s string
					if json.Unmarshal(f, &s) != nil {
						return false
					}
					if s != "" {
						m.finish = s
					}
					return true
				}) >= 0
			}) >= 0
		}
		// encoding/json matches names regardless of case: a "Usage" is left to it.
		return !bytes.EqualFold(key, []byte("usage")) && !bytes.EqualFold(key, []byte("choices")) && !bytes.EqualFold(key, []byte("error"))
	})
	// Anything after the object is left to the decoder, which refuses it.
	return m, end >= 0 && skipSpace(data, end) == len(data)
}

// walkObject calls fn with each key of the object at data[i] (its raw bytes, without the quotes)
// and the span of its value; it returns the index after the object, or -1 when the object is
// malformed, a key has an escape, or fn returns false.
func walkObject(data []byte, i int, fn func(key []byte, vs, ve int) bool) int {
	if i >= len(data) || data[i] != '{' {
		return -1
	}
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == '}' {
		return i + 1
	}
	for {
		if i >= len(data) || data[i] != '"' {
			return -1
		}
		ke := skipString(data, i)
		if ke < 0 {
			return -1
		}
		key := data[i+1 : ke-1]
		if bytes.IndexByte(key, '\\') >= 0 {
			return -1
		}
		i = skipSpace(data, ke)
		if i >= len(data) || data[i] != ':' {
			return -1
		}
		vs := skipSpace(data, i+1)
		ve := skipValue(data, vs)
		if ve < 0 || !fn(key, vs, ve) {
			return -1
		}
		i = skipSpace(data, ve)
		if i >= len(data) {
			return -1
		}
		switch data[i] {
		case ',':
			i = skipSpace(data, i+1)
		case '}':
			return i + 1
		default:
			return -1
		}
	}
}

// walkArray calls fn with the span of each element of the array at data[i]; it returns the index
// after the array, or -1 when it is malformed or fn returns false.
func walkArray(data []byte, i int, fn func(es, ee int) bool) int {
	if i >= len(data) || data[i] != '[' {
		return -1
	}
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == ']' {
		return i + 1
	}
	for {
		ee := skipValue(data, i)
		if ee < 0 || !fn(i, ee) {
			return -1
		}
		i = skipSpace(data, ee)
		if i >= len(data) {
			return -1
		}
		switch data[i] {
		case ',':
			i = skipSpace(data, i+1)
		case ']':
			return i + 1
		default:
			return -1
		}
	}
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index after the string at data[i] (which is '"'), or -1.
func skipString(data []byte, i int) int {
	for i++; i < len(data); i++ {
		switch data[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return -1
}

// skipValue returns the index after the value at data[i], or -1 when there is none. Objects and
// arrays are skipped by their brackets (strings inside them included), numbers and literals up to
// the next delimiter; their contents are not checked.
func skipValue(data []byte, i int) int {
	if i >= len(data) {
		return -1
	}
	switch data[i] {
	case '"':
		return skipString(data, i)
	case '{', '[':
		depth := 0
		for i < len(data) {
			switch data[i] {
			case '"':
				if i = skipString(data, i); i < 0 {
					return -1
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return -1
	case ',', ':', '}', ']':
		return -1
	}
	s := i
	for i < len(data) && !bytes.ContainsRune([]byte(",}] \t\r\n"), rune(data[i])) {
		i++
	}
	if i == s {
		return -1
	}
	return i
}
