package main

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/crispy-enigma/crispy/plugins/sdk/sdktest"
)

// TestConformance builds this plugin as a vendor would and runs the conformance kit on it.
func TestConformance(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "word_count")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	rep := sdktest.Run(context.Background(), bin, sdktest.Options{})
	var buf bytes.Buffer
	rep.Write(&buf)
	t.Log(buf.String())
	if !rep.OK() {
		t.Fatal("conformance failed")
	}
}
