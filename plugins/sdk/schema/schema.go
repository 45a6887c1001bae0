// Package schema compiles and applies a tool's JSON Schemas (github.com/santhosh-tekuri/jsonschema/v6:
// maintained, draft 2020-12 and older drafts, structured output with instance locations). The host
// validates every call's input and output with it, and the conformance kit checks a plugin's schemas
// compile with it.
package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// Schema is a compiled JSON Schema.
type Schema struct {
	s   *jsonschema.Schema
	raw json.RawMessage
	p   *message.Printer
}

// Violation is one failing location of an instance.
type Violation struct {
	Path    string // JSON pointer into the instance ("" is the root, "/text", "/items/0")
	Message string
}

// Compile compiles doc; name identifies it in error messages (e.g. "summarize/input").
func Compile(name string, doc json.RawMessage) (*Schema, error) {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return nil, fmt.Errorf("schema %s: not JSON: %w", name, err)
	}
	if _, ok := v.(map[string]any); !ok {
		if _, isBool := v.(bool); !isBool {
			return nil, fmt.Errorf("schema %s: must be a JSON object or boolean", name)
		}
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	url := "crispy-tool:///" + strings.ReplaceAll(name, " ", "_") + ".json"
	if err := c.AddResource(url, v); err != nil {
		return nil, fmt.Errorf("schema %s: %w", name, err)
	}
	s, err := c.Compile(url)
	if err != nil {
		return nil, fmt.Errorf("schema %s: %w", name, err)
	}
	return &Schema{s: s, raw: doc, p: message.NewPrinter(language.English)}, nil
}

// Raw is the schema document as given.
func (s *Schema) Raw() json.RawMessage { return s.raw }

// Validate checks the JSON instance; nil means valid.
func (s *Schema) Validate(instance json.RawMessage) []Violation {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(instance))
	if err != nil {
		return []Violation{{Path: "", Message: "not valid JSON: " + err.Error()}}
	}
	return s.ValidateValue(v)
}

// ValidateValue checks a decoded instance (from jsonschema.UnmarshalJSON or encoding/json with
// UseNumber).
func (s *Schema) ValidateValue(v any) []Violation {
	err := s.s.Validate(v)
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return []Violation{{Message: err.Error()}}
	}
	var out []Violation
	seen := map[Violation]bool{}
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) == 0 {
			vi := Violation{Path: pointer(e.InstanceLocation), Message: e.ErrorKind.LocalizedString(s.p)}
			if !seen[vi] {
				seen[vi] = true
				out = append(out, vi)
			}
			return
		}
		for _, c := range e.Causes {
			walk(c)
		}
	}
	walk(ve)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

func pointer(tokens []string) string {
	var b strings.Builder
	for _, t := range tokens {
		b.WriteByte('/')
		t = strings.ReplaceAll(t, "~", "~0")
		b.WriteString(strings.ReplaceAll(t, "/", "~1"))
	}
	return b.String()
}
