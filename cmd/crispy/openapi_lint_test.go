package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// The spec lint: Redocly CLI (its recommended rules) and Spectral (spectral:oas), at the exact versions
// of package-lock.json, find no error and no warning in openapi/openapi.yaml (which
// TestOpenAPISpecIsCurrent keeps equal to the code's). They run from the repository's node_modules
// (`npm ci`, which `task test` runs when npm is there); without Node the test skips and says so.

// nodeTool is the path of an npm-installed command of the repository, or a skip.
func nodeTool(t *testing.T, name string) string {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node is not installed: the spec lint needs Node 20 and `npm ci` at the repository root")
	}
	p, err := filepath.Abs(filepath.Join("..", "..", "node_modules", ".bin", name))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Skipf("%s is not installed: run `npm ci --ignore-scripts` at the repository root (task test does)", name)
	}
	return p
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func TestSpecLintRedocly(t *testing.T) {
	redocly := nodeTool(t, "redocly")
	cmd := exec.Command(redocly, "lint", "--config", "openapi/redocly.yaml", "--format", "json", "openapi/openapi.yaml")
	cmd.Dir = repoRoot(t)
	cmd.Env = append(os.Environ(), "REDOCLY_TELEMETRY=off", "REDOCLY_SUPPRESS_UPDATE_NOTICE=true", "NO_COLOR=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	_ = cmd.Run() // non-zero on errors; the report says which
	var report struct {
		Totals   struct{ Errors, Warnings, Ignored int } `json:"totals"`
		Problems []struct {
			RuleID, Severity, Message string
			Location                  []struct{ Pointer string } `json:"location"`
		} `json:"problems"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &report); err != nil {
		t.Fatalf("redocly's report is not JSON (%v):\n%s\n%s", err, stdout.String(), stderr.String())
	}
	for _, p := range report.Problems {
		where := ""
		if len(p.Location) > 0 {
			where = p.Location[0].Pointer
		}
		t.Errorf("redocly %s %s at %s: %s", p.Severity, p.RuleID, where, p.Message)
	}
	t.Logf("redocly: %d errors, %d warnings, %d ignored", report.Totals.Errors, report.Totals.Warnings, report.Totals.Ignored)
}

func TestSpecLintSpectral(t *testing.T) {
	spectral := nodeTool(t, "spectral")
	cmd := exec.Command(spectral, "lint", "--ruleset", "openapi/.spectral.yaml", "--format", "json", "--quiet", "openapi/openapi.yaml")
	cmd.Dir = repoRoot(t)
	cmd.Env = append(os.Environ(), "NO_COLOR=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	_ = cmd.Run() // non-zero on errors; the report says which
	var problems []struct {
		Code     string
		Message  string
		Severity int // 0 error, 1 warning, 2 info, 3 hint
		Path     []any
	}
	out := bytes.TrimSpace(stdout.Bytes())
	if len(out) == 0 {
		out = []byte("[]") // --quiet prints nothing when there is nothing to say
	}
	if err := json.Unmarshal(out, &problems); err != nil {
		t.Fatalf("spectral's report is not JSON (%v):\n%s\n%s", err, stdout.String(), stderr.String())
	}
	n := 0
	for _, p := range problems {
		if p.Severity <= 1 {
			n++
			t.Errorf("spectral severity %d %s at %v: %s", p.Severity, p.Code, p.Path, p.Message)
		}
	}
	t.Logf("spectral: %d errors and warnings", n)
}
