package main

import (
	"context"
	"testing"

	"github.com/crispy-enigma/crispy/plugins/sdk"
)

func TestOfflineClassification(t *testing.T) {
	t.Parallel()
	cases := []struct{ text, want string }{
		{"How do I change my password?", "question"},
		{"Please send me a copy of the invoice.", "request"},
		{"My order never arrived and the app is broken. I want a refund!", "complaint"},
		{"I love the new dashboard, but it would be nice to export charts.", "feedback"},
		{"Hello there, good morning!", "greeting"},
		{"The meeting moved to room four.", "other"},
	}
	for _, c := range cases {
		out, err := classify(context.Background(), input{Text: c.text}, sdk.Request{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if out.Intent != c.want || out.Confidence <= 0 || out.Confidence > 1 || len(out.Considered) != 6 {
			t.Errorf("%q: %+v, want %s", c.text, out, c.want)
		}
	}
	strong, _ := classify(context.Background(), input{Text: "Hello, hi, good morning!"}, sdk.Request{}, nil)
	weak, _ := classify(context.Background(), input{Text: "The meeting moved to room four."}, sdk.Request{}, nil)
	if strong.Confidence <= weak.Confidence {
		t.Errorf("a clear greeting (%v) should be more confident than a vague statement (%v)", strong.Confidence, weak.Confidence)
	}
}

func TestCustomCategories(t *testing.T) {
	t.Parallel()
	out, _ := classify(context.Background(), input{Text: "The invoice total on my bill is wrong", Categories: []string{"billing issue", "shipping", "account"}}, sdk.Request{}, nil)
	if out.Intent != "billing issue" {
		t.Fatalf("%+v", out)
	}
}

type modelHost struct{ answer string }

func (h modelHost) Capabilities() sdk.Capabilities { return sdk.Capabilities{Complete: true} }
func (h modelHost) Complete(context.Context, sdk.CompleteRequest) (sdk.Completion, error) {
	return sdk.Completion{Text: h.answer}, nil
}
func (h modelHost) Embed(context.Context, []string) (sdk.Embeddings, error) {
	return sdk.Embeddings{}, sdk.ErrUnavailable
}
func (h modelHost) Ingest(context.Context, sdk.Document) (sdk.IngestResult, error) {
	return sdk.IngestResult{}, sdk.ErrUnavailable
}

func TestModelPickWins(t *testing.T) {
	t.Parallel()
	out, _ := classify(context.Background(), input{Text: "The meeting moved to room four."}, sdk.Request{}, modelHost{answer: "Feedback."})
	if out.Intent != "feedback" || out.Confidence < 0.5 {
		t.Fatalf("%+v", out)
	}
}
