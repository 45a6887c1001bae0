// Package domain holds retrieval's rules without I/O: chunking, the document fold, query
// normalisation, the safety filter, and the offline (extractive) answer.
package domain

import (
	"strconv"
	"unicode"
	"unicode/utf8"

	"github.com/crispy-enigma/crispy/modules/retrieval/events"
)

// Chunking limits (SPEC §2).
const (
	MinChunkSize     = 100
	MaxChunkSize     = 10_000
	DefaultChunkSize = 1000
	DefaultOverlap   = 100
)

// Chunk is one piece of a document: Text == doc[Start:End] (byte offsets).
type Chunk struct {
	ID    string
	N     int
	Text  string
	Start int
	End   int
}

// ChunkText splits text into chunks of at most size characters (runes), preferring to end a chunk at a
// paragraph break, then at a sentence end, then between words; a word longer than size is cut (never
// dropped). Consecutive chunks share about overlap characters, starting at a word where one is near.
// Chunks never split a rune, never start or end with whitespace, and are numbered {docID}#{n}.
func ChunkText(docID, text string, size, overlap int) []Chunk {
	if size <= 0 {
		size = DefaultChunkSize
	}
	if overlap < 0 || overlap >= size {
		overlap = 0
	}
	// off[i] is the byte offset of rune i; off[n] == len(text).
	off := make([]int, 0, len(text)+1)
	rs := make([]rune, 0, len(text))
	for i, r := range text {
		off = append(off, i)
		rs = append(rs, r)
	}
	n := len(rs)
	off = append(off, len(text))

	var out []Chunk
	s := skipSpace(rs, 0)
	for s < n {
		e := n
		if n-s > size {
			e = cutPoint(rs, s, s+size)
		}
		// Trim trailing whitespace for the chunk's text; e stays the cut for the overlap.
		te := e
		for te > s && unicode.IsSpace(rs[te-1]) {
			te--
		}
		if te > s {
			out = append(out, Chunk{ID: docID + "#" + strconv.Itoa(len(out)), N: len(out), Text: text[off[s]:off[te]], Start: off[s], End: off[te]})
		}
		if e >= n {
			break
		}
		next := e
		if overlap > 0 {
			next = overlapStart(rs, e-overlap, e)
		}
		if next <= s {
			next = e
		}
		s = skipSpace(rs, next)
	}
	return out
}

func skipSpace(rs []rune, i int) int {
	for i < len(rs) && unicode.IsSpace(rs[i]) {
		i++
	}
	return i
}

// cutPoint finds where a chunk starting at s with at most limit (exclusive rune index) should end.
func cutPoint(rs []rune, s, limit int) int {
	half := s + (limit-s)/2
	para, sent, word := -1, -1, -1
	for i := limit; i > s; i-- {
		// A cut at i falls between rs[i-1] and rs[i].
		if para < 0 && i >= half && isParagraphBreak(rs, i) {
			para = i
			break
		}
		if sent < 0 && i >= half && isSentenceEnd(rs, i) {
			sent = i
		}
		if word < 0 && (unicode.IsSpace(rs[i-1]) || unicode.IsSpace(rs[i])) {
			word = i
		}
	}
	switch {
	case para > 0:
		return para
	case sent > 0:
		return sent
	case word > 0:
		return word
	default:
		return limit // one word longer than the limit: cut it
	}
}

// isParagraphBreak: rs[i] starts a line that follows an empty line.
func isParagraphBreak(rs []rune, i int) bool {
	if i >= len(rs) || rs[i-1] != '\n' {
		return false
	}
	for j := i - 2; j >= 0; j-- {
		switch rs[j] {
		case '\n':
			return true
		case ' ', '\t', '\r':
			continue
		default:
			return false
		}
	}
	return false
}

func isSentenceEnd(rs []rune, i int) bool {
	switch rs[i-1] {
	case '。', '！', '？':
		return true
	case '.', '!', '?':
		return i >= len(rs) || unicode.IsSpace(rs[i])
	}
	return false
}

// overlapStart moves from, the plain overlap start, forward to the start of the next word before e,
// so the overlap does not begin mid-word; inside a single long word it stays at from.
func overlapStart(rs []rune, from, e int) int {
	if from <= 0 {
		return 0
	}
	for i := from; i < e; i++ {
		if unicode.IsSpace(rs[i-1]) && !unicode.IsSpace(rs[i]) {
			return i
		}
	}
	return from
}

// ToEvent converts chunks to their recorded form.
func ToEvent(cs []Chunk) []events.Chunk {
	out := make([]events.Chunk, len(cs))
	for i, c := range cs {
		out[i] = events.Chunk{ID: c.ID, Start: c.Start, End: c.End}
	}
	return out
}

// FromEvent rebuilds chunks from a recorded document, checking that the offsets fit its text.
func FromEvent(text string, cs []events.Chunk) ([]Chunk, bool) {
	out := make([]Chunk, len(cs))
	for i, c := range cs {
		if c.Start < 0 || c.End > len(text) || c.Start > c.End || !utf8.ValidString(text[c.Start:c.End]) {
			return nil, false
		}
		out[i] = Chunk{ID: c.ID, N: i, Text: text[c.Start:c.End], Start: c.Start, End: c.End}
	}
	return out, true
}
