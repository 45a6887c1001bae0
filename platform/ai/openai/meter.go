package openai

import (
	"bytes"
	"encoding/json"

	"github.com/crispy-enigma/crispy/platform/jsonwalk"
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
			if walkUsage(v, m.usage) {
				return true
			}
			*m.usage = usage{}
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

// walkUsage reads a usage object's counts (the three totals and the cached and reasoning details)
// into u without encoding/json, which took most of the meter's time; ok is false for anything but
// plain non-negative integers under those exact names (a float, a null detail, a key in another
// case or with an escape, a repeated one), which is then decoded as before.
func walkUsage(v []byte, u *usage) bool {
	seen := 0
	end := jsonwalk.Object(v, 0, func(key []byte, vs, ve int) bool {
		var bit int
		var dst *int
		switch string(key) {
		case "prompt_tokens":
			bit, dst = 1, &u.PromptTokens
		case "completion_tokens":
			bit, dst = 2, &u.CompletionTokens
		case "total_tokens":
			bit, dst = 4, &u.TotalTokens
		case "prompt_tokens_details":
			if seen&8 != 0 {
				return false
			}
			seen |= 8
			u.PromptTokensDetails = &struct {
				CachedTokens int `json:"cached_tokens"`
			}{}
			return walkDetail(v[vs:ve], "cached_tokens", &u.PromptTokensDetails.CachedTokens)
		case "completion_tokens_details":
			if seen&16 != 0 {
				return false
			}
			seen |= 16
			u.CompletionTokensDetails = &struct {
				ReasoningTokens int `json:"reasoning_tokens"`
			}{}
			return walkDetail(v[vs:ve], "reasoning_tokens", &u.CompletionTokensDetails.ReasoningTokens)
		default:
			// Another field is skipped, as a decode skips it, unless a decode would match it
			// to one of these regardless of case.
			for _, k := range usageKeys {
				if bytes.EqualFold(key, []byte(k)) {
					return false
				}
			}
			return true
		}
		if seen&bit != 0 {
			return false
		}
		seen |= bit
		n, ok := plainInt(v[vs:ve])
		*dst = n
		return ok
	})
	return end == len(v)
}

var usageKeys = []string{"prompt_tokens", "completion_tokens", "total_tokens", "prompt_tokens_details", "completion_tokens_details"}

// walkDetail reads {name: n} (other fields skipped) into dst; ok as walkUsage's.
func walkDetail(v []byte, name string, dst *int) bool {
	seen := false
	end := jsonwalk.Object(v, 0, func(key []byte, vs, ve int) bool {
		if string(key) != name {
			return !bytes.EqualFold(key, []byte(name))
		}
		if seen {
			return false
		}
		seen = true
		n, ok := plainInt(v[vs:ve])
		*dst = n
		return ok
	})
	return end == len(v)
}

// plainInt reads a JSON number made of digits only (at most 15 of them).
func plainInt(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > 15 || (b[0] == '0' && len(b) > 1) {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}
