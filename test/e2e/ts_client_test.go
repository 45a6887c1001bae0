package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestTSClientAgainstTheServer compiles openapi/clients/ts/test/e2e.ts with tsc and runs it with Node
// against the real binary: ingest, search, a tool, chat streamed (typed events) and plain, history,
// and a 429 with retry-after from a tenant allowed one request a minute. Skips without Node or
// without `npm ci` at the repository root.
func TestTSClientAgainstTheServer(t *testing.T) {
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node is not installed: the TypeScript client's end-to-end test needs Node 20")
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	tsc := filepath.Join(root, "node_modules", ".bin", "tsc")
	if _, err := os.Stat(tsc); err != nil {
		t.Skip("tsc is not installed: run `npm ci --ignore-scripts` at the repository root (task test does)")
	}
	build := exec.Command(tsc, "-p", "openapi/clients/ts/test")
	build.Dir = root
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("tsc: %v\n%s", err, b)
	}
	const key = "ts-e2e-key"
	tenants := filepath.Join(t.TempDir(), "tenants.yaml")
	cfg := "tenants:\n  - id: demo\n    apiKeys: [\"sha256:" + sha(key) + "\"]\n" +
		"  - id: tiny\n    rateLimit: {perMinute: 1, burst: 1}\n"
	if err := os.WriteFile(tenants, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, t.TempDir(), "--tenants", tenants)
	run := exec.Command("node", filepath.Join("openapi", "clients", "ts", ".build", "test", "e2e.js"), srv.BaseURL, key)
	run.Dir = root
	out, err := run.CombinedOutput()
	if err != nil {
		t.Fatalf("node e2e.js: %v\n%s\nserver log:\n%s", err, out, srv.Logs)
	}
	t.Logf("%s", out)
}
