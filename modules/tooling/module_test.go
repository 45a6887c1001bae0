package tooling_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	tenancyevents "github.com/crispy-enigma/crispy/modules/tenancy/events"
	"github.com/crispy-enigma/crispy/modules/tooling"
	"github.com/crispy-enigma/crispy/modules/tooling/events"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

func TestSchemaListsToolsAndExecuteRunsThem(t *testing.T) {
	t.Parallel()
	e := newEnv(t, pluginsDir(t, "echo", "plain"), opts{})
	r := e.do("GET", "/schema/tools", "acme", nil)
	if r.status != 200 {
		t.Fatalf("schema: %d %s", r.status, r.raw)
	}
	tools := r.body["tools"].([]any)
	if len(tools) != 2 {
		t.Fatalf("tools: %s", r.raw)
	}
	first := tools[0].(map[string]any)
	if first["name"] != "echo" || first["version"] != "1.0.0" || first["timeout_ms"] != float64(500) ||
		first["parameters"].(map[string]any)["type"] != "object" || first["output"] == nil || len(first["permissions"].([]any)) != 3 {
		t.Fatalf("echo: %v", first)
	}

	r = e.do("POST", "/tools/execute", "acme", map[string]any{"tool_name": "echo", "params": map[string]any{"mode": "ok", "n": 3, "text": "secret words"}, "user_id": "u-7"})
	if r.status != 200 {
		t.Fatalf("execute: %d %s", r.status, r.raw)
	}
	res := r.body["result"].(map[string]any)
	if r.body["tool_name"] != "echo" || res["n"] != float64(3) || res["tenant"] != "acme" || res["user"] != "u-7" || r.body["requestId"] == "" {
		t.Fatalf("execute body: %s", r.raw)
	}
	if _, ok := r.body["metadata"].(map[string]any)["durationMs"]; !ok {
		t.Fatalf("no durationMs: %s", r.raw)
	}

	evs := e.audit("acme")
	if len(evs) != 2 || evs[0].Type != events.TypeToolInvoked || evs[1].Type != events.TypeToolSucceeded {
		t.Fatalf("audit: %+v", evs)
	}
	var inv events.ToolInvoked
	var ok events.ToolSucceeded
	_ = evs[0].Decode(&inv)
	_ = evs[1].Decode(&ok)
	params, _ := json.Marshal(map[string]any{"mode": "ok", "n": 3, "text": "secret words"})
	if inv.Tool != "echo" || inv.Version != "1.0.0" || inv.UserID != "u-7" || inv.RequestID != r.body["requestId"] || inv.Tenant != "acme" ||
		inv.ParamsHMAC != e.paramsHMAC("acme", params) || inv.ParamsSHA256 != "" {
		t.Fatalf("invoked: %+v", inv)
	}
	if !ok.Success || ok.DurationMs <= 0 || ok.InvocationID != inv.InvocationID || ok.ParamsHMAC != inv.ParamsHMAC {
		t.Fatalf("succeeded: %+v", ok)
	}
	for _, ev := range evs {
		if strings.Contains(string(ev.Data), "secret words") {
			t.Fatalf("params leaked into the audit: %s", ev.Data)
		}
	}
}

func TestBadInputAndToolFailures(t *testing.T) {
	t.Parallel()
	e := newEnv(t, pluginsDir(t, "echo"), opts{})
	cases := []struct {
		name      string
		tool      string
		params    any
		status    int
		code      string
		locations []string
	}{
		{"unknown tool", "nope", map[string]any{}, 404, "TOOL_NOT_FOUND", nil},
		{"missing required", "echo", map[string]any{"n": 1}, 400, "VALIDATION_FAILED", []string{"body.params"}},
		{"out of range and wrong type", "echo", map[string]any{"mode": "ok", "n": 99, "text": 5}, 400, "VALIDATION_FAILED", []string{"body.params.n", "body.params.text"}},
		{"unknown property", "echo", map[string]any{"mode": "ok", "extra": true}, 400, "VALIDATION_FAILED", []string{"body.params"}},
		{"bad enum", "echo", map[string]any{"mode": "dance"}, 400, "VALIDATION_FAILED", []string{"body.params.mode"}},
		{"output not matching schema", "echo", map[string]any{"mode": "badoutput"}, 502, "EXECUTION_ERROR", []string{"result"}},
		{"tool refuses", "echo", map[string]any{"mode": "fail"}, 502, "EXECUTION_ERROR", nil},
		{"tool panics", "echo", map[string]any{"mode": "panic"}, 502, "EXECUTION_ERROR", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.exec("acme", c.tool, c.params)
			wantProblem(t, r, c.status, c.code)
			var locs []string
			errs, _ := r.body["errors"].([]any)
			for _, x := range errs {
				locs = append(locs, x.(map[string]any)["location"].(string))
			}
			if fmt.Sprint(locs) != fmt.Sprint(c.locations) {
				t.Fatalf("error locations %v, want %v; %s", locs, c.locations, r.raw)
			}
		})
	}
	// The refusals after the tool was found are audited with their code.
	var codes []string
	for _, ev := range e.audit("acme") {
		if ev.Type == events.TypeToolFailed {
			var f events.ToolFailed
			_ = ev.Decode(&f)
			codes = append(codes, f.ErrorCode)
		}
	}
	if len(codes) != 7 || codes[0] != "VALIDATION_FAILED" || codes[6] != "EXECUTION_ERROR" {
		t.Fatalf("audited codes %v", codes)
	}
}

func TestCrashMidCallIs502AndTheNextCallWorks(t *testing.T) {
	t.Parallel()
	e := newEnv(t, pluginsDir(t, "echo"), opts{})
	first := e.exec("acme", "echo", map[string]any{"mode": "ok"})
	wantProblem(t, e.exec("acme", "echo", map[string]any{"mode": "crash"}), 502, "EXECUTION_ERROR")
	second := e.exec("acme", "echo", map[string]any{"mode": "ok"})
	if second.status != 200 {
		t.Fatalf("call after crash: %d %s", second.status, second.raw)
	}
	p1 := first.body["result"].(map[string]any)["pid"]
	p2 := second.body["result"].(map[string]any)["pid"]
	if p1 == p2 {
		t.Fatalf("the plugin was not restarted (pid %v)", p1)
	}
}

func TestHangingPluginIs504AndKilled(t *testing.T) {
	t.Parallel()
	e := newEnv(t, pluginsDir(t, "echo"), opts{})
	wantProblem(t, e.exec("acme", "echo", map[string]any{"mode": "hang"}), 504, "EXECUTION_TIMEOUT")
	var pid int
	ents, _ := os.ReadDir(pidDir)
	for _, en := range ents {
		if p, ok := strings.CutPrefix(en.Name(), "echo."); ok {
			n, _ := strconv.Atoi(p)
			if syscall.Kill(n, 0) == nil || pid == 0 {
				pid = n
			}
		}
	}
	if pid == 0 {
		t.Fatal("the hanging plugin did not record its pid")
	}
	eventually(t, "hung plugin killed", func() bool { return syscall.Kill(pid, 0) != nil })
	if r := e.do("GET", "/healthz", "", nil); r.status != 200 {
		t.Fatalf("server unhealthy after timeout: %d", r.status)
	}
	if r := e.exec("acme", "echo", map[string]any{"mode": "ok"}); r.status != 200 {
		t.Fatalf("call after timeout: %d %s", r.status, r.raw)
	}
}

func TestPermissions(t *testing.T) {
	t.Parallel()
	no := false
	pol := policy{
		"open":     {},
		"denier":   {Tools: tenancyevents.Tools{Deny: []string{"echo"}}},
		"allower":  {Tools: tenancyevents.Tools{Allow: []string{"plain"}}},
		"disabled": {Tools: tenancyevents.Tools{Enabled: &no}},
		"readonly": {Features: map[string]bool{"tool.index.write": false}},
	}
	e := newEnv(t, pluginsDir(t, "echo", "plain"), opts{policy: pol})
	cases := []struct {
		tenant, tool string
		status       int
	}{
		{"open", "echo", 200}, {"open", "plain", 200},
		{"denier", "echo", 403}, {"denier", "plain", 200},
		{"allower", "echo", 403}, {"allower", "plain", 200},
		{"disabled", "echo", 403}, {"disabled", "plain", 403},
		{"readonly", "echo", 403}, {"readonly", "plain", 200},
	}
	for _, c := range cases {
		r := e.exec(c.tenant, c.tool, map[string]any{"mode": "ok"})
		if r.status != c.status || (c.status == 403 && r.body["code"] != "PERMISSION_DENIED") {
			t.Errorf("%s runs %s: %d %s", c.tenant, c.tool, r.status, r.raw)
		}
	}
	if r := e.exec("readonly", "echo", map[string]any{"mode": "ok"}); !strings.Contains(r.raw, "index:write") {
		t.Errorf("the refusal does not name the permission: %s", r.raw)
	}
	count := func(tenantID string) int {
		r := e.do("GET", "/schema/tools", tenantID, nil)
		return len(r.body["tools"].([]any))
	}
	if count("disabled") != 0 || count("allower") != 1 || count("open") != 2 {
		t.Errorf("listed tools: disabled %d allower %d open %d", count("disabled"), count("allower"), count("open"))
	}
	// A tool that did not declare a permission cannot use the callback.
	r := e.exec("open", "plain", map[string]any{"mode": "callback"})
	if res := r.body["result"].(map[string]any); res["ingestErr"] != "permission_denied" || res["completeErr"] != "permission_denied" {
		t.Errorf("undeclared callbacks: %s", r.raw)
	}
}

func TestCallbacksAreScopedToTheCallingTenant(t *testing.T) {
	t.Parallel()
	e := newEnv(t, pluginsDir(t, "echo"), opts{})
	r := e.exec("acme", "echo", map[string]any{"mode": "callback"})
	res := r.body["result"].(map[string]any)
	if r.status != 200 || res["complete"] != "model says hi to acme" || res["ingestErr"] != "" || res["ingestChunks"] != float64(1) {
		t.Fatalf("callback: %d %s", r.status, r.raw)
	}
	if res["embedErr"] != "unavailable" {
		t.Fatalf("embed without an Embedder: %v", res["embedErr"])
	}
	// Tenant bravo's call: the plugin tries the Host it kept from acme's call.
	r = e.exec("bravo", "echo", map[string]any{"mode": "stale"})
	if r.status != 200 || r.body["result"].(map[string]any)["ingest"] != "token_refused" {
		t.Fatalf("stale token: %d %s", r.status, r.raw)
	}
	for _, tn := range e.index.seen() {
		if tn != "acme" {
			t.Fatalf("a callback reached tenant %s", tn)
		}
	}
	if len(e.index.seen()) != 2 {
		t.Fatalf("callbacks seen: %v", e.index.seen())
	}
}

func TestTenantBCannotSeeTenantAsAuditOrMetrics(t *testing.T) {
	t.Parallel()
	e := newEnv(t, pluginsDir(t, "echo"), opts{})
	for range 3 {
		if r := e.exec("acme", "echo", map[string]any{"mode": "ok"}); r.status != 200 {
			t.Fatal(r.raw)
		}
	}
	wantProblem(t, e.exec("acme", "echo", map[string]any{"mode": "fail"}), 502, "EXECUTION_ERROR")
	eventually(t, "acme's metrics", func() bool {
		r := e.do("GET", "/metrics/tools/execution?period=1h", "acme", nil)
		return r.body["totals"].(map[string]any)["executions"] == float64(4)
	})
	r := e.do("GET", "/metrics/tools/execution?period=1h", "acme", nil)
	tool := r.body["tools"].([]any)[0].(map[string]any)
	if tool["tool_name"] != "echo" || tool["successes"] != float64(3) || tool["errors"] != float64(1) || tool["meanDurationMs"].(float64) <= 0 {
		t.Fatalf("acme metrics: %s", r.raw)
	}
	r = e.do("GET", "/metrics/tools/execution", "bravo", nil)
	if r.status != 200 || len(r.body["tools"].([]any)) != 0 || r.body["totals"].(map[string]any)["executions"] != float64(0) {
		t.Fatalf("bravo sees: %s", r.raw)
	}
	if evs := e.audit("bravo"); len(evs) != 0 {
		t.Fatalf("bravo's audit: %v", evs)
	}
	evs, err := e.store.ReadTenant(context.Background(), tenant.MustParse("bravo"), 0, 0)
	if err != nil || len(evs) != 0 {
		t.Fatalf("bravo's events: %v %v", evs, err)
	}
	wantProblem(t, e.do("GET", "/metrics/tools/execution?period=2d", "acme", nil), 400, "invalid_period")
}

func TestLockMismatchIsRefusedAndLogged(t *testing.T) {
	t.Parallel()
	dir := pluginsDir(t, "echo", "plain", "unlisted")
	if _, err := tooling.WriteLock(dir); err != nil {
		t.Fatal(err)
	}
	// Pin plain to another checksum and drop unlisted from the lock.
	b, _ := os.ReadFile(filepath.Join(dir, tooling.LockFileName))
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasSuffix(l, "  plain"):
			l = strings.Repeat("ab", 32) + "  plain"
		case strings.HasSuffix(l, "  unlisted"):
			continue
		}
		lines = append(lines, l)
	}
	if err := os.WriteFile(filepath.Join(dir, tooling.LockFileName), []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, dir, opts{})
	if r := e.exec("acme", "echo", map[string]any{"mode": "ok"}); r.status != 200 {
		t.Fatalf("locked echo: %d %s", r.status, r.raw)
	}
	wantProblem(t, e.exec("acme", "plain", map[string]any{"mode": "ok"}), 404, "TOOL_NOT_FOUND")
	wantProblem(t, e.exec("acme", "unlisted", map[string]any{"mode": "ok"}), 404, "TOOL_NOT_FOUND")
	logs := e.logs.String()
	if !strings.Contains(logs, "tool plugin refused") || !strings.Contains(logs, "checksum does not match") || !strings.Contains(logs, "not listed in plugins.lock") {
		t.Fatalf("refusals not logged: %s", logs)
	}
}

func TestNonPluginBinaryIsRefusedWithAMessage(t *testing.T) {
	t.Parallel()
	dir := pluginsDir(t, "echo")
	if err := os.WriteFile(filepath.Join(dir, "hello"), []byte("#!/bin/sh\necho hello world\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "README.txt"), []byte("not executable"), 0o644); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, dir, opts{})
	r := e.do("GET", "/schema/tools", "acme", nil)
	if len(r.body["tools"].([]any)) != 1 {
		t.Fatalf("tools: %s", r.raw)
	}
	if logs := e.logs.String(); !strings.Contains(logs, "not a Crispy tool plugin") || !strings.Contains(logs, "file=hello") {
		t.Fatalf("no refusal message: %s", logs)
	}
}

func TestRunEndShutsPluginsDown(t *testing.T) {
	t.Parallel()
	e := newEnv(t, pluginsDir(t, "echo", "plain"), opts{})
	var pids []int
	for _, tool := range []string{"echo", "plain"} {
		r := e.exec("acme", tool, map[string]any{"mode": "ok"})
		pids = append(pids, int(r.body["result"].(map[string]any)["pid"].(float64)))
	}
	e.stop()
	for _, pid := range pids {
		eventually(t, fmt.Sprintf("plugin %d ended", pid), func() bool { return syscall.Kill(pid, 0) != nil })
	}
}

func TestThousandConcurrentCallsAcrossTools(t *testing.T) {
	t.Parallel()
	e := newEnv(t, pluginsDir(t, "crowd", "crowd2", "crowd3"), opts{})
	tools := []string{"crowd", "crowd2", "crowd3"}
	var wg sync.WaitGroup
	errs := make(chan error, 1000)
	for i := range 1000 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := e.mod.Execute(context.Background(), tenant.MustParse("acme"), tools[i%3], json.RawMessage(fmt.Sprintf(`{"mode":"ok","n":%d}`, i%10)), "")
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent call failed: %v", err)
	}
	if n := len(e.audit("acme")); n != 2000 {
		t.Fatalf("audit events %d, want 2000", n)
	}
}

func TestEveryCallIsAnExecuteToolSpan(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	e := newEnv(t, pluginsDir(t, "echo"), opts{tracer: tp.Tracer("test")})
	if r := e.exec("acme", "echo", map[string]any{"mode": "ok", "n": 1, "text": "x"}); r.status != 200 {
		t.Fatalf("execute: %d %s", r.status, r.raw)
	}
	if r := e.exec("acme", "nope", map[string]any{}); r.status != 404 {
		t.Fatalf("unknown tool: %d %s", r.status, r.raw)
	}
	spans := rec.Ended()
	if len(spans) != 2 || spans[0].Name() != "execute_tool echo" || spans[0].Status().Code == codes.Error {
		t.Fatalf("spans: %v", spans)
	}
	if spans[1].Name() != "execute_tool nope" || spans[1].Status().Code != codes.Error {
		t.Fatalf("failed call span: %s %v", spans[1].Name(), spans[1].Status())
	}
	found := false
	for _, a := range spans[0].Attributes() {
		if a.Key == "crispy.tenant" && a.Value.AsString() == "acme" {
			found = true
		}
	}
	if !found {
		t.Fatalf("span without the tenant: %v", spans[0].Attributes())
	}
}
