package textkit_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/crispy-enigma/crispy/plugins/internal/textkit"
)

func TestSentences(t *testing.T) {
	t.Parallel()
	cases := []struct {
		text string
		want []string
	}{
		{"Hello there. How are you? Fine!", []string{"Hello there.", "How are you?", "Fine!"}},
		{"Dr. Smith arrived at 5 p.m. today. Then he left.", []string{"Dr. Smith arrived at 5 p.m. today.", "Then he left."}},
		{"First para line\n\nSecond para", []string{"First para line", "Second para"}},
		{"Prices rose 3.5 percent. Good.", []string{"Prices rose 3.5 percent.", "Good."}},
		{"Ünïcode señor. Ça va?", []string{"Ünïcode señor.", "Ça va?"}},
	}
	for _, c := range cases {
		var got []string
		for _, s := range textkit.Sentences(c.text) {
			got = append(got, s.Text(c.text))
		}
		if strings.Join(got, "|") != strings.Join(c.want, "|") {
			t.Errorf("Sentences(%q) = %q, want %q", c.text, got, c.want)
		}
	}
}

func TestChunkRespectsSizeAndBoundaries(t *testing.T) {
	t.Parallel()
	text := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 40) + "\n\nÉtude über naïve café résumé. " + strings.Repeat("word ", 100)
	for _, size := range []int{100, 250, 1000} {
		spans := textkit.Chunk(text, size)
		if len(spans) == 0 {
			t.Fatal("no chunks")
		}
		prev := 0
		for _, s := range spans {
			if n := utf8.RuneCountInString(s.Text(text)); n > size || n == 0 {
				t.Fatalf("size %d: chunk of %d runes", size, n)
			}
			if s.Start < prev {
				t.Fatalf("chunks overlap or go backwards")
			}
			if !utf8.ValidString(s.Text(text)) {
				t.Fatal("chunk cut inside a rune")
			}
			prev = s.End
		}
		if strings.Join(strings.Fields(text), " ") != joinFields(text, spans) {
			t.Fatalf("size %d: chunks lose text", size)
		}
	}
}

func joinFields(text string, spans []textkit.Span) string {
	var parts []string
	for _, s := range spans {
		parts = append(parts, strings.Fields(s.Text(text))...)
	}
	return strings.Join(parts, " ")
}

func TestSalientAndEmbed(t *testing.T) {
	t.Parallel()
	text := "Invoices are late. The invoice system failed, and invoices piled up in billing. Billing staff complained."
	got := textkit.Salient(text, 2, nil, 1)
	if len(got) != 2 || got[0] != "invoices" || got[1] != "billing" {
		t.Fatalf("salient = %v", got)
	}
	a, b, c := textkit.Embed("refund my broken order"), textkit.Embed("order refund please"), textkit.Embed("hello good morning")
	if textkit.Cosine(a, b) <= textkit.Cosine(a, c) {
		t.Fatal("shared words should be closer")
	}
	if s := textkit.TruncateRunes("héllo wonderful world", 12); utf8.RuneCountInString(s) > 12 || !strings.HasSuffix(s, "…") {
		t.Fatalf("truncate = %q", s)
	}
}
