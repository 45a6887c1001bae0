// Package textkit holds the deterministic text methods the built-in tools use when no real model is
// available: sentence and word segmentation, salient terms, chunking on paragraph, sentence and word
// boundaries, and a hashed bag-of-words embedding. Offsets are byte offsets into the input; the tools
// convert them to code-point offsets (Runes) for their clients.
package textkit

import (
	"hash/fnv"
	"math"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Span is a byte range [Start, End) of a text.
type Span struct{ Start, End int }

// Text returns the span's text.
func (s Span) Text(text string) string { return text[s.Start:s.End] }

// Sentences splits text into sentences (trimmed of surrounding space): a sentence ends at '.', '!' or
// '?' followed by space and an upper-case letter, digit or quote, or at a blank line.
func Sentences(text string) []Span {
	var out []Span
	start := 0
	emit := func(end int) {
		s := trim(text, Span{start, end})
		if s.End > s.Start {
			out = append(out, s)
		}
		start = end
	}
	for i := 0; i < len(text); {
		r, w := utf8.DecodeRuneInString(text[i:])
		if r == '\n' && strings.HasPrefix(strings.TrimLeft(text[i+w:], " \t\r"), "\n") {
			emit(i)
			i += w
			continue
		}
		if r == '.' || r == '!' || r == '?' {
			j := i + w
			for j < len(text) && (text[j] == '.' || text[j] == '!' || text[j] == '?' || text[j] == '"' || text[j] == '\'' || text[j] == ')') {
				j++
			}
			if j >= len(text) {
				emit(j)
				i = j
				continue
			}
			nr, _ := utf8.DecodeRuneInString(text[j:])
			if unicode.IsSpace(nr) && !abbreviation(text[start:i]) {
				k := j
				for k < len(text) {
					kr, kw := utf8.DecodeRuneInString(text[k:])
					if !unicode.IsSpace(kr) {
						break
					}
					k += kw
				}
				if k >= len(text) {
					emit(j)
					i = k
					continue
				}
				nr2, _ := utf8.DecodeRuneInString(text[k:])
				if unicode.IsUpper(nr2) || unicode.IsDigit(nr2) || nr2 == '"' || nr2 == '\'' || nr2 == '-' || nr2 == '*' || nr2 == '(' {
					emit(j)
					i = j
					continue
				}
			}
			i = j
			continue
		}
		i += w
	}
	emit(len(text))
	return out
}

func abbreviation(before string) bool {
	f := strings.Fields(before)
	if len(f) == 0 {
		return false
	}
	last := strings.ToLower(f[len(f)-1])
	switch last {
	case "mr", "mrs", "ms", "dr", "prof", "st", "vs", "etc", "e.g", "i.e", "inc", "ltd", "jr", "sr", "no", "fig":
		return true
	}
	return utf8.RuneCountInString(last) == 1 && unicode.IsUpper([]rune(f[len(f)-1])[0])
}

func trim(text string, s Span) Span {
	for s.Start < s.End {
		r, w := utf8.DecodeRuneInString(text[s.Start:])
		if !unicode.IsSpace(r) {
			break
		}
		s.Start += w
	}
	for s.End > s.Start {
		r, w := utf8.DecodeLastRuneInString(text[:s.End])
		if !unicode.IsSpace(r) {
			break
		}
		s.End -= w
	}
	return s
}

// Word is a token with its byte span.
type Word struct {
	Span
	Lower string
}

// Words returns the letter/digit tokens of text (apostrophes and inner hyphens kept).
func Words(text string) []Word {
	var out []Word
	start := -1
	for i, r := range text {
		in := unicode.IsLetter(r) || unicode.IsDigit(r) || ((r == '\'' || r == '-' || r == '’') && start >= 0)
		if in && start < 0 {
			start = i
		}
		if !in && start >= 0 {
			out = append(out, word(text, start, i))
			start = -1
		}
	}
	if start >= 0 {
		out = append(out, word(text, start, len(text)))
	}
	return out
}

func word(text string, start, end int) Word {
	for end > start && strings.ContainsRune("'-’", rune(text[end-1])) {
		end--
	}
	return Word{Span: Span{start, end}, Lower: strings.ToLower(text[start:end])}
}

// IsStopword reports common function words that carry no topic.
func IsStopword(w string) bool {
	_, ok := stopwords[w]
	return ok
}

var stopwords = func() map[string]struct{} {
	m := map[string]struct{}{}
	for _, w := range strings.Fields(`a about above after again against all also am an and any are as at be because been before being
below between both but by can could did do does doing down during each few for from further had has have having he her here hers
herself him himself his how i if in into is it its itself just me more most my myself no nor not now of off on once only or other
our ours ourselves out over own same she should so some such than that the their theirs them themselves then there these they this
those through to too under until up very was we were what when where which while who whom why will with would you your yours
yourself yourselves i'm it's don't can't won't isn't aren't was wasn't we're they're you're let's may might must shall us via per
one two new get got make made like use used using also well many much`) {
		m[w] = struct{}{}
	}
	return m
}()

// ContentWords are the words of text that are not stopwords, numbers or single letters.
func ContentWords(text string) []Word {
	var out []Word
	for _, w := range Words(text) {
		if IsStopword(w.Lower) || utf8.RuneCountInString(w.Lower) < 2 || isNumber(w.Lower) {
			continue
		}
		out = append(out, w)
	}
	return out
}

func isNumber(s string) bool {
	for _, r := range s {
		if !unicode.IsDigit(r) && r != '-' && r != '\'' {
			return false
		}
	}
	return true
}

// Stem is a light suffix stripper so "invoice" and "invoices" count as one term.
func Stem(w string) string {
	for _, suf := range []string{"ies", "es", "s"} {
		if strings.HasSuffix(w, suf) && len(w) > len(suf)+2 {
			if suf == "ies" {
				return w[:len(w)-3] + "y"
			}
			if suf == "es" && !strings.HasSuffix(w, "sses") && !strings.HasSuffix(w, "xes") && !strings.HasSuffix(w, "ches") && !strings.HasSuffix(w, "shes") {
				return w[:len(w)-1]
			}
			if suf == "s" && !strings.HasSuffix(w, "ss") {
				return w[:len(w)-1]
			}
			return w[:len(w)-len(suf)]
		}
	}
	return w
}

// TermFreq counts the stemmed content words of text.
func TermFreq(text string) map[string]int {
	tf := map[string]int{}
	for _, w := range ContentWords(text) {
		tf[Stem(w.Lower)]++
	}
	return tf
}

// Salient returns up to k terms of text ranked by tf × idf, where df counts the documents (of n) that
// contain each term; with n <= 1 it ranks by frequency. Each term is returned in its most common
// surface form, lower case.
func Salient(text string, k int, df map[string]int, n int) []string {
	surface := map[string]map[string]int{}
	tf := map[string]int{}
	for _, w := range ContentWords(text) {
		s := Stem(w.Lower)
		tf[s]++
		if surface[s] == nil {
			surface[s] = map[string]int{}
		}
		surface[s][w.Lower]++
	}
	type scored struct {
		term  string
		score float64
	}
	var all []scored
	for t, f := range tf {
		idf := 1.0
		if n > 1 {
			idf = math.Log(float64(n+1)/float64(df[t]+1)) + 1
		}
		// Longer words are a little more specific than short ones.
		all = append(all, scored{t, float64(f) * idf * (1 + math.Min(float64(len(t)), 12)/24)})
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].score != all[j].score {
			return all[i].score > all[j].score
		}
		return all[i].term < all[j].term
	})
	var out []string
	for _, s := range all {
		if len(out) == k {
			break
		}
		best, bestN := s.term, 0
		for form, c := range surface[s.term] {
			if c > bestN || (c == bestN && form < best) {
				best, bestN = form, c
			}
		}
		out = append(out, best)
	}
	return out
}

// Chunk splits text into pieces of at most size runes, preferring paragraph, then sentence, then word
// boundaries; a word longer than size is cut. Spans are trimmed and cover the text in order.
func Chunk(text string, size int) []Span {
	if size <= 0 {
		size = 1000
	}
	var out []Span
	pos := 0
	for pos < len(text) {
		s := trim(text, Span{pos, len(text)})
		if s.Start >= s.End {
			break
		}
		if utf8.RuneCountInString(text[s.Start:s.End]) <= size {
			out = append(out, s)
			break
		}
		limit := byteOffset(text, s.Start, size) // end of the largest allowed piece
		window := text[s.Start:limit]
		cut := -1
		for _, sep := range []string{"\n\n", ". ", "! ", "? ", ".\n", "\n"} {
			if i := strings.LastIndex(window, sep); i > len(window)/3 {
				cut = i + len(strings.TrimRight(sep, " \n"))
				if sep == "\n\n" || sep == "\n" {
					cut = i
				}
				break
			}
		}
		if cut < 0 {
			if i := strings.LastIndexFunc(window, unicode.IsSpace); i > 0 {
				cut = i
			} else {
				cut = len(window)
			}
		}
		piece := trim(text, Span{s.Start, s.Start + cut})
		if piece.End > piece.Start {
			out = append(out, piece)
		}
		pos = s.Start + cut
	}
	return out
}

// byteOffset returns the byte offset n runes after start (or len(text)).
func byteOffset(text string, start, n int) int {
	i := start
	for c := 0; c < n && i < len(text); c++ {
		_, w := utf8.DecodeRuneInString(text[i:])
		i += w
	}
	return i
}

// Runes converts a byte offset of text into a code-point offset.
func Runes(text string, byteOff int) int { return utf8.RuneCountInString(text[:byteOff]) }

// Embed is a deterministic hashed bag-of-words vector (dim 256, L2-normalised) over stemmed content
// words: texts that share words are close, which is what the offline methods need.
func Embed(text string) []float32 {
	const dim = 256
	v := make([]float64, dim)
	for t, f := range TermFreq(text) {
		h := fnv.New32a()
		_, _ = h.Write([]byte(t))
		x := h.Sum32()
		sign := 1.0
		if x&1 == 1 {
			sign = -1
		}
		v[(x>>1)%dim] += sign * (1 + math.Log(float64(f)))
	}
	var n float64
	for _, x := range v {
		n += x * x
	}
	out := make([]float32, dim)
	if n == 0 {
		return out
	}
	n = math.Sqrt(n)
	for i, x := range v {
		out[i] = float32(x / n)
	}
	return out
}

// Cosine is the cosine similarity of two vectors (0 when either is zero or their sizes differ).
func Cosine(a, b []float32) float64 {
	if len(a) != len(b) {
		return 0
	}
	var dot, na, nb float64
	for i := range a {
		dot += float64(a[i]) * float64(b[i])
		na += float64(a[i]) * float64(a[i])
		nb += float64(b[i]) * float64(b[i])
	}
	if na == 0 || nb == 0 {
		return 0
	}
	return dot / math.Sqrt(na*nb)
}

// TruncateRunes cuts s to at most n runes at a word boundary, adding "…" when it cut.
func TruncateRunes(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	if n <= 1 {
		return string([]rune(s)[:n])
	}
	cut := string([]rune(s)[:n-1])
	if i := strings.LastIndexFunc(cut, unicode.IsSpace); i > len(cut)/2 {
		cut = cut[:i]
	}
	return strings.TrimRightFunc(cut, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsPunct(r) }) + "…"
}
