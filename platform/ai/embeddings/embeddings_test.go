package embeddings_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/crispy-enigma/crispy/platform/ai/embeddings"
)

func dot(a, b []float32) float64 {
	var s float64
	for i := range a {
		s += float64(a[i]) * float64(b[i])
	}
	return s
}

func TestHashedRanksSharedWordsFirst(t *testing.T) {
	t.Parallel()
	h := embeddings.NewHashed(embeddings.HashedConfig{})
	ctx := context.Background()
	vs, err := h.Embed(ctx, []string{
		"How do I reset my router password?",
		"To reset the password of your router, hold the reset button for ten seconds.",
		"Our bakery sells sourdough bread and croissants every morning.",
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range vs {
		if len(v) != 384 {
			t.Fatalf("vector %d has %d dims", i, len(v))
		}
		if n := dot(v, v); math.Abs(n-1) > 1e-4 {
			t.Fatalf("vector %d norm² %v, want 1", i, n)
		}
	}
	rel, irr := dot(vs[0], vs[1]), dot(vs[0], vs[2])
	if rel <= irr+0.1 {
		t.Fatalf("shared-word passage %.3f not clearly above unrelated %.3f", rel, irr)
	}
}

func TestHashedIsDeterministicAndMorphologyAware(t *testing.T) {
	t.Parallel()
	h := embeddings.NewHashed(embeddings.HashedConfig{Dimension: 256})
	a, b := h.Vector("supersonic wings"), h.Vector("supersonic wings")
	for i := range a {
		if a[i] != b[i] {
			t.Fatal("not deterministic")
		}
	}
	if got := h.Dimension(); got != 256 || len(a) != 256 {
		t.Fatalf("dimension %d/%d", got, len(a))
	}
	if dot(h.Vector("wing"), h.Vector("wings")) < 0.5 {
		t.Fatal("inflections should be close")
	}
	if z := h.Vector("the of and"); math.Abs(dot(z, z)-1) > 1e-6 || dot(z, h.Vector("")) < 0.999 {
		t.Fatal("stopwords-only and empty text should embed to the same unit vector")
	}
}

func TestOpenAIWireFormatAndBatching(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var sizes []int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/embeddings" {
			http.Error(w, "wrong route "+r.URL.Path, 404)
			return
		}
		if r.Header.Get("Authorization") != "Bearer sk-test" {
			http.Error(w, `{"error":{"message":"bad key"}}`, 401)
			return
		}
		var req struct {
			Model          string   `json:"model"`
			Input          []string `json:"input"`
			EncodingFormat string   `json:"encoding_format"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Model != "text-embedding-3-small" || req.EncodingFormat != "float" {
			http.Error(w, "bad body", 400)
			return
		}
		mu.Lock()
		sizes = append(sizes, len(req.Input))
		mu.Unlock()
		// Answer out of order, as the API may: index says where each belongs.
		type item struct {
			Object    string    `json:"object"`
			Index     int       `json:"index"`
			Embedding []float32 `json:"embedding"`
		}
		var data []item
		for i := len(req.Input) - 1; i >= 0; i-- {
			data = append(data, item{"embedding", i, []float32{float32(len(req.Input[i])), 1, 0}})
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"object": "list", "data": data, "model": req.Model,
			"usage": map[string]int{"prompt_tokens": 5, "total_tokens": 5}})
	}))
	defer srv.Close()
	e, err := embeddings.NewOpenAI(embeddings.OpenAIConfig{BaseURL: srv.URL + "/v1/", APIKey: "sk-test", Model: "text-embedding-3-small", BatchSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	texts := []string{"a", "bb", "ccc", "dddd", "eeeee"}
	vs, err := e.Embed(context.Background(), texts)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range vs {
		if int(v[0]) != len(texts[i]) {
			t.Fatalf("vector %d out of order: %v", i, v)
		}
	}
	if len(sizes) != 3 || sizes[0] != 2 || sizes[2] != 1 {
		t.Fatalf("batches %v, want [2 2 1]", sizes)
	}
	if e.Model() != "openai:text-embedding-3-small" || e.Dimension() != 3 {
		t.Fatalf("model %s dim %d", e.Model(), e.Dimension())
	}
}

func TestProviderFailuresAreClassified(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if strings.Contains(r.URL.Path, "down") {
			http.Error(w, "overloaded", 503)
			return
		}
		http.Error(w, `{"error":{"message":"model not found"}}`, 404)
	}))
	defer srv.Close()
	down, _ := embeddings.NewOpenAI(embeddings.OpenAIConfig{BaseURL: srv.URL + "/down", Model: "m"})
	if _, err := down.Embed(context.Background(), []string{"x"}); !errors.Is(err, embeddings.ErrUnavailable) {
		t.Fatalf("503 should be ErrUnavailable, got %v", err)
	}
	bad, _ := embeddings.NewOpenAI(embeddings.OpenAIConfig{BaseURL: srv.URL + "/v1", Model: "m"})
	_, err := bad.Embed(context.Background(), []string{"x"})
	if err == nil || errors.Is(err, embeddings.ErrUnavailable) || !strings.Contains(err.Error(), "model not found") {
		t.Fatalf("404 should be a plain error with the provider's message, got %v", err)
	}
	srv.Close()
	if _, err := bad.Embed(context.Background(), []string{"x"}); !errors.Is(err, embeddings.ErrUnavailable) {
		t.Fatalf("unreachable should be ErrUnavailable, got %v", err)
	}
}

func workersAIServer(t *testing.T, wantPath string, batches *[]int) *httptest.Server {
	var mu sync.Mutex
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != wantPath || r.Header.Get("Authorization") != "Bearer cf-token" {
			w.WriteHeader(400)
			_ = json.NewEncoder(w).Encode(map[string]any{"success": false, "result": nil,
				"errors": []map[string]any{{"code": 7000, "message": "No route for that URI: " + r.URL.Path}}, "messages": []any{}})
			return
		}
		var req struct {
			Text []string `json:"text"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			w.WriteHeader(400)
			return
		}
		mu.Lock()
		*batches = append(*batches, len(req.Text))
		mu.Unlock()
		data := make([][]float32, len(req.Text))
		for i, s := range req.Text {
			data[i] = make([]float32, 384)
			data[i][0] = float32(len(s))
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"result": map[string]any{"shape": []int{len(req.Text), 384}, "data": data, "pooling": "mean"},
			"success": true, "errors": []any{}, "messages": []any{}})
	}))
}

func TestWorkersAIDirectAndGateway(t *testing.T) {
	t.Parallel()
	model := "@cf/baai/bge-small-en-v1.5"
	var direct, gw []int
	s1 := workersAIServer(t, "/client/v4/accounts/acc1/ai/run/"+model, &direct)
	defer s1.Close()
	e, err := embeddings.NewWorkersAI(embeddings.WorkersAIConfig{AccountID: "acc1", APIToken: "cf-token", Model: model, BaseURL: s1.URL + "/client/v4", BatchSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	texts := make([]string, 150)
	for i := range texts {
		texts[i] = strings.Repeat("x", i+1)
	}
	vs, err := e.Embed(context.Background(), texts)
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 150 || int(vs[149][0]) != 150 || len(direct) != 2 || direct[0] != 100 {
		t.Fatalf("got %d vectors, batches %v", len(vs), direct)
	}
	if e.Dimension() != 384 || e.Model() != "workers-ai:"+model {
		t.Fatalf("dim %d model %s", e.Dimension(), e.Model())
	}

	s2 := workersAIServer(t, "/v1/acc1/gw1/workers-ai/"+model, &gw)
	defer s2.Close()
	g, _ := embeddings.NewWorkersAI(embeddings.WorkersAIConfig{AccountID: "acc1", APIToken: "cf-token", Model: model, GatewayID: "gw1", GatewayURL: s2.URL + "/v1"})
	if _, err := g.Embed(context.Background(), []string{"hello"}); err != nil || len(gw) != 1 {
		t.Fatalf("gateway: %v %v", err, gw)
	}
	wrong, _ := embeddings.NewWorkersAI(embeddings.WorkersAIConfig{AccountID: "other", APIToken: "cf-token", Model: model, BaseURL: s1.URL + "/client/v4"})
	if _, err := wrong.Embed(context.Background(), []string{"x"}); err == nil || !strings.Contains(err.Error(), "No route") {
		t.Fatalf("want the API's error message, got %v", err)
	}
}

func TestResolver(t *testing.T) {
	t.Parallel()
	r, err := embeddings.NewResolver(embeddings.Config{OpenAI: embeddings.OpenAIConfig{BaseURL: "http://127.0.0.1:1/v1"}})
	if err != nil {
		t.Fatal(err)
	}
	if r.Default().Model() != embeddings.HashedModelID {
		t.Fatalf("default %s", r.Default().Model())
	}
	if e, err := r.Resolve("openai:text-embedding-3-small"); err != nil || e.Model() != "openai:text-embedding-3-small" {
		t.Fatalf("%v %v", e, err)
	}
	for _, bad := range []string{"nope", "acme:x", "builtin:other", "workers-ai:@cf/baai/bge-small-en-v1.5"} {
		if _, err := r.Resolve(bad); err == nil {
			t.Fatalf("%s should not resolve", bad)
		}
	}
	if _, err := embeddings.NewResolver(embeddings.Config{Default: "acme:x"}); err == nil {
		t.Fatal("an unknown default should fail")
	}
}
