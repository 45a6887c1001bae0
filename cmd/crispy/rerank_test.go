package main

import (
	"bytes"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// serve wires the reranker and the upload limit (issue 16 items 3 and 4): with CRISPY_RERANK_MODEL
// naming a Cohere model and CRISPY_COHERE_BASE_URL its server, a search is reordered by it (the
// tenant names none: the server's default), and POST /documents takes an upload over the API's
// 1 MiB up to --upload-max-mb, 413 beyond.
func TestServeWiresTheRerankerAndTheUploadLimit(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var models []string
	cohere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Model     string   `json:"model"`
			Documents []string `json:"documents"`
			TopN      int      `json:"top_n"`
		}
		_ = json.NewDecoder(r.Body).Decode(&req)
		mu.Lock()
		models = append(models, req.Model+" "+r.URL.Path+" "+r.Header.Get("Authorization"))
		mu.Unlock()
		type res struct {
			Index int     `json:"index"`
			Score float64 `json:"relevance_score"`
		}
		var out []res
		for i, d := range req.Documents {
			if strings.Contains(d, "garage") {
				out = append([]res{{i, 0.91}}, out...)
			} else {
				out = append(out, res{i, 0.01})
			}
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"results": out[:min(req.TopN, len(out))]})
	}))
	defer cohere.Close()

	data := t.TempDir()
	cfg := embeddedConfig(data)
	cfg.RerankModel, cfg.CohereBaseURL, cfg.CohereAPIKey, cfg.RerankTimeout, cfg.UploadMaxMB = "cohere:rerank-test", cohere.URL+"/v2", "co-key", 2*time.Second, 2
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	srv, stop := serveApp(t, cfg, buildOptions{})
	defer stop()

	for id, text := range map[string]string{"refunds": "Refunds are issued within fourteen days of a returned parcel.",
		"parking": "The parking garage opens at seven; visitors park on level minus two."} {
		if r := call(t, srv, "POST", "/ingest", map[string]any{"docId": id, "text": text}); r.status != 200 {
			t.Fatalf("ingest %s: %d %s", id, r.status, r.raw)
		}
	}
	var r answer
	waitUntil(t, "the search index has caught up", func() bool {
		r = call(t, srv, "POST", "/search", map[string]any{"query": "when are refunds issued for a parcel", "answer": false, "topK": 2})
		return r.status != 503
	})
	ss, _ := r.body["sources"].([]any)
	if r.status != 200 || r.body["reranked"] != true || len(ss) != 2 || ss[0].(map[string]any)["docId"] != "parking" {
		t.Fatalf("search with the server's reranker: %d %s", r.status, r.raw)
	}
	mu.Lock()
	got := append([]string(nil), models...)
	mu.Unlock()
	if len(got) != 1 || got[0] != "rerank-test /v2/rerank Bearer co-key" {
		t.Fatalf("rerank calls %q", got)
	}

	upload := func(size int) answer {
		var b bytes.Buffer
		w := multipart.NewWriter(&b)
		fw, _ := w.CreateFormFile("file", "site.html")
		_, _ = io.WriteString(fw, "<html><body><p>The lighthouse keeper polishes the lantern nightly.</p>")
		_, _ = io.WriteString(fw, strings.Repeat("<div><span></span></div>\n", size/25))
		_, _ = io.WriteString(fw, "</body></html>")
		_ = w.Close()
		return send(t, srv.URL, "POST", "/documents", b.String(), map[string]string{"content-type": w.FormDataContentType()})
	}
	if u := upload(3 << 19); u.status != 200 || u.body["docId"] != "site.html" {
		t.Fatalf("a 1.5 MiB upload (over the 1 MiB JSON limit, under --upload-max-mb 2): %d %s", u.status, u.raw)
	}
	if u := upload(3 << 20); u.status != 413 {
		t.Fatalf("a 3 MiB upload: %d %s", u.status, u.raw)
	}
}

// The admin API refuses a tenant whose models.rerank this server cannot call, naming the field,
// as it does for chat models; one it can call is recorded.
func TestAdminRefusesAnUnservedReranker(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	cfg := embeddedConfig(data)
	cfg.AdminKeySHA256 = testAdminHash()
	srv, stop := serveApp(t, cfg, buildOptions{})
	defer stop()
	admin := map[string]string{"admin": testAdminKey}
	r := send(t, srv.URL, "POST", "/admin/tenants", map[string]any{"id": "acme", "models": map[string]any{"rerank": "workers-ai:@cf/baai/bge-reranker-base"}}, admin)
	if r.status != 400 || !strings.Contains(r.raw, "body.models.rerank") || !strings.Contains(r.raw, "account id") {
		t.Fatalf("create with a reranker of an unconfigured provider: %d %s", r.status, r.raw)
	}
	if r := send(t, srv.URL, "POST", "/admin/tenants", map[string]any{"id": "acme", "models": map[string]any{"rerank": "cohere:rerank-v3.5"}}, admin); r.status != 201 {
		t.Fatalf("create with a Cohere reranker: %d %s", r.status, r.raw)
	}
}
