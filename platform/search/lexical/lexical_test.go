package lexical_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"unicode"

	"github.com/kljensen/snowball/english"

	"github.com/crispy-enigma/crispy/platform/search/lexical"
)

// analyzeUncached is Analyze without the stem cache: what the cache must answer.
func analyzeUncached(text string) []string {
	var out []string
	for _, f := range strings.FieldsFunc(text, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) }) {
		if len(f) > lexical.MaxTermBytes {
			continue
		}
		f = strings.ToLower(f)
		if english.IsStopWord(f) {
			continue
		}
		out = append(out, english.Stem(f, true))
	}
	return out
}

// TestAnalyzeCachedStemsAreTheStemmers analyses texts from many goroutines at once, with far more
// distinct words than the cache holds (so slots are evicted and refilled while others read them),
// each text several times: every answer is the stemmer's own.
func TestAnalyzeCachedStemsAreTheStemmers(t *testing.T) {
	t.Parallel()
	base := strings.Fields("running runs ran runner generously generous generation connection connections connective " +
		"studies studying flies flying cities agreed agreement happiness relational conditional Ünïcödé café naïve résumé " +
		"İstanbul ΣΊΣΥΦΟΣ 東京 x9 42 the of and Supersonic WINGS")
	var words []string
	for i := range 60_000 { // ~3.7x the cache's slots
		words = append(words, fmt.Sprintf("%s%d%s", base[i%len(base)], i, []string{"", "ing", "s", "ed", "ational", "ness"}[i%6]))
	}
	words = append(words, base...)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 7))
			for range 250 {
				var sb strings.Builder
				for range 1 + r.IntN(200) {
					sb.WriteString(words[r.IntN(len(words))])
					sb.WriteString([]string{" ", ", ", ". ", "\n", "-"}[r.IntN(5)])
				}
				text := sb.String()
				for range 2 {
					if got, want := lexical.Analyze(text), analyzeUncached(text); !slices.Equal(got, want) {
						t.Errorf("Analyze(%q) = %q, want %q", text, got, want)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
}

// BenchmarkAnalyze analyses a 1,000-character chunk of English prose (words repeat, as they do).
func BenchmarkAnalyze(b *testing.B) {
	words := strings.Fields("Employees receive twenty-five days of paid vacation per year. Unused vacation days expire at the end of March. The parking garage opens at seven in the morning; visitors register at the front desk.")
	var sb strings.Builder
	for i := 0; sb.Len() < 1000; i++ {
		fmt.Fprintf(&sb, "%s ", words[(i*7)%len(words)])
	}
	text := sb.String()
	b.Run("cached", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			_ = lexical.Analyze(text)
		}
	})
	b.Run("uncached", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			_ = analyzeUncached(text)
		}
	})
}
