package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
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
