package app_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/crispy-enigma/crispy/modules/retrieval/internal/app"
)

// The HTML text keeps what a reader sees, paragraph by paragraph, and none of the page's code.
func TestExtractTextHTML(t *testing.T) {
	got, err := app.ExtractText("a.HTML", []byte(`<html><head><title>T</title><script>x()</script></head><body>
<style>p{}</style><h1>Rules</h1><p>One  two<br>three</p><template>hidden</template><ul><li>four</li></ul></body></html>`))
	if err != nil || got != "Rules\n\nOne two\n\nthree\n\nfour" {
		t.Fatalf("got %q, %v", got, err)
	}
}

func TestExtractTextRefusals(t *testing.T) {
	for name, data := range map[string]string{"a.docx": "PK", "noext": "text", "a.txt": "\xff\xfe", "a.pdf": "%PDF-1.4 not really"} {
		if _, err := app.ExtractText(name, []byte(data)); !errors.Is(err, app.ErrUnsupportedFormat) {
			t.Errorf("%s: %v, want ErrUnsupportedFormat", name, err)
		}
	}
}

// FuzzExtractText: no input panics or hangs the extractor, whatever its name says it is.
func FuzzExtractText(f *testing.F) {
	for _, s := range []string{"<p>a</p>", "<<", "%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF", "(a\\101\\", "[(x) -300 <41"} {
		f.Add("f.html", []byte(s))
		f.Add("f.pdf", []byte(s))
	}
	f.Fuzz(func(t *testing.T, name string, data []byte) {
		text, err := app.ExtractText(name, data)
		if err == nil && strings.HasSuffix(strings.ToLower(name), ".pdf") && strings.TrimSpace(text) == "" {
			t.Fatalf("a PDF without text was accepted")
		}
	})
}
