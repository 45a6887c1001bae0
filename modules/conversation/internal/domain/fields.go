package domain

import (
	"encoding/json"
	"errors"
)

var errShape = errors.New("unexpected JSON shape")

// decodeMessage reads turnId, content and model from an event's data without reflection: the fold
// of a long session is dominated by decoding, and these events are flat objects the module wrote
// itself. Anything unexpected returns an error and the caller falls back to encoding/json.
func decodeMessage(data []byte, out *messageFields) error {
	i := skipWS(data, 0)
	if i >= len(data) || data[i] != '{' {
		return errShape
	}
	i++
	for {
		i = skipWS(data, i)
		if i >= len(data) {
			return errShape
		}
		if data[i] == '}' {
			return nil
		}
		if data[i] != '"' {
			return errShape
		}
		kEnd, kEsc := stringEnd(data, i)
		if kEnd < 0 || kEsc {
			return errShape
		}
		key := data[i+1 : kEnd]
		i = skipWS(data, kEnd+1)
		if i >= len(data) || data[i] != ':' {
			return errShape
		}
		i = skipWS(data, i+1)
		if i >= len(data) {
			return errShape
		}
		var dst *string
		switch string(key) {
		case "turnId":
			dst = &out.TurnID
		case "content":
			dst = &out.Content
		case "model":
			dst = &out.Model
		case "instance":
			dst = &out.Instance
		case "run":
			dst = &out.Run
		}
		if data[i] == '"' {
			end, esc := stringEnd(data, i)
			if end < 0 {
				return errShape
			}
			if dst != nil {
				if esc {
					if err := json.Unmarshal(data[i:end+1], dst); err != nil {
						return err
					}
				} else {
					*dst = string(data[i+1 : end])
				}
			}
			i = end + 1
		} else {
			if dst != nil {
				return errShape // a wanted field that is not a string
			}
			end := skipValue(data, i)
			if end < 0 {
				return errShape
			}
			i = end
		}
		i = skipWS(data, i)
		if i >= len(data) {
			return errShape
		}
		switch data[i] {
		case ',':
			i++
		case '}':
			return nil
		default:
			return errShape
		}
	}
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\t' || b[i] == '\r') {
		i++
	}
	return i
}

// stringEnd returns the index of the closing quote of the string starting at b[i] == '"', and
// whether it contains escapes; -1 when unterminated.
func stringEnd(b []byte, i int) (int, bool) {
	esc := false
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			esc = true
			j++
		case '"':
			return j, esc
		}
	}
	return -1, esc
}

// skipValue returns the index just after the non-string value starting at b[i]; -1 on bad input.
func skipValue(b []byte, i int) int {
	depth := 0
	for j := i; j < len(b); j++ {
		switch b[j] {
		case '"':
			end, _ := stringEnd(b, j)
			if end < 0 {
				return -1
			}
			j = end
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 {
				return j
			}
			depth--
			if depth == 0 {
				return j + 1
			}
		case ',':
			if depth == 0 {
				return j
			}
		}
	}
	if depth == 0 {
		return len(b)
	}
	return -1
}
