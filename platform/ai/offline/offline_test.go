package offline_test

import (
	"context"
	"strings"
	"testing"

	"github.com/crispy-enigma/crispy/platform/ai"
	"github.com/crispy-enigma/crispy/platform/ai/offline"
)

func TestOfflineAnswersFromPassagesWithCitations(t *testing.T) {
	t.Parallel()
	p := offline.New()
	req := ai.Request{Messages: []ai.Message{{Role: "user", Content: "What is the capital of Freedonia?"}},
		Documents: []ai.Document{
			{N: 1, Title: "Cooking", Text: "Boil the pasta for ten minutes. Salt the water."},
			{N: 2, Title: "Freedonia", Text: "Freedonia is a small country. The capital of Freedonia is Fredville. It has rivers."},
		}}
	var b strings.Builder
	res, err := p.Stream(context.Background(), req, func(d string) error { b.WriteString(d); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if b.String() != res.Content {
		t.Fatalf("streamed %q != content %q", b.String(), res.Content)
	}
	if !strings.HasPrefix(res.Content, offline.Prefix) || !strings.Contains(res.Content, "The capital of Freedonia is Fredville. [2]") ||
		strings.Contains(res.Content, "pasta") {
		t.Fatalf("answer %q", res.Content)
	}
	again, _ := p.Complete(context.Background(), req)
	if again.Content != res.Content {
		t.Fatal("not deterministic")
	}
}

func TestOfflineIsHonestWithoutContext(t *testing.T) {
	t.Parallel()
	res, _ := offline.New().Complete(context.Background(), ai.Request{Messages: []ai.Message{{Role: "user", Content: "hello"}}})
	if !strings.Contains(res.Content, "offline model") || !strings.Contains(res.Content, "No language model is configured") {
		t.Fatalf("answer %q", res.Content)
	}
	res, _ = offline.New().Complete(context.Background(), ai.Request{Messages: []ai.Message{{Role: "user", Content: "summarize"}},
		Documents: []ai.Document{{Tool: true, Title: "summarize", Text: `{"summary":"short"}`}}})
	if !strings.Contains(res.Content, `The tool summarize returned: {"summary":"short"}`) {
		t.Fatalf("answer %q", res.Content)
	}
}
