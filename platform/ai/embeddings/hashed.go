package embeddings

import (
	"context"
	"math"
	"strings"
	"sync"
	"unicode"
	"unsafe"
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
//
// Word features are "w:"+word and "b:"+previous+" "+word (bigrams, weighted bigramWeight), character
// features the 3- to 5-rune grams of "<"+word+">". A feature's bucket and sign come from the FNV-1a
// hash of its string, its weight from its count in the text; each block is summed in its features'
// sorted order (so the float sums, and the vector, are the same on every run) and L2-normalised.
// The features are hashed from the words' bytes as they are met and counted in a reused table (no
// string per feature): only a bucket's own features need that order, so each bucket's few are
// sorted, not every feature. The vectors are bit for bit those of the map-and-sort version this
// replaced (hashed_test.go keeps it as the reference): indexes hold vectors of this model id.
func (h *Hashed) Vector(text string) []float32 {
	words := Terms(text)
	st := featPool.Get().(*featState)
	defer featPool.Put(st)
	st.word.reset()
	st.char.reset()
	for i, w := range words {
		st.key = append(append(st.key[:0], "w:"...), w...)
		st.word.add(st.key, 1)
		if i > 0 {
			st.key = append(append(append(append(st.key[:0], "b:"...), words[i-1]...), ' '), w...)
			st.word.add(st.key, h.bigramWeight)
		}
		// The runes of "<w>": starts[k] is where rune k begins, starts[len] the end.
		st.key = append(append(append(st.key[:0], '<'), w...), '>')
		st.starts = st.starts[:0]
		for k := range string(st.key) {
			st.starts = append(st.starts, int32(k))
		}
		st.starts = append(st.starts, int32(len(st.key)))
		// A gram's hash continues its one-rune-shorter prefix's: the 3-, 4- and 5-gram at s are
		// hashed in one pass (the order features are counted in does not matter).
		runes := len(st.starts) - 1
		for s := 0; s+3 <= runes; s++ {
			x := fnvBytes(fnvOffset64, st.key[st.starts[s]:st.starts[s+3]])
			st.char.addHashed(st.key[st.starts[s]:st.starts[s+3]], x, 1)
			for n := 4; n <= 5 && s+n <= runes; n++ {
				x = fnvBytes(x, st.key[st.starts[s+n-1]:st.starts[s+n]])
				st.char.addHashed(st.key[st.starts[s]:st.starts[s+n]], x, 1)
			}
		}
	}
	wv := st.word.block(h.dim, &st.wv, &st.sort)
	cv := st.char.block(h.dim, &st.cv, &st.sort)
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

// featState is one Vector call's scratch, pooled: Embed runs on many goroutines.
type featState struct {
	word, char featTable
	key        []byte
	starts     []int32
	wv, cv     []float64
	sort       bucketSort
}

// bucketSort is block's scratch: the features' indexes grouped by bucket.
type bucketSort struct{ order, starts, fill []int32 }

// grown returns s with length n, reusing its array when it is big enough.
func grown(s []int32, n int) []int32 {
	if cap(s) < n {
		return make([]int32, n)
	}
	return s[:n]
}

var featPool = sync.Pool{New: func() any { return &featState{} }}

// feat is one distinct feature of a text: its FNV-1a hash, its bytes (in the table's arena) and
// its count.
type feat struct {
	hash     uint64
	off, len int32
	n        float64
}

// featTable counts a text's features by their bytes: open addressing on the FNV-1a hash, a hit
// confirmed by comparing the bytes (two features whose hashes collide stay two, as two strings).
type featTable struct {
	slots []int32 // index+1 into feats; 0 is empty
	feats []feat
	arena []byte
}

func (t *featTable) reset() {
	t.feats = t.feats[:0]
	t.arena = t.arena[:0]
	if len(t.slots) == 0 {
		t.slots = make([]int32, 1024)
	} else {
		clear(t.slots)
	}
}

const (
	fnvOffset64 = 14695981039346656037
	fnvPrime64  = 1099511628211
)

// fnvBytes continues FNV-1a hash x over b.
func fnvBytes(x uint64, b []byte) uint64 {
	for _, c := range b {
		x ^= uint64(c)
		x *= fnvPrime64
	}
	return x
}

// add counts key (its bytes are copied when it is new) with weight n.
func (t *featTable) add(key []byte, n float64) { t.addHashed(key, fnvBytes(fnvOffset64, key), n) }

// addHashed is add with key's FNV-1a hash x.
func (t *featTable) addHashed(key []byte, x uint64, n float64) {
	mask := uint64(len(t.slots) - 1)
	for i := x & mask; ; i = (i + 1) & mask {
		s := t.slots[i]
		if s == 0 {
			t.feats = append(t.feats, feat{hash: x, off: int32(len(t.arena)), len: int32(len(key)), n: n})
			t.arena = append(t.arena, key...)
			t.slots[i] = int32(len(t.feats))
			if 2*len(t.feats) > len(t.slots) {
				t.grow()
			}
			return
		}
		f := &t.feats[s-1]
		if f.hash == x && string(t.arena[f.off:f.off+f.len]) == string(key) {
			f.n += n
			return
		}
	}
}

// grow doubles the slots and places every feature again.
func (t *featTable) grow() {
	t.slots = make([]int32, 2*len(t.slots))
	mask := uint64(len(t.slots) - 1)
	for k, f := range t.feats {
		i := f.hash & mask
		for t.slots[i] != 0 {
			i = (i + 1) & mask
		}
		t.slots[i] = int32(k + 1)
	}
}

// sublinear is a feature's weight for count n: 1+ln(n), or n itself below one occurrence (a
// bigram's weight). Small whole counts, most of them, read math.Log's own values from a table.
func sublinear(n float64) float64 {
	if n < 1 {
		return n
	}
	if k := int(n); float64(k) == n && k < len(logs) {
		return 1 + logs[k]
	}
	return 1 + math.Log(n)
}

var logs = func() (l [64]float64) {
	for k := 1; k < len(l); k++ {
		l[k] = math.Log(float64(k))
	}
	return l
}()

func (t *featTable) bytes(f *feat) string {
	return unsafe.String(&t.arena[f.off], int(f.len))
}

// block hashes the counted features into a unit-length vector (zero when there are none), in
// *out. Every feature adds its signed weight to its bucket in sorted order of the features' bytes;
// a bucket's sum depends only on its own features' order, so the features are grouped by bucket
// (a counting sort) and each bucket's few sorted by their bytes.
func (t *featTable) block(dim int, out *[]float64, bs *bucketSort) []float64 {
	if cap(*out) < dim {
		*out = make([]float64, dim)
	}
	v := (*out)[:dim]
	clear(v)
	if len(t.feats) == 0 {
		return v
	}
	// starts[b] is where bucket b's features begin in ord.
	bs.starts = grown(bs.starts, dim+1)
	starts := bs.starts
	clear(starts)
	for i := range t.feats {
		starts[t.feats[i].hash%uint64(dim)+1]++
	}
	for b := 1; b <= dim; b++ {
		starts[b] += starts[b-1]
	}
	bs.order = grown(bs.order, len(t.feats))
	ord := bs.order
	bs.fill = append(bs.fill[:0], starts[:dim]...)
	fill := bs.fill
	for i := range t.feats {
		b := t.feats[i].hash % uint64(dim)
		ord[fill[b]] = int32(i)
		fill[b]++
	}
	for b := range dim {
		in := ord[starts[b]:starts[b+1]]
		if len(in) == 0 {
			continue
		}
		// Insertion sort: a bucket holds a few features.
		for i := 1; i < len(in); i++ {
			for j := i; j > 0 && t.bytes(&t.feats[in[j]]) < t.bytes(&t.feats[in[j-1]]); j-- {
				in[j], in[j-1] = in[j-1], in[j]
			}
		}
		var sum float64
		for _, k := range in {
			f := &t.feats[k]
			w := sublinear(f.n)
			if f.hash>>63 == 1 {
				w = -w
			}
			sum += w
		}
		v[b] = sum
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
