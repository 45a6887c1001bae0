package main

import (
	"context"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/crispy-enigma/crispy/plugins/sdk"
)

const article = `The city council approved a new budget for public transport on Monday. The budget adds forty electric buses and extends night service on three lines.
Council members argued for hours about the cost of the electric buses. Some members wanted cheaper diesel buses instead.

The mayor said the transport budget would cut emissions and waiting times. Weather was sunny. Construction of the new bus depot starts in spring.`

type fakeHost struct {
	caps sdk.Capabilities
	text string
	err  error
}

func (h fakeHost) Capabilities() sdk.Capabilities { return h.caps }
func (h fakeHost) Complete(context.Context, sdk.CompleteRequest) (sdk.Completion, error) {
	return sdk.Completion{Text: h.text, Model: "test"}, h.err
}
func (h fakeHost) Embed(context.Context, []string) (sdk.Embeddings, error) {
	return sdk.Embeddings{}, sdk.ErrUnavailable
}
func (h fakeHost) Ingest(context.Context, sdk.Document) (sdk.IngestResult, error) {
	return sdk.IngestResult{}, sdk.ErrUnavailable
}

func TestExtractiveSummaryWithinMaxLength(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		max    int
		format string
	}{{50, "paragraph"}, {120, "paragraph"}, {200, "bullet_points"}, {5000, "paragraph"}, {60, "bullet_points"}} {
		out, err := summarize(context.Background(), input{Text: article, MaxLength: c.max, Format: c.format}, sdk.Request{}, fakeHost{})
		if err != nil {
			t.Fatal(err)
		}
		if n := utf8.RuneCountInString(out.Summary); n > c.max || n == 0 {
			t.Fatalf("max %d: summary of %d runes: %q", c.max, n, out.Summary)
		}
		if c.format == "bullet_points" && !strings.HasPrefix(out.Summary, "- ") {
			t.Fatalf("bullets: %q", out.Summary)
		}
		if out.Format != c.format {
			t.Fatalf("format %q", out.Format)
		}
	}
	out, _ := summarize(context.Background(), input{Text: article, MaxLength: 150}, sdk.Request{}, fakeHost{})
	if !strings.Contains(out.Summary, "budget") || strings.Contains(out.Summary, "Weather was sunny") {
		t.Fatalf("the summary should keep the topic sentences: %q", out.Summary)
	}
	if out.Format != "paragraph" {
		t.Fatalf("default format %q", out.Format)
	}
}

func TestUsesTheModelWhenThereIsOne(t *testing.T) {
	t.Parallel()
	h := fakeHost{caps: sdk.Capabilities{Complete: true}, text: "Council funds electric buses."}
	out, err := summarize(context.Background(), input{Text: article, MaxLength: 100}, sdk.Request{}, h)
	if err != nil || out.Summary != "Council funds electric buses." {
		t.Fatalf("%q %v", out.Summary, err)
	}
	h.text = strings.Repeat("very long model answer ", 20)
	out, _ = summarize(context.Background(), input{Text: article, MaxLength: 60}, sdk.Request{}, h)
	if utf8.RuneCountInString(out.Summary) > 60 {
		t.Fatalf("model answer not cut: %q", out.Summary)
	}
	h = fakeHost{caps: sdk.Capabilities{Complete: true}, err: sdk.ErrUnavailable}
	out, _ = summarize(context.Background(), input{Text: article, MaxLength: 100}, sdk.Request{}, h)
	if !strings.Contains(out.Summary, "budget") {
		t.Fatalf("no offline fallback: %q", out.Summary)
	}
}
