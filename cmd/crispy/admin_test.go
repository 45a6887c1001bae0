package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/modules/tenancy"
	"github.com/crispy-enigma/crispy/platform/erasuretest"
)

const testAdminKey = "cea_cmd-test-admin-key"

func testAdminHash() string {
	s := sha256.Sum256([]byte(testAdminKey))
	return hex.EncodeToString(s[:])
}

// send is one request with the given headers ("admin" puts the test admin key in Authorization).
func send(t *testing.T, base, method, path string, body any, headers map[string]string) answer {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, _ := http.NewRequest(method, base+path, rd)
	req.Header.Set("content-type", "application/json")
	for k, v := range headers {
		if k == "admin" {
			req.Header.Set("Authorization", "Bearer "+v)
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	_ = json.Unmarshal(raw, &a.body)
	return a
}

// Deleting a tenant through the admin API erases its data: its chat text and its documents' text
// are in no file of the data folder afterwards (the tenant's data keys are destroyed), and the
// tenant stops resolving. Another tenant's data is untouched.
func TestDeletedTenantsDataIsInNoFile(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	cfg := embeddedConfig(data)
	cfg.AdminKeySHA256 = testAdminHash()
	srv, stop := serveApp(t, cfg, buildOptions{})
	admin := map[string]string{"admin": testAdminKey}
	for _, id := range []string{"doomed", "kept"} {
		if r := send(t, srv.URL, "POST", "/admin/tenants", map[string]any{"id": id}, admin); r.status != 201 {
			t.Fatalf("create %s: %d %s", id, r.status, r.raw)
		}
	}
	secret := erasuretest.Marker(t, "tenant-erasure-")
	keptText := erasuretest.Marker(t, "kept-tenant-")
	const s = "7a0e2d4c-1b3a-4e6f-8a9b-0c1d2e3f4a5b"
	doomed := map[string]string{"x-tenant-id": "doomed"}
	if r := send(t, srv.URL, "POST", "/chat", map[string]any{"sessionId": s, "message": secret + " is the code", "stream": false}, doomed); r.status != 200 {
		t.Fatalf("chat: %d %s", r.status, r.raw)
	}
	if r := send(t, srv.URL, "POST", "/ingest", map[string]any{"docId": "memo", "text": "The " + secret + " memo."}, doomed); r.status != 200 {
		t.Fatalf("ingest: %d %s", r.status, r.raw)
	}
	if r := send(t, srv.URL, "POST", "/ingest", map[string]any{"docId": "memo", "text": "The " + keptText + " memo."}, map[string]string{"x-tenant-id": "kept"}); r.status != 200 {
		t.Fatalf("ingest kept: %d %s", r.status, r.raw)
	}
	waitUntil(t, "the session listed", func() bool {
		return strings.Contains(send(t, srv.URL, "GET", "/sessions", nil, doomed).raw, secret)
	})
	if r := send(t, srv.URL, "DELETE", "/admin/tenants/doomed", nil, admin); r.status != 200 || r.body["erased"] != true {
		t.Fatalf("delete: %d %s", r.status, r.raw)
	}
	if r := send(t, srv.URL, "GET", "/sessions", nil, doomed); r.status != 404 || r.body["code"] != "tenant_not_found" {
		t.Fatalf("the deleted tenant still answers: %d %s", r.status, r.raw)
	}
	stop()
	if hits := erasuretest.FilesHolding(t, data, []byte(secret)); len(hits) > 0 {
		t.Fatalf("the deleted tenant's text is still in %v", hits)
	}
	if hits := erasuretest.FilesHolding(t, data, []byte(s)); len(hits) == 0 {
		t.Fatal("the session id is in no file: the grep reads nothing (the check above could not fail)")
	}
	// keptText is sealed too, so it is in no file either; the other tenant's key must still open it.
	srv2, _ := serveApp(t, cfg, buildOptions{})
	waitUntil(t, "the other tenant's document still found", func() bool {
		r := send(t, srv2.URL, "POST", "/search", map[string]any{"query": keptText + " memo", "answer": false}, map[string]string{"x-tenant-id": "kept"})
		return r.status == 200 && strings.Contains(r.raw, keptText)
	})
}

// Every tenant route of the server belongs to a key scope: a route in none would refuse every key.
func TestEveryRouteHasAScope(t *testing.T) {
	dir := t.TempDir()
	cfg := config{DataDir: dir, EventStore: "embedded", Search: "embedded", Bus: "gochannel", PluginsDir: dir, LogLevel: "error"}
	a, err := build(context.Background(), cfg, slog.New(slog.DiscardHandler), buildOptions{specOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer a.close()
	for path, pi := range a.server.API.OpenAPI().Paths {
		if pi == nil || strings.HasPrefix(path, "/admin") || path == "/health" || path == "/healthz" || path == "/metrics" {
			continue
		}
		if tenancy.RouteScope(path) == "" {
			t.Errorf("route %s belongs to no key scope: add its first segment to tenancy.RouteScope", path)
		}
	}
}

// serveBinary runs the crispy binary's serve with args and env and waits until it listens; it
// returns its base URL and the process.
func serveBinary(t *testing.T, env []string, args ...string) (string, *exec.Cmd, func()) {
	t.Helper()
	cmd := exec.Command(crispyBinary(t), append([]string{"serve", "--addr", "127.0.0.1:0"}, args...)...)
	cmd.Env = append(cleanEnv(), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	var logMu sync.Mutex
	var logs strings.Builder
	re := regexp.MustCompile(`"msg":"listening".*?"addr":"([^"]+)"`)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			logMu.Lock()
			logs.WriteString(sc.Text() + "\n")
			logMu.Unlock()
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
	}()
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	var base string
	select {
	case a := <-addr:
		base = "http://" + a
	case <-done:
		logMu.Lock()
		defer logMu.Unlock()
		t.Fatalf("serve exited before listening:\n%s", logs.String())
	case <-time.After(hangAfter):
		_ = cmd.Process.Kill()
		t.Fatal("serve did not listen")
	}
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(hangAfter):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	t.Cleanup(stop)
	return base, cmd, stop
}

// SIGHUP applies the changed tenants file without ending the process, and crispy tenant apply
// does the same against the running server; keys made through the admin API survive both.
func TestSighupAndTenantApplyRecordTheTenantsFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "tenants.yaml")
	write := func(body string) {
		if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("tenants:\n  - id: acme\n")
	base, cmd, _ := serveBinary(t, []string{"CRISPY_ADMIN_KEY_SHA256=" + testAdminHash()},
		"--data-dir", filepath.Join(dir, "data"), "--tenants", file, "--plugins-dir", filepath.Join(dir, "none"))
	admin := map[string]string{"admin": testAdminKey}
	r := send(t, base, "POST", "/admin/tenants/acme/keys", map[string]any{"name": "api"}, admin)
	if r.status != 201 {
		t.Fatalf("create key: %d %s", r.status, r.raw)
	}
	apiKey := r.body["secret"].(string)
	fileKey, fileHash, _ := tenancy.NewAPIKey()
	write("tenants:\n  - id: acme\n    apiKeys: [\"" + fileHash + "\"]\n  - id: beta\n")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "beta served after SIGHUP", func() bool {
		return send(t, base, "GET", "/sessions", nil, map[string]string{"x-tenant-id": "beta"}).status == 200
	})
	for _, k := range []string{apiKey, fileKey} {
		if r := send(t, base, "GET", "/sessions", nil, map[string]string{"x-api-key": k}); r.status != 200 {
			t.Fatalf("key after SIGHUP: %d %s", r.status, r.raw)
		}
	}
	// crispy tenant apply: beta leaves, gamma comes; the API key stays.
	other := filepath.Join(dir, "other.yaml")
	if err := os.WriteFile(other, []byte("tenants:\n  - id: acme\n    apiKeys: [\""+fileHash+"\"]\n  - id: gamma\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	res := runCrispy(t, dir, nil, "tenant", "apply", other, "--server", base, "--admin-key", testAdminKey)
	if res.code != 0 || !strings.Contains(res.stdout, `"registered":1`) {
		t.Fatalf("tenant apply: %d %s %s", res.code, res.stdout, res.stderr)
	}
	if r := send(t, base, "GET", "/sessions", nil, map[string]string{"x-tenant-id": "gamma"}); r.status != 200 {
		t.Fatalf("gamma after apply: %d %s", r.status, r.raw)
	}
	waitUntil(t, "beta removed by the applied file", func() bool {
		return send(t, base, "GET", "/sessions", nil, map[string]string{"x-tenant-id": "beta"}).status == 404
	})
	if r := send(t, base, "GET", "/sessions", nil, map[string]string{"x-api-key": apiKey}); r.status != 200 {
		t.Fatalf("API key after apply: %d %s", r.status, r.raw)
	}
	// A wrong admin key, a broken file: one line, non-zero exit.
	if res := runCrispy(t, dir, nil, "tenant", "apply", other, "--server", base, "--admin-key", "wrong"); res.code == 0 || !strings.Contains(res.stderr, "invalid_admin_key") {
		t.Fatalf("wrong admin key: %d %s", res.code, res.stderr)
	}
	if err := os.WriteFile(other, []byte("tenants: 3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if res := runCrispy(t, dir, nil, "tenant", "apply", other, "--server", base, "--admin-key", testAdminKey); res.code != 2 || !strings.Contains(res.stderr, "other.yaml:1") {
		t.Fatalf("broken file: %d %s", res.code, res.stderr)
	}
	// GET /metrics on --addr needs the admin key.
	if r := send(t, base, "GET", "/metrics", nil, nil); r.status != 401 {
		t.Fatalf("/metrics without a key: %d", r.status)
	}
	if r := send(t, base, "GET", "/metrics", nil, admin); r.status != 200 {
		t.Fatalf("/metrics with the admin key: %d %s", r.status, r.raw)
	}
}

// crispy admin key new prints a key and the hash the server takes.
func TestAdminKeyNew(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"admin", "key", "new"}, stdio{out: &out, err: io.Discard}, func(string) (string, bool) { return "", false }); err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?s)\n  (cea_[0-9a-f]{64})\n.*CRISPY_ADMIN_KEY_SHA256=([0-9a-f]{64})`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("output: %s", out.String())
	}
	sum := sha256.Sum256([]byte(m[1]))
	if hex.EncodeToString(sum[:]) != m[2] {
		t.Fatal("the printed hash is not the key's")
	}
}

// The admin API refuses a tenant whose chat model or fallback names a provider this server does not
// configure (issue 14 item 7), as serve refuses it in the tenants file: every turn would answer 502.
func TestAdminRefusesAModelOfAnUnconfiguredProvider(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	cfg := embeddedConfig(data)
	cfg.AdminKeySHA256 = testAdminHash()
	srv, _ := serveApp(t, cfg, buildOptions{})
	admin := map[string]string{"admin": testAdminKey}
	r := send(t, srv.URL, "POST", "/admin/tenants", map[string]any{"id": "acme", "models": map[string]any{"chat": "openai:gpt-4o-mini"}}, admin)
	if r.status != 400 || r.body["code"] != "model_not_configured" || !strings.Contains(r.raw, "body.models.chat") {
		t.Fatalf("create with an unconfigured provider: %d %s", r.status, r.raw)
	}
	if r := send(t, srv.URL, "POST", "/admin/tenants", map[string]any{"id": "acme", "models": map[string]any{"chat": "builtin:offline"}}, admin); r.status != 201 {
		t.Fatalf("create: %d %s", r.status, r.raw)
	}
	r = send(t, srv.URL, "PUT", "/admin/tenants/acme", map[string]any{"models": map[string]any{"chat": "builtin:offline", "fallbacks": []string{"workers-ai:@cf/meta/llama-3.1-8b-instruct"}}}, admin)
	if r.status != 400 || !strings.Contains(r.raw, "body.models.fallbacks[0]") {
		t.Fatalf("update with an unconfigured fallback: %d %s", r.status, r.raw)
	}
	r = send(t, srv.URL, "POST", "/admin/apply", "tenants:\n  - id: beta\n    models: {chat: \"openai:gpt-4o\"}\n", admin)
	if r.status != 400 || !strings.Contains(r.raw, "body.tenants[0].models.chat") {
		t.Fatalf("apply with an unconfigured provider: %d %s", r.status, r.raw)
	}
}
