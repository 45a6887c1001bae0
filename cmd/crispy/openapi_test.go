package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestOpenAPISpecIsCurrent fails when the API in the code and openapi/openapi.yaml disagree: the spec
// is the contract, regenerated with `task openapi` (go run ./cmd/crispy openapi > openapi/openapi.yaml).
func TestOpenAPISpecIsCurrent(t *testing.T) {
	for file, format := range map[string]specFormat{"openapi.yaml": specYAML, "openapi-3.0.yaml": specYAML30} {
		want, err := spec(context.Background(), format)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join("..", "..", "openapi", file)
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("read the checked-in spec: %v", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is not what the code generates; run `task openapi` and commit the result.\n%s", path, firstDiff(got, want))
		}
	}
}

// firstDiff names the first line where the checked-in spec and the generated one differ.
func firstDiff(got, want []byte) string {
	g, w := bytes.Split(got, []byte("\n")), bytes.Split(want, []byte("\n"))
	for i := 0; i < len(g) || i < len(w); i++ {
		var gl, wl []byte
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if !bytes.Equal(gl, wl) {
			return fmt.Sprintf("line %d:\n  checked in: %s\n  generated:  %s", i+1, gl, wl)
		}
	}
	return ""
}

// TestSpecReferencesResolve keeps client generators working: every $ref names a component that the
// spec defines.
func TestSpecReferencesResolve(t *testing.T) {
	b, err := spec(context.Background(), specYAML)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	schemas, _ := doc["components"].(map[string]any)["schemas"].(map[string]any)
	var walk func(v any)
	refs := 0
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if k == "$ref" {
					refs++
					name, ok := strings.CutPrefix(x.(string), "#/components/schemas/")
					if _, found := schemas[name]; !ok || !found {
						t.Errorf("$ref %v does not resolve", x)
					}
					continue
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(doc["paths"])
	if refs == 0 {
		t.Fatal("no $ref found: the walk is not looking at the spec")
	}
}
