package schema_test

import (
	"encoding/json"
	"testing"

	"github.com/crispy-enigma/crispy/plugins/sdk/schema"
)

func TestValidateReportsFailingPaths(t *testing.T) {
	t.Parallel()
	s, err := schema.Compile("t/input", json.RawMessage(`{"type":"object","required":["text"],"additionalProperties":false,
		"properties":{"text":{"type":"string","minLength":1},"max_length":{"type":"integer","minimum":50,"maximum":5000},
		"items":{"type":"array","items":{"type":"string"}}}}`))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, doc string
		paths     []string
	}{
		{"valid", `{"text":"hi","max_length":60}`, nil},
		{"missing required", `{"max_length":60}`, []string{""}},
		{"range", `{"text":"x","max_length":10}`, []string{"/max_length"}},
		{"type and nested", `{"text":5,"items":["a",3]}`, []string{"/items/1", "/text"}},
		{"not json", `{`, []string{""}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			got := s.Validate(json.RawMessage(c.doc))
			if len(got) != len(c.paths) {
				t.Fatalf("violations %+v, want paths %v", got, c.paths)
			}
			for i, v := range got {
				if v.Path != c.paths[i] || v.Message == "" {
					t.Errorf("violation %d = %+v, want path %q", i, v, c.paths[i])
				}
			}
		})
	}
}

func TestCompileRejectsBadSchemas(t *testing.T) {
	t.Parallel()
	for _, doc := range []string{`{"type":"nope"}`, `[1]`, `{`, `{"minimum":"x"}`} {
		if _, err := schema.Compile("bad", json.RawMessage(doc)); err == nil {
			t.Errorf("schema %s compiled", doc)
		}
	}
}
