package openai

import (
	"bytes"
	"encoding/json"

	"github.com/crispy-enigma/crispy/platform/ai/internal/jsonwalk"
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
	i := jsonwalk.Space(data, 0)
	end := jsonwalk.Object(data, i, func(key []byte, vs, ve int) bool {
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
			return jsonwalk.Array(data, vs, func(es, ee int) bool {
				m.choices++
				if data[es] != '{' {
					return false
				}
				return jsonwalk.Object(data, es, func(key []byte, vs, ve int) bool {
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
	return m, end >= 0 && jsonwalk.Space(data, end) == len(data)
}
