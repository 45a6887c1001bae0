package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// greedyUpstream is an OpenAI-compatible model that writes every token max_tokens allows and bills
// them (10 prompt tokens), recording each max_tokens it was sent: the worst case a budget must hold
// against.
type greedyUpstream struct {
	mu   sync.Mutex
	sent []int
}

func (g *greedyUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body struct {
		MaxTokens int `json:"max_tokens"`
	}
	raw, _ := io.ReadAll(r.Body)
	_ = json.Unmarshal(raw, &body)
	n := body.MaxTokens
	if n <= 0 {
		n = 5000
	}
	g.mu.Lock()
	g.sent = append(g.sent, body.MaxTokens)
	g.mu.Unlock()
	w.Header().Set("content-type", "application/json")
	fmt.Fprintf(w, `{"id":"c","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":%q},"finish_reason":"length"}],"usage":{"prompt_tokens":10,"completion_tokens":%d,"total_tokens":%d}}`,
		strings.Repeat("w ", n), n, n+10)
}

func (g *greedyUpstream) maxSent() []int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]int(nil), g.sent...)
}

// A key made through the admin API with a USD budget holds through the whole server: its /v1 calls
// to openai:gpt-4o-mini (list price $0.15 / $0.60 per million tokens) are capped at what its dollars
// leave, then refused with 429 budget_exceeded, and concurrent calls cannot take it past the
// budget; a key without a budget and another tenant's key are not held by it.
func TestKeyUSDBudgetThroughTheServer(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole server")
	}
	g := &greedyUpstream{}
	model := httptest.NewServer(g)
	t.Cleanup(model.Close)
	root := t.TempDir()
	tenants := filepath.Join(root, "tenants.yaml")
	if err := os.WriteFile(tenants, []byte("tenants:\n  - id: acme\n    models: {chat: \"openai:gpt-4o-mini\"}\n  - id: globex\n    models: {chat: \"openai:gpt-4o-mini\"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := config{DataDir: filepath.Join(root, "data"), EventStore: "embedded", Search: "embedded", Bus: "gochannel", RateLimitFail: "open",
		Tenants: tenants, OpenAIBaseURL: model.URL, OpenAIAPIKey: "sk-test", LogLevel: "error", ShutdownTimeout: 5 * time.Second,
		AdminKeySHA256: testAdminHash()}
	srv, _ := serveApp(t, cfg, buildOptions{})
	newKey := func(tn string, body map[string]any) string {
		t.Helper()
		a := send(t, srv.URL, "POST", "/admin/tenants/"+tn+"/keys", body, map[string]string{"admin": testAdminKey})
		if a.status != 201 {
			t.Fatalf("create key: %d %s", a.status, a.raw)
		}
		return a.body["secret"].(string)
	}
	// $0.0009 pays for 1,500 completion tokens at $0.60 per million.
	capped := newKey("acme", map[string]any{"budget": map[string]any{"dailyUsd": 0.0009}})
	free := newKey("acme", map[string]any{})
	other := newKey("globex", map[string]any{"budget": map[string]any{"dailyUsd": 0.0009}})
	call := func(key string) answer {
		return send(t, srv.URL, "POST", "/v1/chat/completions", map[string]any{"model": "default", "max_tokens": 1000,
			"messages": []map[string]string{{"role": "user", "content": "hi"}}}, map[string]string{"x-api-key": key})
	}
	if a := call(capped); a.status != 200 {
		t.Fatalf("first call: %d %s", a.status, a.raw)
	}
	// Two at once: together they may not pass what the first left (about 498 tokens).
	var wg sync.WaitGroup
	res := make([]answer, 2)
	for i := range res {
		wg.Add(1)
		go func() { defer wg.Done(); res[i] = call(capped) }()
	}
	wg.Wait()
	sent := g.maxSent()
	spent := 0
	for _, n := range sent {
		spent += n
	}
	if len(sent) < 2 || sent[0] != 1000 || spent > 1500 {
		t.Fatalf("max_tokens sent upstream for the key: %v (%d tokens, $%.6f) under a $0.0009 budget", sent, spent, float64(spent)*0.6e-6)
	}
	t.Logf("max_tokens sent for the key: %v", sent)
	if a := call(capped); a.status != 429 || !strings.Contains(a.raw, "budget_exceeded") || !strings.Contains(a.raw, "USD") {
		t.Fatalf("call past the budget: %d %s", a.status, a.raw)
	}
	for _, k := range []string{free, other} {
		if a := call(k); a.status != 200 {
			t.Fatalf("a key the budget does not hold: %d %s", a.status, a.raw)
		}
	}
}
