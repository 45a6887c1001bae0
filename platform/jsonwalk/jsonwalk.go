// Package jsonwalk walks JSON text without decoding it: the spans of an object's keys and values,
// of an array's elements. The pass-through reads a few fields of a body or a chunk it sends on as it
// is, where a decode with encoding/json would validate and copy all of it. The walk does not check
// what it skips (a caller that must refuse malformed JSON decodes it, or relies on a decode done
// before).
package jsonwalk

import "bytes"

// Object calls fn with each key of the object at data[i] (its raw bytes, without the quotes)
// and the span of its value; it returns the index after the object, or -1 when the object is
// malformed, a key has an escape, or fn returns false.
func Object(data []byte, i int, fn func(key []byte, vs, ve int) bool) int {
	if i >= len(data) || data[i] != '{' {
		return -1
	}
	i = Space(data, i+1)
	if i < len(data) && data[i] == '}' {
		return i + 1
	}
	for {
		if i >= len(data) || data[i] != '"' {
			return -1
		}
		ke := String(data, i)
		if ke < 0 {
			return -1
		}
		key := data[i+1 : ke-1]
		if bytes.IndexByte(key, '\\') >= 0 {
			return -1
		}
		i = Space(data, ke)
		if i >= len(data) || data[i] != ':' {
			return -1
		}
		vs := Space(data, i+1)
		ve := Value(data, vs)
		if ve < 0 || !fn(key, vs, ve) {
			return -1
		}
		i = Space(data, ve)
		if i >= len(data) {
			return -1
		}
		switch data[i] {
		case ',':
			i = Space(data, i+1)
		case '}':
			return i + 1
		default:
			return -1
		}
	}
}

// Array calls fn with the span of each element of the array at data[i]; it returns the index
// after the array, or -1 when it is malformed or fn returns false.
func Array(data []byte, i int, fn func(es, ee int) bool) int {
	if i >= len(data) || data[i] != '[' {
		return -1
	}
	i = Space(data, i+1)
	if i < len(data) && data[i] == ']' {
		return i + 1
	}
	for {
		ee := Value(data, i)
		if ee < 0 || !fn(i, ee) {
			return -1
		}
		i = Space(data, ee)
		if i >= len(data) {
			return -1
		}
		switch data[i] {
		case ',':
			i = Space(data, i+1)
		case ']':
			return i + 1
		default:
			return -1
		}
	}
}

// Space returns the index of the first byte at or after i that is not JSON whitespace.
func Space(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

// String returns the index after the string at data[i] (which is '"'), or -1.
func String(data []byte, i int) int {
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

// Value returns the index after the value at data[i], or -1 when there is none. Objects and
// arrays are skipped by their brackets (strings inside them included), numbers and literals up to
// the next delimiter; their contents are not checked.
func Value(data []byte, i int) int {
	if i >= len(data) {
		return -1
	}
	switch data[i] {
	case '"':
		return String(data, i)
	case '{', '[':
		depth := 0
		for i < len(data) {
			switch data[i] {
			case '"':
				if i = String(data, i); i < 0 {
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
