package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// The TypeScript client (openapi/clients/ts) and the examples (examples/go, examples/ts): generated
// without hand edits, type-checked, compiled. The TypeScript ones need `npm ci` (task test runs it) and
// skip without Node.

// TestTSClientIsCurrent regenerates openapi/clients/ts/src/schema.gen.ts with the pinned
// openapi-typescript (the npm script gen:ts) and compares it with the checked-in file.
func TestTSClientIsCurrent(t *testing.T) {
	gen := nodeTool(t, "openapi-typescript")
	root := repoRoot(t)
	out := filepath.Join(t.TempDir(), "schema.gen.ts")
	cmd := exec.Command(gen, "openapi/openapi.yaml", "--default-non-nullable", "false", "-o", out)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("openapi-typescript: %v\n%s", err, b)
	}
	want, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(root, "openapi", "clients", "ts", "src", "schema.gen.ts"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("openapi/clients/ts/src/schema.gen.ts is not what openapi-typescript generates; run `task openapi`.\n%s", firstDiff(got, want))
	}
}

// TestTSClientAndExamplesTypeCheck runs tsc (strict) over the client and the TypeScript examples,
// which use it and the official OpenAI SDK.
func TestTSClientAndExamplesTypeCheck(t *testing.T) {
	tsc := nodeTool(t, "tsc")
	for _, project := range []string{"openapi/clients/ts", "examples/ts"} {
		cmd := exec.Command(tsc, "-p", project)
		cmd.Dir = repoRoot(t)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("tsc -p %s: %v\n%s", project, err, b)
		}
	}
}

// TestGoExamplesBuild vets the Go examples (their own module: the client from this tree and the
// official OpenAI Go SDK).
func TestGoExamplesBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the examples' module is built only in the full run")
	}
	cmd := exec.Command("go", "vet", "./...")
	cmd.Dir = filepath.Join(repoRoot(t), "examples", "go")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("go vet ./... in examples/go: %v\n%s", err, b)
	}
}
