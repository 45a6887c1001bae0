package main

import (
	"context"
	"testing"

	"github.com/crispy-enigma/crispy/plugins/sdk"
)

func run(t *testing.T, text string, types ...string) []Entity {
	t.Helper()
	out, err := tool{p: newPatterns()}.run(context.Background(), input{Text: text, EntityTypes: types}, sdk.Request{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if out.Count != len(out.Entities) {
		t.Fatalf("count %d for %d entities", out.Count, len(out.Entities))
	}
	runes := []rune(text)
	for _, e := range out.Entities {
		if e.Start < 0 || e.End > len(runes) || string(runes[e.Start:e.End]) != e.Text {
			t.Fatalf("entity %+v does not slice the text: %q", e, string(runes[max(0, e.Start):min(len(runes), e.End)]))
		}
	}
	return out.Entities
}

func has(es []Entity, typ, text string) bool {
	for _, e := range es {
		if e.Type == typ && e.Text == text {
			return true
		}
	}
	return false
}

func TestPatternsAndNames(t *testing.T) {
	t.Parallel()
	text := "Zoë Müller from Acme Corp emailed jane.doe@example.com on 2024-05-01 about the €1,250.50 invoice. " +
		"Call +1 555-123-4567 or see https://example.com/pay?id=7. Dr. Alan Turing met her in London on March 3, 2025. " +
		"The deal is worth $2.5 million to IBM."
	es := run(t, text)
	for _, w := range []struct{ typ, text string }{
		{"email", "jane.doe@example.com"}, {"date", "2024-05-01"}, {"money", "€1,250.50"}, {"phone", "+1 555-123-4567"},
		{"url", "https://example.com/pay?id=7"}, {"date", "March 3, 2025"}, {"money", "$2.5 million"},
		{"person", "Zoë Müller"}, {"organization", "Acme Corp"}, {"person", "Alan Turing"}, {"location", "London"}, {"organization", "IBM"},
	} {
		if !has(es, w.typ, w.text) {
			t.Errorf("missing %s %q in %+v", w.typ, w.text, es)
		}
	}
	if has(es, "phone", "2024-05-01") {
		t.Error("a date was taken for a phone number")
	}
}

func TestEntityTypesFilter(t *testing.T) {
	t.Parallel()
	es := run(t, "Write to ops@example.org by 12/31/2025, Bob Stone said.", "email")
	if len(es) != 1 || es[0].Type != "email" {
		t.Fatalf("%+v", es)
	}
}

func TestOffsetsAreRuneSafe(t *testing.T) {
	t.Parallel()
	text := "日本語のテキスト — 連絡先: tanaka@example.jp 😀 Renée Dubois pays ¥5000."
	es := run(t, text)
	if !has(es, "email", "tanaka@example.jp") || !has(es, "money", "¥5000") || !has(es, "person", "Renée Dubois") {
		t.Fatalf("%+v", es)
	}
}
