package embeddings_test

import (
	"context"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/crispy-enigma/crispy/platform/ai/embeddings"
)

// refVector is the offline embedder as it was written first (maps of feature strings, one sort of
// them all, an FNV hasher per feature), kept as the reference the faster Vector must match bit for
// bit: existing indexes hold vectors of builtin:hashed-ngram, and a query embedded differently
// from its documents would miss them.
func refVector(text string, dim int, charWeight, bigramWeight float64) []float32 {
	words := embeddings.Terms(text)
	wordTF := map[string]float64{}
	charTF := map[string]float64{}
	for i, w := range words {
		wordTF["w:"+w]++
		if i > 0 {
			wordTF["b:"+words[i-1]+" "+w] += bigramWeight
		}
		rs := []rune("<" + w + ">")
		for n := 3; n <= 5; n++ {
			for s := 0; s+n <= len(rs); s++ {
				charTF[string(rs[s:s+n])]++
			}
		}
	}
	wv := refBlock(wordTF, dim)
	cv := refBlock(charTF, dim)
	v := make([]float32, dim)
	var norm float64
	for i := range v {
		x := wv[i] + charWeight*cv[i]
		norm += x * x
		v[i] = float32(x)
	}
	if norm == 0 {
		v[0] = 1
		return v
	}
	inv := float32(1 / math.Sqrt(norm))
	for i := range v {
		v[i] *= inv
	}
	return v
}

func refBlock(tf map[string]float64, dim int) []float64 {
	v := make([]float64, dim)
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
		if n < 1 {
			w = n
		}
		if x>>63 == 1 {
			w = -w
		}
		v[x%uint64(dim)] += w
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

// hashedTexts are varied texts: English prose with repeated words and bigrams (weights above one
// occurrence, bigrams reaching the log branch), mixed case, digits, accents, CJK, emoji, invalid
// UTF-8, long words, stopwords only, empty; and random texts from a small alphabet, so that many
// features share buckets (the order of a bucket's sum matters there).
func hashedTexts() []string {
	ts := []string{
		"", " ", "the of and", "How do I reset my router password?",
		"To reset the password of your router, hold the reset button for ten seconds.",
		"Employees receive twenty-five days of paid vacation per year. Unused vacation days expire at the end of March.",
		"wing wings winged winging flies flying studies classes status bus cities",
		strings.Repeat("reset password reset password ", 9),
		"Ünïcödé café naïve résumé Straße ΣΊΣΥΦΟΣ İstanbul ǅemal",
		"東京は日本の首都です。北京是中国的首都。서울은 한국의 수도입니다.",
		"emoji 🙂🙃 mixed🙂words a🙂b and ZWJ 👩‍👩‍👧",
		"invalid \xff\xfe utf-8 \xc3 bytes \xe2\x82 here",
		"x9 42 3.14159 v1.2.3 2026-11-29 0xdeadbeef 1e10",
		strings.Repeat("supercalifragilisticexpialidocious", 4),
		"a b c d e f g h i j k l m n o p q r s t u v w x y z",
		"The experimental investigation of the boundary layer on supersonic wings at high angles of attack",
	}
	r := rand.New(rand.NewPCG(3, 4))
	alphabet := []rune("abcdeé ñ  .Z9")
	for range 300 {
		rs := make([]rune, r.IntN(400))
		for i := range rs {
			rs[i] = alphabet[r.IntN(len(alphabet))]
		}
		ts = append(ts, string(rs))
	}
	words := strings.Fields("report reports reporting reported invoice invoices pay paid paying the of customer customers ship shipping shipped status studies")
	for range 200 {
		var sb strings.Builder
		for range 20 + r.IntN(300) {
			sb.WriteString(words[r.IntN(len(words))])
			sb.WriteByte(" .,\n"[r.IntN(4)])
		}
		ts = append(ts, sb.String())
	}
	return ts
}

func TestHashedMatchesReferenceBitForBit(t *testing.T) {
	t.Parallel()
	for _, c := range []embeddings.HashedConfig{{}, {Dimension: 256}, {Dimension: 7, CharWeight: 0.5, BigramWeight: 0.3}, {Dimension: 1024, BigramWeight: 2}} {
		h := embeddings.NewHashed(c)
		cw, bw := c.CharWeight, c.BigramWeight
		if cw == 0 {
			cw = 1
		}
		if bw == 0 {
			bw = 0.25
		}
		for i, text := range hashedTexts() {
			got, want := h.Vector(text), refVector(text, h.Dimension(), cw, bw)
			if !slices.Equal(got, want) {
				t.Fatalf("config %+v, text %d %q: vector differs from the reference", c, i, text)
			}
		}
	}
}

func FuzzHashedMatchesReference(f *testing.F) {
	for _, s := range hashedTexts()[:16] {
		f.Add(s)
	}
	h := embeddings.NewHashed(embeddings.HashedConfig{Dimension: 64})
	f.Fuzz(func(t *testing.T, text string) {
		if got, want := h.Vector(text), refVector(text, 64, 1, 0.25); !slices.Equal(got, want) {
			t.Fatalf("%q: vector differs from the reference", text)
		}
	})
}

// BenchmarkHashed embeds a 1,000-character chunk of English prose.
func BenchmarkHashed(b *testing.B) {
	var sb strings.Builder
	words := strings.Fields("Employees receive twenty-five days of paid vacation per year. Unused vacation days expire at the end of March. The parking garage opens at seven in the morning; visitors register at the front desk.")
	for i := 0; sb.Len() < 1000; i++ {
		fmt.Fprintf(&sb, "%s ", words[(i*7)%len(words)])
	}
	text := sb.String()
	h := embeddings.NewHashed(embeddings.HashedConfig{})
	ctx := context.Background()
	b.Run("new", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			_, _ = h.Embed(ctx, []string{text})
		}
	})
	b.Run("reference", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			_ = refVector(text, 384, 1, 0.25)
		}
	})
}
