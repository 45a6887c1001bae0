package domain

import (
	"encoding/json"
	"strconv"

	"github.com/crispy-enigma/crispy/modules/conversation/events"
)

// decodeSegment reads a SessionSnapshotted as this module writes it, without reflection: a segment
// carries hundreds of messages, and encoding/json took twice as long to decode them as folding the
// events they replace. Anything unexpected returns errShape; the caller then uses encoding/json.
//
// The messages are decoded straight into msgs (seg.Messages stays empty), their roles and models
// spelled once rather than once per message.
func decodeSegment(data []byte, seg *events.SessionSnapshotted, msgs *[]Message) error {
	l := lexer{b: data}
	var lastModel string
	var m Message // one for all messages: a closure's variable lives on the heap
	ok := l.object(func(key []byte) bool {
		switch string(key) {
		case "sessionId":
			return l.str(&seg.SessionID)
		case "title":
			return l.str(&seg.Title)
		case "userId":
			return l.str(&seg.UserID)
		case "from":
			return l.uint(&seg.From)
		case "through":
			return l.uint(&seg.Through)
		case "keep":
			return l.int(&seg.Keep)
		case "life":
			return l.uint(&seg.Life)
		case "turns":
			return l.int(&seg.Turns)
		case "failed":
			return l.int(&seg.Failed)
		case "createdAt":
			return l.int64(&seg.CreatedAt)
		case "lastActivity":
			return l.int64(&seg.LastActivity)
		case "open":
			return l.array(func() bool {
				var o events.SnapshotOpenTurn
				ok := l.object(func(key []byte) bool {
					switch string(key) {
					case "turnId":
						return l.str(&o.TurnID)
					case "since":
						return l.int64(&o.Since)
					case "instance":
						return l.str(&o.Instance)
					case "run":
						return l.str(&o.Run)
					}
					return l.skip()
				})
				seg.Open = append(seg.Open, o)
				return ok
			})
		case "messages":
			return l.array(func() bool {
				m = Message{}
				ok := l.object(func(key []byte) bool {
					switch string(key) {
					case "role":
						if l.peek() == '"' {
							if end, _ := stringEnd(l.b, l.i); end > 0 {
								if r := role(string(l.b[l.i+1 : end])); r == "user" || r == "assistant" {
									m.Role, l.i = r, end+1
									return true
								}
							}
						}
						return l.str(&m.Role)
					case "content":
						return l.str(&m.Content)
					case "ts":
						var ns int64
						ok := l.int64(&ns)
						m.Timestamp = fromNanos(ns)
						return ok
					case "turnId":
						return l.str(&m.TurnID)
					case "model":
						if l.peek() == '"' {
							if end, esc := stringEnd(l.b, l.i); end > 0 && !esc && string(l.b[l.i+1:end]) == lastModel {
								m.Model, l.i = lastModel, end+1
								return true
							}
						}
						ok := l.str(&m.Model)
						lastModel = m.Model
						return ok
					}
					return l.skip()
				})
				*msgs = append(*msgs, m)
				return ok
			})
		}
		return l.skip()
	})
	if !ok || skipWS(l.b, l.i) != len(l.b) {
		return errShape
	}
	return nil
}

// lexer walks JSON written by this module; every method reports false on anything unexpected.
type lexer struct {
	b []byte
	i int
}

func (l *lexer) peek() byte {
	l.i = skipWS(l.b, l.i)
	if l.i >= len(l.b) {
		return 0
	}
	return l.b[l.i]
}

// object calls field for each key, with the lexer at its value; field must consume it.
func (l *lexer) object(field func(key []byte) bool) bool {
	if l.peek() != '{' {
		return false
	}
	l.i++
	if l.peek() == '}' {
		l.i++
		return true
	}
	for {
		if l.peek() != '"' {
			return false
		}
		end, esc := stringEnd(l.b, l.i)
		if end < 0 || esc {
			return false
		}
		key := l.b[l.i+1 : end]
		l.i = end + 1
		if l.peek() != ':' {
			return false
		}
		l.i++
		l.peek()
		if !field(key) {
			return false
		}
		switch l.peek() {
		case ',':
			l.i++
		case '}':
			l.i++
			return true
		default:
			return false
		}
	}
}

// array calls elem for each element ("null" is an empty array).
func (l *lexer) array(elem func() bool) bool {
	if l.peek() == 'n' {
		return l.skip()
	}
	if l.peek() != '[' {
		return false
	}
	l.i++
	if l.peek() == ']' {
		l.i++
		return true
	}
	for {
		if !elem() {
			return false
		}
		switch l.peek() {
		case ',':
			l.i++
		case ']':
			l.i++
			return true
		default:
			return false
		}
	}
}

func (l *lexer) str(dst *string) bool {
	if l.peek() != '"' {
		return false
	}
	end, esc := stringEnd(l.b, l.i)
	if end < 0 {
		return false
	}
	if esc {
		if json.Unmarshal(l.b[l.i:end+1], dst) != nil {
			return false
		}
	} else {
		*dst = string(l.b[l.i+1 : end])
	}
	l.i = end + 1
	return true
}

func (l *lexer) number() ([]byte, bool) {
	l.peek()
	start := l.i
	for l.i < len(l.b) && (l.b[l.i] == '-' || (l.b[l.i] >= '0' && l.b[l.i] <= '9')) {
		l.i++
	}
	return l.b[start:l.i], l.i > start
}

func (l *lexer) int64(dst *int64) bool {
	b, ok := l.number()
	if !ok {
		return false
	}
	n, err := strconv.ParseInt(string(b), 10, 64) // string(b) in a call argument does not allocate
	*dst = n
	return err == nil
}

func (l *lexer) uint(dst *uint64) bool {
	b, ok := l.number()
	if !ok {
		return false
	}
	n, err := strconv.ParseUint(string(b), 10, 64)
	*dst = n
	return err == nil
}

func (l *lexer) int(dst *int) bool {
	var n int64
	ok := l.int64(&n)
	*dst = int(n)
	return ok
}

// skip passes over a value of a key this decoder does not read.
func (l *lexer) skip() bool {
	end := skipValue(l.b, skipWS(l.b, l.i))
	if end < 0 {
		return false
	}
	l.i = end
	return true
}
