package domain_test

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/crispy-enigma/crispy/modules/retrieval/internal/domain"
)

// check asserts the invariants every chunking must keep.
func check(t *testing.T, text string, cs []domain.Chunk, size int) {
	t.Helper()
	for i, c := range cs {
		if text[c.Start:c.End] != c.Text {
			t.Fatalf("chunk %d: offsets [%d,%d) do not slice its text", i, c.Start, c.End)
		}
		if !utf8.ValidString(c.Text) {
			t.Fatalf("chunk %d splits a rune: %q", i, c.Text)
		}
		if n := utf8.RuneCountInString(c.Text); n > size || n == 0 {
			t.Fatalf("chunk %d has %d runes (limit %d)", i, n, size)
		}
		r0, _ := utf8.DecodeRuneInString(c.Text)
		r1, _ := utf8.DecodeLastRuneInString(c.Text)
		if unicode.IsSpace(r0) || unicode.IsSpace(r1) {
			t.Fatalf("chunk %d has surrounding whitespace: %q", i, c.Text)
		}
		if c.N != i || c.ID != "doc#"+itoa(i) {
			t.Fatalf("chunk %d id %s n %d", i, c.ID, c.N)
		}
		if i > 0 && c.Start <= cs[i-1].Start {
			t.Fatalf("chunk %d does not advance", i)
		}
	}
	// Every non-space character is in some chunk: nothing dropped.
	covered := make([]bool, len(text))
	for _, c := range cs {
		for j := c.Start; j < c.End; j++ {
			covered[j] = true
		}
	}
	for j, r := range text {
		if !unicode.IsSpace(r) && !covered[j] {
			t.Fatalf("byte %d (%q) is in no chunk", j, r)
		}
	}
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}

func TestChunkPrefersParagraphsThenSentences(t *testing.T) {
	t.Parallel()
	p1 := strings.Repeat("Alpha beta gamma. ", 5)       // 90 chars
	p2 := strings.Repeat("Delta epsilon zeta eta. ", 4) // 96 chars
	text := strings.TrimSpace(p1) + "\n\n" + strings.TrimSpace(p2)
	cs := domain.ChunkText("doc", text, 150, 0)
	check(t, text, cs, 150)
	if len(cs) != 2 || cs[0].Text != strings.TrimSpace(p1) || cs[1].Text != strings.TrimSpace(p2) {
		t.Fatalf("want one chunk per paragraph, got %q", texts(cs))
	}
	// Without paragraphs, a chunk ends at a sentence end.
	one := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 6)
	cs = domain.ChunkText("doc", one, 100, 0)
	check(t, one, cs, 100)
	for _, c := range cs[:len(cs)-1] {
		if !strings.HasSuffix(c.Text, ".") {
			t.Fatalf("chunk %q does not end at a sentence", c.Text)
		}
	}
}

func TestChunkWordBoundariesAndOverlap(t *testing.T) {
	t.Parallel()
	words := strings.Repeat("lorem ipsum dolor sit amet consectetur ", 40)
	cs := domain.ChunkText("doc", words, 100, 30)
	check(t, words, cs, 100)
	for i, c := range cs {
		if i > 0 && c.Start >= cs[i-1].End {
			t.Fatalf("chunk %d does not overlap the previous one", i)
		}
		// Word boundaries: a chunk neither starts nor ends inside a word.
		if c.Start > 0 && !unicode.IsSpace(rune(words[c.Start-1])) {
			t.Fatalf("chunk %d starts mid-word: %q", i, c.Text[:10])
		}
		if c.End < len(words) && !unicode.IsSpace(rune(words[c.End])) {
			t.Fatalf("chunk %d ends mid-word", i)
		}
	}
}

func TestChunkLongWordIsCutNotDropped(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 350)
	text := "start " + long + " end"
	cs := domain.ChunkText("doc", text, 100, 10)
	check(t, text, cs, 100)
	var b strings.Builder
	for _, c := range cs {
		b.WriteString(c.Text)
	}
	if strings.Count(b.String(), "x") < 350 {
		t.Fatal("characters of the long word were dropped")
	}
}

func TestChunkMultiByteRunes(t *testing.T) {
	t.Parallel()
	for _, text := range []string{
		strings.Repeat("日本語のテキストです。", 60),                    // CJK without spaces, sentence marks
		strings.Repeat("emoji 😀🎉👍🏽 naïve café ", 50),         // 4-byte runes and combining-free accents
		strings.Repeat("𝔘𝔫𝔦𝔠𝔬𝔡𝔢", 80),                        // one long word of 4-byte runes
		"Ärger über Öl. " + strings.Repeat("ß", 250) + " ok", // long word of 2-byte runes
	} {
		for _, size := range []int{100, 137} {
			cs := domain.ChunkText("doc", text, size, 20)
			check(t, text, cs, size)
		}
	}
}

func TestChunkEdgeCases(t *testing.T) {
	t.Parallel()
	if cs := domain.ChunkText("doc", "", 100, 10); len(cs) != 0 {
		t.Fatalf("empty text gave %d chunks", len(cs))
	}
	if cs := domain.ChunkText("doc", "  \n\n\t ", 100, 10); len(cs) != 0 {
		t.Fatalf("whitespace gave %d chunks", len(cs))
	}
	cs := domain.ChunkText("doc", "  short text  ", 100, 10)
	if len(cs) != 1 || cs[0].Text != "short text" || cs[0].Start != 2 {
		t.Fatalf("short text: %+v", cs)
	}
	// Stable ids: the same text chunks the same way.
	text := strings.Repeat("Stable chunk ids matter. ", 100)
	a, b := domain.ChunkText("doc", text, 200, 50), domain.ChunkText("doc", text, 200, 50)
	if len(a) != len(b) {
		t.Fatal("not deterministic")
	}
	for i := range a {
		if a[i] != b[i] {
			t.Fatal("not deterministic")
		}
	}
	back, ok := domain.FromEvent(text, domain.ToEvent(a))
	if !ok || len(back) != len(a) || back[3].Text != a[3].Text {
		t.Fatal("event round trip")
	}
	if _, ok := domain.FromEvent("short", domain.ToEvent(a)); ok {
		t.Fatal("offsets beyond the text must be refused")
	}
}

func texts(cs []domain.Chunk) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Text
	}
	return out
}

func TestSafetyAndNormalize(t *testing.T) {
	t.Parallel()
	for _, q := range []string{"how do I kill myself", "I want to die", "best way to end my life?", "self-harm methods", "I am suicidal"} {
		if !domain.IsSelfHarm(q) {
			t.Errorf("%q should be caught", q)
		}
	}
	for _, q := range []string{"how to kill a process in linux", "die casting aluminium", "self-service portal", "end of life for the product"} {
		if domain.IsSelfHarm(q) {
			t.Errorf("%q should pass", q)
		}
	}
	if domain.NormalizeQuery("  What   IS Rag?? ") != "what is rag" {
		t.Fatal(domain.NormalizeQuery("  What   IS Rag?? "))
	}
}

func TestExtractiveAnswerCites(t *testing.T) {
	t.Parallel()
	srcs := []domain.Source{
		{N: 1, Title: "Vacation", Text: "Employees get 25 days of paid vacation per year. Unused days expire in March.", Score: 0.6},
		{N: 2, Title: "Parking", Text: "The parking garage opens at seven in the morning.", Score: 0.1},
	}
	a := domain.ExtractiveAnswer("How many vacation days do employees get?", srcs)
	if !strings.Contains(a, "25 days of paid vacation") || !strings.Contains(a, "[1]") || strings.Contains(a, "[2]") {
		t.Fatalf("answer %q", a)
	}
	if !strings.Contains(a, "Offline") {
		t.Fatal("the offline answer must say what it is")
	}
	if domain.Confidence([]float64{0.9, 0.6, 0.3, 0.0}) != 0.6 {
		t.Fatal("confidence is the mean of the top three")
	}
	ans, fu := domain.SplitFollowUps("It is 25 days [1].\n\nFollow-up questions:\n- Do days expire?\n- Can I carry over days?")
	if ans != "It is 25 days [1]." || len(fu) != 2 || fu[0] != "Do days expire?" {
		t.Fatalf("%q %q", ans, fu)
	}
}
