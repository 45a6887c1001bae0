package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/platform/ai/aitest"
)

// meteringServer serves the whole app on embedded defaults with the OpenAI-compatible provider
// pointed at a fake upstream, the summarize plugin, and three tenants on openai:gpt-4o-mini: acme
// and globex without a budget, tight with a daily budget of 50 tokens (less than any model call
// books).
func meteringServer(t *testing.T) (*httptest.Server, *aitest.Upstream) {
	t.Helper()
	srv, up, _ := modelServer(t, buildOptions{}, nil)
	return srv, up
}

// modelServer is meteringServer with build options, and a hook that sees every request the fake
// model upstream receives (nil: none); it also returns the upstream's URL.
func modelServer(t *testing.T, o buildOptions, seen func(*http.Request)) (*httptest.Server, *aitest.Upstream, string) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds a plugin and runs the whole server")
	}
	up := &aitest.Upstream{Tokens: []string{"Refunds ", "take 14 days."}}
	model := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if seen != nil {
			seen(r)
		}
		up.ServeHTTP(w, r)
	}))
	t.Cleanup(model.Close)
	root := t.TempDir()
	plugins := filepath.Join(root, "plugins")
	if out, err := exec.Command("go", "build", "-o", plugins+"/", "../../plugins/summarize").CombinedOutput(); err != nil {
		t.Fatalf("build the summarize plugin: %v\n%s", err, out)
	}
	tenants := filepath.Join(root, "tenants.yaml")
	if err := os.WriteFile(tenants, []byte(`tenants:
  - id: acme
    models: {chat: "openai:gpt-4o-mini"}
  - id: globex
    models: {chat: "openai:gpt-4o-mini"}
  - id: tight
    models: {chat: "openai:gpt-4o-mini"}
    tokenBudget: {daily: 50}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(root, "data")
	cfg := config{DataDir: data, EventStore: "embedded", Search: "embedded", Bus: "gochannel", RateLimitFail: "open",
		PluginsDir: plugins, Tenants: tenants, OpenAIBaseURL: model.URL, OpenAIAPIKey: "sk-test", LogLevel: "error",
		ShutdownTimeout: 5 * time.Second}
	srv, _ := serveApp(t, cfg, o)
	return srv, up, model.URL
}

// sendAs sends one JSON request to srv as tenant tid, with the API key, user id and request id when
// they are not empty, and returns the status and the raw body.
func sendAs(t *testing.T, srv *httptest.Server, tid, key, user, reqID, method, path string, body any) (int, []byte) {
	t.Helper()
	headers := map[string]string{"x-tenant-id": tid}
	for h, v := range map[string]string{"x-api-key": key, "x-user-id": user, "x-request-id": reqID} {
		if v != "" {
			headers[h] = v
		}
	}
	a := send(t, srv.URL, method, path, body, headers)
	return a.status, []byte(a.raw)
}

// callAs sends one JSON request as tenantID and decodes the answer.
func callAs(t *testing.T, srv *httptest.Server, tenantID, method, path string, body any) answer {
	t.Helper()
	return send(t, srv.URL, method, path, body, map[string]string{"x-tenant-id": tenantID})
}

// usageOf polls GET /usage until its requests reach want (the read model applies events
// asynchronously) and returns the last answer.
func usageOf(t *testing.T, srv *httptest.Server, tenantID string, want float64) answer {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		u := callAs(t, srv, tenantID, "GET", "/usage?period=1h", nil)
		if u.status != 200 {
			t.Fatalf("GET /usage as %s: %d %s", tenantID, u.status, u.raw)
		}
		if n, _ := u.body["requests"].(float64); n >= want || time.Now().After(deadline) {
			return u
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Every model call a module makes is metered (issue 15 item 5). Before: only /chat and
// /v1/chat/completions were; a search's rewrite and answer and a tool's model callback were in no
// usage, no cost and no budget, so a tenant refused on /chat kept calling the model through /search
// and /tools. Now each is a usage event of the calling tenant, in /usage and /metrics/cost and
// never in another tenant's, and a tenant over budget gets 429 budget_exceeded on /search and
// /tools without any call reaching the model.
func TestEveryModelCallIsMeteredAndBudgeted(t *testing.T) {
	srv, up := meteringServer(t)
	for _, tn := range []string{"acme", "tight"} {
		if r := callAs(t, srv, tn, "POST", "/ingest", map[string]any{"docId": "refunds", "text": "Refunds are issued within 14 days of a return."}); r.status != 200 && r.status != 201 {
			t.Fatalf("ingest as %s: %d %s", tn, r.status, r.raw)
		}
	}

	before := up.Calls()
	s := callAs(t, srv, "acme", "POST", "/search", map[string]any{"query": "how long do refunds take?", "answer": true})
	if s.status != 200 {
		t.Fatalf("search: %d %s", s.status, s.raw)
	}
	searchCalls := up.Calls() - before
	if searchCalls < 2 {
		t.Fatalf("a search with an answer made %d model calls, want the rewrite and the answer", searchCalls)
	}
	before = up.Calls()
	tool := callAs(t, srv, "acme", "POST", "/tools/execute", map[string]any{"tool_name": "summarize",
		"params": map[string]any{"text": "Refunds are issued within 14 days of a return. Store credit is immediate."}})
	if tool.status != 200 {
		t.Fatalf("tool: %d %s", tool.status, tool.raw)
	}
	toolCalls := up.Calls() - before
	if toolCalls != 1 {
		t.Fatalf("summarize made %d model calls, want 1", toolCalls)
	}

	want := float64(searchCalls + toolCalls)
	u := usageOf(t, srv, "acme", want)
	if n, _ := u.body["requests"].(float64); n != want {
		t.Fatalf("acme's /usage counts %v model calls, want %v (the search's and the tool's): %s", n, want, u.raw)
	}
	if in, _ := u.body["tokensIn"].(float64); in <= 0 {
		t.Fatalf("acme's /usage has no input tokens: %s", u.raw)
	}
	byModel, _ := u.body["byModel"].([]any)
	if len(byModel) != 1 || byModel[0].(map[string]any)["model"] != "openai:gpt-4o-mini" {
		t.Fatalf("acme's usage by model: %s", u.raw)
	}
	c := callAs(t, srv, "acme", "GET", "/metrics/cost?period=1h", nil)
	if cost, _ := c.body["totalCostUsd"].(float64); c.status != 200 || cost <= 0 {
		t.Fatalf("acme's /metrics/cost: %d %s, want a cost for the metered calls", c.status, c.raw)
	}
	// Tenant isolation: globex sees none of acme's calls.
	g := callAs(t, srv, "globex", "GET", "/usage?period=1h", nil)
	if n, _ := g.body["requests"].(float64); g.status != 200 || n != 0 {
		t.Fatalf("globex's /usage: %d %s, want no requests (acme's calls are acme's)", g.status, g.raw)
	}
	gc := callAs(t, srv, "globex", "GET", "/metrics/cost?period=1h", nil)
	if cost, _ := gc.body["totalCostUsd"].(float64); gc.status != 200 || cost != 0 {
		t.Fatalf("globex's /metrics/cost: %d %s, want 0", gc.status, gc.raw)
	}

	// tight's budget (50 tokens a day) takes no model call: every route that needs the model is
	// refused, and nothing reaches the upstream.
	before = up.Calls()
	chat := callAs(t, srv, "tight", "POST", "/chat", map[string]any{"sessionId": "0b0f6a3e-8c1d-4d6e-9a57-3c2b1d0e9f11", "message": "hi", "stream": false})
	search := callAs(t, srv, "tight", "POST", "/search", map[string]any{"query": "how long do refunds take?", "answer": true})
	toolR := callAs(t, srv, "tight", "POST", "/tools/execute", map[string]any{"tool_name": "summarize",
		"params": map[string]any{"text": "Refunds are issued within 14 days of a return. Store credit is immediate."}})
	for name, r := range map[string]answer{"/chat": chat, "/search": search, "/tools/execute": toolR} {
		if r.status != 429 || r.body["code"] != "budget_exceeded" {
			t.Errorf("%s over budget: %d %s, want 429 budget_exceeded", name, r.status, r.raw)
		}
	}
	if n := up.Calls() - before; n != 0 {
		t.Fatalf("a tenant over budget made %d model calls", n)
	}
}
