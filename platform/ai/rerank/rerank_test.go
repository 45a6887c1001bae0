package rerank_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/platform/ai/rerank"
)

// Answers recorded from the providers' documentation (the shapes their servers send, extra fields
// included, which the client must ignore).
const (
	// Cohere v2 POST /v2/rerank.
	cohereAnswer = `{"results":[{"index":2,"relevance_score":0.999071},{"index":0,"relevance_score":0.32713068}],` +
		`"id":"07734bd2-2473-4f07-94e1-0d9f0e6843cf","meta":{"api_version":{"version":"2","is_experimental":false},"billed_units":{"search_units":1}}}`
	// vLLM's OpenAI-compatible POST /v1/rerank (Jina's format: documents echoed, usage counted).
	vllmAnswer = `{"id":"rerank-5b0f","model":"BAAI/bge-reranker-base","usage":{"total_tokens":56},"results":[` +
		`{"index":1,"document":{"text":"Refunds are issued within 14 days."},"relevance_score":0.99853515625},` +
		`{"index":0,"document":{"text":"Parking is free."},"relevance_score":0.0005860328674316406}]}`
	// Workers AI POST /accounts/{id}/ai/run/@cf/baai/bge-reranker-base.
	workersAnswer = `{"result":{"response":[{"id":1,"score":0.9978},{"id":2,"score":0.0183},{"id":0,"score":0.0021}]},"success":true,"errors":[],"messages":[]}`
)

type recorded struct {
	path, auth string
	body       map[string]any
}

func server(t *testing.T, status int, answer string) (*httptest.Server, *[]recorded) {
	t.Helper()
	var got []recorded
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Errorf("request body is not JSON: %q", b)
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type %q", ct)
		}
		got = append(got, recorded{r.URL.Path, r.Header.Get("Authorization"), m})
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, answer)
	}))
	t.Cleanup(s.Close)
	return s, &got
}

func resolve(t *testing.T, cfg rerank.Config, spec string) rerank.Reranker {
	t.Helper()
	r, err := rerank.NewResolver(cfg)
	if err != nil {
		t.Fatal(err)
	}
	x, err := r.Resolve(spec)
	if err != nil || x == nil {
		t.Fatalf("Resolve(%q) = %v, %v", spec, x, err)
	}
	return x
}

func TestCohereWireFormat(t *testing.T) {
	s, got := server(t, 200, cohereAnswer)
	x := resolve(t, rerank.Config{Cohere: rerank.HTTPConfig{BaseURL: s.URL + "/v2", APIKey: "co-key"}}, "cohere:rerank-v3.5")
	res, err := x.Rerank(context.Background(), "refund delay", []string{"a", "b", "c"}, 2)
	if err != nil {
		t.Fatal(err)
	}
	want := []rerank.Scored{{Index: 2, Score: 0.999071}, {Index: 0, Score: 0.32713068}}
	if !reflect.DeepEqual(res.Ranked, want) || res.Tokens != 0 {
		t.Fatalf("got %+v tokens %d, want %+v and no tokens (Cohere bills search units)", res.Ranked, res.Tokens, want)
	}
	r := (*got)[0]
	if r.path != "/v2/rerank" || r.auth != "Bearer co-key" {
		t.Fatalf("request to %s with %q", r.path, r.auth)
	}
	wantBody := map[string]any{"model": "rerank-v3.5", "query": "refund delay", "documents": []any{"a", "b", "c"}, "top_n": float64(2)}
	if !reflect.DeepEqual(r.body, wantBody) {
		t.Fatalf("body %v, want %v", r.body, wantBody)
	}
	if x.Model() != "cohere:rerank-v3.5" {
		t.Fatalf("model %q", x.Model())
	}
}

func TestOpenAICompatibleWireFormat(t *testing.T) {
	s, got := server(t, 200, vllmAnswer)
	x := resolve(t, rerank.Config{OpenAI: rerank.HTTPConfig{BaseURL: s.URL + "/v1/"}}, "openai:BAAI/bge-reranker-base")
	res, err := x.Rerank(context.Background(), "how long do refunds take", []string{"Parking is free.", "Refunds are issued within 14 days."}, 5)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Ranked) != 2 || res.Ranked[0].Index != 1 || res.Ranked[1].Index != 0 || res.Tokens != 56 {
		t.Fatalf("got %+v tokens %d", res.Ranked, res.Tokens)
	}
	r := (*got)[0]
	if r.path != "/v1/rerank" || r.auth != "" || r.body["top_n"] != float64(2) || r.body["model"] != "BAAI/bge-reranker-base" {
		t.Fatalf("request %+v (top_n is clamped to the documents sent)", r)
	}
}

func TestWorkersAIWireFormat(t *testing.T) {
	s, got := server(t, 200, workersAnswer)
	x := resolve(t, rerank.Config{WorkersAI: rerank.WorkersAIConfig{AccountID: "acc", APIToken: "cf-token", BaseURL: s.URL}}, "workers-ai:@cf/baai/bge-reranker-base")
	res, err := x.Rerank(context.Background(), "q", []string{"zero", "one", "two"}, 2)
	if err != nil {
		t.Fatal(err)
	}
	want := []rerank.Scored{{Index: 1, Score: 0.9978}, {Index: 2, Score: 0.0183}}
	if !reflect.DeepEqual(res.Ranked, want) {
		t.Fatalf("got %+v, want %+v (top 2 kept)", res.Ranked, want)
	}
	r := (*got)[0]
	if r.path != "/accounts/acc/ai/run/@cf/baai/bge-reranker-base" || r.auth != "Bearer cf-token" {
		t.Fatalf("request to %s with %q", r.path, r.auth)
	}
	wantBody := map[string]any{"query": "q", "top_k": float64(2),
		"contexts": []any{map[string]any{"text": "zero"}, map[string]any{"text": "one"}, map[string]any{"text": "two"}}}
	if !reflect.DeepEqual(r.body, wantBody) {
		t.Fatalf("body %v, want %v", r.body, wantBody)
	}
	if x.Model() != "workers-ai:@cf/baai/bge-reranker-base" {
		t.Fatalf("model %q", x.Model())
	}
}

func TestWorkersAIThroughGateway(t *testing.T) {
	s, got := server(t, 200, workersAnswer)
	x := resolve(t, rerank.Config{WorkersAI: rerank.WorkersAIConfig{AccountID: "acc", GatewayID: "gw", GatewayURL: s.URL}}, "workers-ai:@cf/baai/bge-reranker-base")
	if _, err := x.Rerank(context.Background(), "q", []string{"a", "b", "c"}, 3); err != nil {
		t.Fatal(err)
	}
	if p := (*got)[0].path; p != "/acc/gw/workers-ai/@cf/baai/bge-reranker-base" {
		t.Fatalf("path %s", p)
	}
}

// A server answering raw cross-encoder logits (text-embeddings-inference with raw_scores, some
// bge deployments) is mapped onto [0, 1] by the logistic function, order kept.
func TestLogitsAreMappedOntoZeroOne(t *testing.T) {
	s, _ := server(t, 200, `{"results":[{"index":0,"relevance_score":-4.2},{"index":1,"relevance_score":3.1}]}`)
	x := resolve(t, rerank.Config{OpenAI: rerank.HTTPConfig{BaseURL: s.URL}}, "openai:m")
	res, err := x.Rerank(context.Background(), "q", []string{"a", "b"}, 2)
	if err != nil {
		t.Fatal(err)
	}
	if res.Ranked[0].Index != 1 || math.Abs(res.Ranked[0].Score-1/(1+math.Exp(-3.1))) > 1e-9 || math.Abs(res.Ranked[1].Score-1/(1+math.Exp(4.2))) > 1e-9 {
		t.Fatalf("got %+v", res.Ranked)
	}
}

func TestProviderFailures(t *testing.T) {
	cases := []struct {
		name        string
		status      int
		answer      string
		unavailable bool
	}{
		{"server error", 503, `{"message":"overloaded"}`, true},
		{"rate limited", 429, `{"message":"too many requests"}`, true},
		{"bad request", 400, `{"message":"invalid model"}`, false},
		{"index out of range", 200, `{"results":[{"index":7,"relevance_score":0.5}]}`, false},
		{"index repeated", 200, `{"results":[{"index":0,"relevance_score":0.5},{"index":0,"relevance_score":0.4}]}`, false},
		{"no score", 200, `{"results":[{"index":0}]}`, false},
		{"not JSON", 200, `<html>`, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, _ := server(t, c.status, c.answer)
			x := resolve(t, rerank.Config{Cohere: rerank.HTTPConfig{BaseURL: s.URL}}, "cohere:m")
			_, err := x.Rerank(context.Background(), "q", []string{"a", "b"}, 2)
			if err == nil {
				t.Fatal("no error")
			}
			if errors.Is(err, rerank.ErrUnavailable) != c.unavailable {
				t.Fatalf("%v: unavailable %v, want %v", err, !c.unavailable, c.unavailable)
			}
		})
	}
	t.Run("workers-ai error envelope", func(t *testing.T) {
		s, _ := server(t, 200, `{"result":null,"success":false,"errors":[{"code":5006,"message":"Error: oneOf at '/' not met"}]}`)
		x := resolve(t, rerank.Config{WorkersAI: rerank.WorkersAIConfig{AccountID: "a", BaseURL: s.URL}}, "workers-ai:@cf/baai/bge-reranker-base")
		if _, err := x.Rerank(context.Background(), "q", []string{"a"}, 1); err == nil || !strings.Contains(err.Error(), "oneOf") {
			t.Fatalf("error %v", err)
		}
	})
}

func TestCallerDeadlineBoundsTheCall(t *testing.T) {
	release := make(chan struct{})
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer s.Close()
	defer close(release)
	x := resolve(t, rerank.Config{Cohere: rerank.HTTPConfig{BaseURL: s.URL}}, "cohere:m")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := x.Rerank(ctx, "q", []string{"a"}, 1)
	if !errors.Is(err, rerank.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v: want unavailable, deadline exceeded", err)
	}
}

func TestResolve(t *testing.T) {
	r, err := rerank.NewResolver(rerank.Config{})
	if err != nil {
		t.Fatal(err)
	}
	for _, spec := range []string{"", "none"} {
		if x, err := r.Resolve(spec); x != nil || err != nil {
			t.Fatalf("Resolve(%q) = %v, %v: want no reranker", spec, x, err)
		}
	}
	for _, spec := range []string{"rerank-v3.5", "acme:m", "workers-ai:@cf/baai/bge-reranker-base" /* no account */} {
		if _, err := r.Resolve(spec); !errors.Is(err, rerank.ErrUnknownModel) {
			t.Fatalf("Resolve(%q): %v, want ErrUnknownModel", spec, err)
		}
	}
	if _, err := rerank.NewResolver(rerank.Config{Default: "acme:m"}); err == nil {
		t.Fatal("a default no provider serves was accepted")
	}
	d, err := rerank.NewResolver(rerank.Config{Default: "cohere:rerank-v3.5"})
	if err != nil {
		t.Fatal(err)
	}
	if x, _ := d.Resolve(""); x == nil || x.Model() != "cohere:rerank-v3.5" {
		t.Fatalf("default: %v", x)
	}
	if x, _ := d.Resolve("none"); x != nil {
		t.Fatal("none does not turn the default off")
	}
}
