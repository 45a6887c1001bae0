// Package lexical is the English analyzer and the BM25 weighting that the search engines' lexical
// half shares: the embedded index scores with it, and the Elasticsearch adapter's client-side
// fusion normalises with the same formula. Analysis is lower-casing, splitting into words of letters
// and digits, dropping the Snowball English stopwords, and the Snowball (Porter 2) English stemmer.
//
// The stemmer is github.com/kljensen/snowball rather than hand-written suffix rules (what the
// offline embedder does): Porter 2 is the stemmer Lucene's and Elasticsearch's `english` analyzer
// family is built on, and a faithful implementation of it is a few thousand lines we should not
// keep ourselves.
package lexical

import (
	"hash/fnv"
	"math"
	"strings"
	"sync/atomic"
	"unicode"

	"github.com/kljensen/snowball/english"
)

// MaxTermBytes drops longer "words" (base64, hashes, run-on tokens): they never match a query and
// would bloat the postings.
const MaxTermBytes = 64

// Analyze returns text's terms in order (duplicates kept: term frequency counts them).
func Analyze(text string) []string {
	fields := strings.FieldsFunc(text, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) })
	out := fields[:0]
	for _, f := range fields {
		if len(f) > MaxTermBytes {
			continue
		}
		f = strings.ToLower(f)
		if english.IsStopWord(f) {
			continue
		}
		out = append(out, stem(f))
	}
	return out
}

// stems caches english.Stem by word: documents repeat their words (Zipf), and Porter 2 is most of
// an analysis's CPU (a rune slice and a dozen suffix passes per word). Direct-mapped and lock-free:
// a slot holds one word and its stem, a miss (or a word that evicted another) stems and replaces
// it, so the cache is bounded (stemSlots entries) and answers exactly what the stemmer would.
var stems [stemSlots]atomic.Pointer[stemmed]

const stemSlots = 1 << 14

type stemmed struct{ word, stem string }

func stem(w string) string {
	x := uint64(14695981039346656037) // FNV-1a
	for i := 0; i < len(w); i++ {
		x ^= uint64(w[i])
		x *= 1099511628211
	}
	slot := &stems[x&(stemSlots-1)]
	if e := slot.Load(); e != nil && e.word == w {
		return e.stem
	}
	// Copies: w is a piece of the analysed text, which the cache must not keep alive.
	e := &stemmed{word: strings.Clone(w)}
	e.stem = english.Stem(e.word, true)
	slot.Store(e)
	return e.stem
}

// Hash is the 64-bit id a term is stored and matched by: the index files hold these, never the words
// (a deleted document's words must not stay readable in them). FNV-1a; at 64 bits a collision
// between two terms of one tenant is negligible, and would only merge their postings.
func Hash(term string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(term))
	return h.Sum64()
}

// BM25 parameters: the standard values (Robertson et al.; Lucene's and Elasticsearch's defaults),
// not tuned to any collection.
const (
	K1 = 1.2
	B  = 0.75
)

// IDF is BM25's inverse document frequency of a term found in df of n documents (Lucene's form,
// never negative).
func IDF(n, df int) float64 {
	return math.Log(1 + (float64(n)-float64(df)+0.5)/(float64(df)+0.5))
}

// TF is BM25's saturated term frequency of a term found tf times in a document of length dl (terms)
// in a collection whose mean length is avgdl.
func TF(tf, dl, avgdl float64) float64 {
	if avgdl <= 0 {
		avgdl = 1
	}
	return tf * (K1 + 1) / (tf + K1*(1-B+B*dl/avgdl))
}

// Normalize maps a BM25 score into [0, 1): the score divided by the most a document could score on
// these query terms (every term saturated: idf × (k1+1) each). It reads as the share of the query's
// weight a passage matches, comparable across queries, which a threshold needs and a raw BM25 score
// is not.
func Normalize(score float64, idfs []float64) float64 {
	var max float64
	for _, w := range idfs {
		max += w * (K1 + 1)
	}
	if max <= 0 {
		return 0
	}
	return score / max
}
