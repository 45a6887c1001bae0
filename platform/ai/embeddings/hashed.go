package embeddings

import (
	"context"
	"hash/fnv"
	"math"
	"slices"
	"strings"
	"unicode"
)

// HashedModelID is the offline embedder's model id.
const HashedModelID = "builtin:hashed-ngram"

// HashedConfig tunes the offline embedder.
type HashedConfig struct {
	// Dimension of the vectors (default 384).
	Dimension int
	// CharWeight is the weight of the character n-gram block relative to the word block (default 1,
	// chosen on the Cranfield dev queries: 0.5 gave nDCG@10 0.239, 1 gave 0.268).
	CharWeight float64
	// BigramWeight scales word bigrams relative to unigrams (default 0.25).
	BigramWeight float64
}

// Hashed is the offline embedder: a LEXICAL model, not a semantic one. It hashes word unigrams and
// bigrams (stopwords removed, light suffix stripping) and character 3- to 5-grams of each word into a
// fixed number of signed buckets (the "hashing trick"), weights every feature by sublinear term
// frequency 1+ln(tf), and L2-normalises the result. Two texts score high when they share words, word
// pairs, or word fragments (so "wing" and "wings" meet); synonyms that share no letters do not. It needs
// no network, no weights and no corpus statistics, and it is deterministic.
type Hashed struct {
	dim          int
	charWeight   float64
	bigramWeight float64
}

// NewHashed builds the offline embedder.
func NewHashed(c HashedConfig) *Hashed {
	if c.Dimension <= 0 {
		c.Dimension = 384
	}
	if c.CharWeight == 0 {
		c.CharWeight = 1
	}
	if c.BigramWeight == 0 {
		c.BigramWeight = 0.25
	}
	return &Hashed{dim: c.Dimension, charWeight: c.CharWeight, bigramWeight: c.BigramWeight}
}

func (h *Hashed) Model() string  { return HashedModelID }
func (h *Hashed) Dimension() int { return h.dim }

// Embed embeds every text; it only fails when ctx is done.
func (h *Hashed) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	out := make([][]float32, len(texts))
	for i, t := range texts {
		if i%64 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		out[i] = h.Vector(t)
	}
	return out, nil
}

// Vector embeds one text.
func (h *Hashed) Vector(text string) []float32 {
	words := Terms(text)
	wordTF := map[string]float64{}
	charTF := map[string]float64{}
	for i, w := range words {
		wordTF["w:"+w]++
		if i > 0 {
			wordTF["b:"+words[i-1]+" "+w] += h.bigramWeight
		}
		rs := []rune("<" + w + ">")
		for n := 3; n <= 5; n++ {
			for s := 0; s+n <= len(rs); s++ {
				charTF[string(rs[s:s+n])]++
			}
		}
	}
	wv := h.block(wordTF)
	cv := h.block(charTF)
	v := make([]float32, h.dim)
	var norm float64
	for i := range v {
		x := wv[i] + h.charWeight*cv[i]
		norm += x * x
		v[i] = float32(x)
	}
	if norm == 0 {
		// No features (empty or stopwords only): a fixed unit vector rather than zero, which cosine
		// engines (Elasticsearch) refuse. Such texts match each other and nothing else in particular.
		v[0] = 1
		return v
	}
	inv := float32(1 / math.Sqrt(norm))
	for i := range v {
		v[i] *= inv
	}
	return v
}

// block hashes a bag of features into a unit-length vector (zero when the bag is empty).
func (h *Hashed) block(tf map[string]float64) []float64 {
	v := make([]float64, h.dim)
	// Sorted, so the floating-point sums (and so the vector) are the same on every run.
	keys := make([]string, 0, len(tf))
	for f := range tf {
		keys = append(keys, f)
	}
	slices.Sort(keys)
	for _, f := range keys {
		n := tf[f]
		hs := fnv.New64a()
		_, _ = hs.Write([]byte(f))
		x := hs.Sum64()
		w := 1 + math.Log(max(n, 1))
		if n < 1 { // bigram weight below one occurrence: scale, not log
			w = n
		}
		if x>>63 == 1 {
			w = -w
		}
		v[x%uint64(h.dim)] += w
	}
	var norm float64
	for _, x := range v {
		norm += x * x
	}
	if norm > 0 {
		inv := 1 / math.Sqrt(norm)
		for i := range v {
			v[i] *= inv
		}
	}
	return v
}

// Terms lower-cases text, splits it into words of letters and digits, drops stopwords and strips
// common English inflections. It is exported so lexical baselines can share the same analysis.
func Terms(text string) []string {
	fields := strings.FieldsFunc(strings.ToLower(text), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r)
	})
	out := fields[:0]
	for _, f := range fields {
		if stopwords[f] {
			continue
		}
		out = append(out, stem(f))
	}
	return out
}

// stem strips a few English suffixes; enough for plurals and -ing/-ed forms to meet, and cheap.
func stem(w string) string {
	n := len(w)
	switch {
	case n > 4 && strings.HasSuffix(w, "ies"):
		return w[:n-3] + "y"
	case n > 4 && strings.HasSuffix(w, "sses"):
		return w[:n-2]
	case n > 5 && strings.HasSuffix(w, "ing"):
		return w[:n-3]
	case n > 4 && strings.HasSuffix(w, "ed") && !strings.HasSuffix(w, "eed"):
		return w[:n-2]
	case n > 3 && strings.HasSuffix(w, "s") && !strings.HasSuffix(w, "ss") && !strings.HasSuffix(w, "us") && !strings.HasSuffix(w, "is"):
		return w[:n-1]
	}
	return w
}

var stopwords = func() map[string]bool {
	m := map[string]bool{}
	for _, w := range strings.Fields(`a about above after again against all am an and any are as at be because been
before being below between both but by can could did do does doing down during each few for from further had has
have having he her here hers herself him himself his how i if in into is it its itself just me more most my myself
no nor not now of off on once only or other our ours ourselves out over own same she should so some such than that
the their theirs them themselves then there these they this those through to too under until up very was we were
what when where which while who whom why will with would you your yours yourself yourselves also may might must
shall upon us whether within without`) {
		m[w] = true
	}
	return m
}()
