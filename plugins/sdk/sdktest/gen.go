package sdktest

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"unicode/utf8"
)

// sampleText is rich enough for every built-in tool to find something: names, an email, a date, money,
// a question and a request.
const sampleText = "Alice Smith from Acme Corp wrote to alice@example.com on 2024-05-01 about a $250 invoice. " +
	"Please send the quarterly report by Friday. How long will shipping to London take? The team liked the new dashboard."

// node is a decoded JSON Schema object.
type node = map[string]any

func types(s node) []string {
	switch t := s["type"].(type) {
	case string:
		return []string{t}
	case []any:
		var out []string
		for _, x := range t {
			if str, ok := x.(string); ok && str != "null" {
				out = append(out, str)
			}
		}
		return out
	}
	if _, ok := s["properties"]; ok {
		return []string{"object"}
	}
	return nil
}

func num(s node, k string) (float64, bool) {
	v, ok := s[k].(float64)
	return v, ok
}

// generate builds an instance of s; full also fills optional properties.
func generate(s node, full bool, depth int) any {
	if depth > 8 {
		return nil
	}
	if v, ok := s["const"]; ok {
		return v
	}
	if e, ok := s["enum"].([]any); ok && len(e) > 0 {
		return e[0]
	}
	if ex, ok := s["examples"].([]any); ok && len(ex) > 0 {
		return ex[0]
	}
	if d, ok := s["default"]; ok {
		return d
	}
	for _, k := range []string{"oneOf", "anyOf"} {
		if alts, ok := s[k].([]any); ok && len(alts) > 0 {
			if a, ok := alts[0].(node); ok {
				return generate(a, full, depth+1)
			}
		}
	}
	ts := types(s)
	if len(ts) == 0 {
		return "example"
	}
	switch ts[0] {
	case "object":
		out := map[string]any{}
		props, _ := s["properties"].(node)
		req := map[string]bool{}
		if r, ok := s["required"].([]any); ok {
			for _, x := range r {
				if n, ok := x.(string); ok {
					req[n] = true
				}
			}
		}
		for name, p := range props {
			pn, ok := p.(node)
			if !ok || (!req[name] && !full) {
				continue
			}
			out[name] = generate(pn, full, depth+1)
		}
		return out
	case "array":
		n := 1
		if m, ok := num(s, "minItems"); ok && int(m) > n {
			n = int(m)
		}
		items, _ := s["items"].(node)
		out := make([]any, 0, n)
		for i := 0; i < n; i++ {
			v := generate(items, full, depth+1)
			if str, ok := v.(string); ok && i > 0 {
				v = fmt.Sprintf("%s %d", str, i) // keep uniqueItems happy
			}
			out = append(out, v)
		}
		return out
	case "string":
		return sampleString(s)
	case "integer", "number":
		if v, ok := num(s, "minimum"); ok {
			return v
		}
		if v, ok := num(s, "exclusiveMinimum"); ok {
			return v + 1
		}
		if v, ok := num(s, "maximum"); ok && v < 1 {
			return v
		}
		return 1
	case "boolean":
		return true
	}
	return nil
}

func sampleString(s node) string {
	switch s["format"] {
	case "email":
		return "alice@example.com"
	case "uri", "url":
		return "https://example.com/"
	case "date-time":
		return "2024-05-01T12:00:00Z"
	case "date":
		return "2024-05-01"
	case "uuid":
		return "0193a5c2-7c1a-7d4e-9a53-1f0c2b3a4d5e"
	}
	text := sampleText
	if m, ok := num(s, "minLength"); ok {
		for utf8.RuneCountInString(text) < int(m) {
			text += " " + sampleText
		}
	}
	if m, ok := num(s, "maxLength"); ok && utf8.RuneCountInString(text) > int(m) {
		text = string([]rune(text)[:int(m)])
	}
	return text
}

// invalid is a named instance that should fail the schema.
type invalid struct {
	name  string
	value any
}

// invalids builds instances that break the schema in typical ways.
func invalids(s node) []invalid {
	var out []invalid
	ts := types(s)
	if len(ts) == 0 || ts[0] != "object" {
		return []invalid{{"wrong root type", map[string]any{"unexpected": true}}}
	}
	out = append(out, invalid{"root is not an object", "not an object"})
	base, _ := generate(s, false, 0).(map[string]any)
	props, _ := s["properties"].(node)
	if r, ok := s["required"].([]any); ok {
		for _, x := range r {
			name, _ := x.(string)
			m := clone(base)
			delete(m, name)
			out = append(out, invalid{"missing required " + name, m})
		}
	}
	names := make([]string, 0, len(props))
	for n := range props {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		p, _ := props[name].(node)
		pt := types(p)
		if len(pt) == 0 {
			continue
		}
		m := clone(base)
		switch pt[0] {
		case "string":
			m[name] = 12345
		case "integer", "number":
			m[name] = "not a number"
		case "boolean":
			m[name] = "yes"
		case "array":
			m[name] = "not an array"
		case "object":
			m[name] = 5
		}
		out = append(out, invalid{"wrong type for " + name, m})
		if max, ok := num(p, "maximum"); ok {
			m := clone(base)
			m[name] = max + 1
			out = append(out, invalid{name + " above maximum", m})
		}
		if min, ok := num(p, "minimum"); ok {
			m := clone(base)
			m[name] = min - 1
			out = append(out, invalid{name + " below minimum", m})
		}
		if ml, ok := num(p, "maxLength"); ok && ml <= 100000 {
			m := clone(base)
			m[name] = strings.Repeat("x", int(ml)+1)
			out = append(out, invalid{name + " too long", m})
		}
		if e, ok := p["enum"].([]any); ok && len(e) > 0 {
			m := clone(base)
			m[name] = "definitely-not-in-the-enum"
			out = append(out, invalid{name + " not in enum", m})
		}
	}
	if ap, ok := s["additionalProperties"].(bool); ok && !ap {
		m := clone(base)
		m["unexpected_property_from_the_kit"] = true
		out = append(out, invalid{"unexpected property", m})
	}
	return out
}

func clone(m map[string]any) map[string]any {
	b, _ := json.Marshal(m)
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	if out == nil {
		out = map[string]any{}
	}
	return out
}
