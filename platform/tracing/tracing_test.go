package tracing_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/crispy-enigma/crispy/platform/tracing"
)

func attrs(kv []attribute.KeyValue) map[string]attribute.Value {
	m := map[string]attribute.Value{}
	for _, a := range kv {
		m[string(a.Key)] = a.Value
	}
	return m
}

func TestModelSpanFollowsGenAIConventions(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	p := tracing.NewWithProcessor(tracing.Config{}, rec)
	ctx, span := tracing.StartModelSpan(context.Background(), p.Tracer(), tracing.ModelCall{Model: "openai:gpt-4o-mini", MaxTokens: 256, Tenant: "acme"})
	_ = ctx
	tracing.EndModelSpan(span, "openai:gpt-4o-mini", tracing.ModelOutcome{ResponseModel: "gpt-4o-mini-2024-07-18", InputTokens: 12, OutputTokens: 34, FinishReason: "stop"})
	ended := rec.Ended()
	if len(ended) != 1 {
		t.Fatalf("ended spans = %d, want 1", len(ended))
	}
	s := ended[0]
	if s.Name() != "chat gpt-4o-mini" {
		t.Errorf("span name %q", s.Name())
	}
	a := attrs(s.Attributes())
	want := map[string]any{
		"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.system": "openai",
		"gen_ai.request.model": "gpt-4o-mini", "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
		"gen_ai.usage.input_tokens": int64(12), "gen_ai.usage.output_tokens": int64(34), "gen_ai.request.max_tokens": int64(256),
		"crispy.tenant": "acme",
	}
	for k, v := range want {
		got, ok := a[k]
		if !ok {
			t.Errorf("missing attribute %s", k)
			continue
		}
		if got.AsInterface() != v {
			t.Errorf("%s = %v, want %v", k, got.AsInterface(), v)
		}
	}
	if s.Status().Code == codes.Error {
		t.Errorf("successful call marked as error")
	}
}

func TestModelSpanRecordsFailure(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	p := tracing.NewWithProcessor(tracing.Config{}, rec)
	_, span := tracing.StartModelSpan(context.Background(), p.Tracer(), tracing.ModelCall{Model: "workers-ai:@cf/meta/llama-3.1-8b-instruct"})
	tracing.EndModelSpan(span, "workers-ai:@cf/meta/llama-3.1-8b-instruct", tracing.ModelOutcome{Err: errors.New("upstream 503"), ErrorType: "503"})
	s := rec.Ended()[0]
	a := attrs(s.Attributes())
	if a["gen_ai.request.model"].AsString() != "@cf/meta/llama-3.1-8b-instruct" || a["gen_ai.provider.name"].AsString() != "cloudflare.workers_ai" {
		t.Errorf("attributes %v", a)
	}
	if s.Status().Code != codes.Error || a["error.type"].AsString() != "503" {
		t.Errorf("status %v error.type %v", s.Status(), a["error.type"])
	}
}

func TestNoEndpointIsNoop(t *testing.T) {
	t.Parallel()
	p, err := tracing.New(context.Background(), tracing.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Enabled() {
		t.Fatal("tracing enabled without an endpoint")
	}
	_, span := p.Tracer().Start(context.Background(), "x")
	if span.SpanContext().IsValid() {
		t.Error("no-op tracer produced a recording span")
	}
	span.End()
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestBadEndpointRefused(t *testing.T) {
	t.Parallel()
	for _, ep := range []string{"ftp://collector:4318", "not a url", "http://"} {
		if _, err := tracing.New(context.Background(), tracing.Config{Endpoint: ep}); err == nil {
			t.Errorf("endpoint %q accepted", ep)
		}
	}
}

// TestExportsOverOTLPHTTP runs the real exporter against an httptest collector and checks that a span
// arrives at /v1/traces as protobuf.
func TestExportsOverOTLPHTTP(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var paths []string
	var bodies [][]byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		paths = append(paths, r.URL.Path+" "+r.Header.Get("Content-Type"))
		bodies = append(bodies, b)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	p, err := tracing.New(context.Background(), tracing.Config{Endpoint: srv.URL, ServiceName: "crispy-test"})
	if err != nil {
		t.Fatal(err)
	}
	if !p.Enabled() || p.Endpoint() != srv.URL+"/v1/traces" {
		t.Fatalf("enabled %v endpoint %q", p.Enabled(), p.Endpoint())
	}
	_, span := tracing.StartModelSpan(context.Background(), p.Tracer(), tracing.ModelCall{Model: "builtin:offline"})
	tracing.EndModelSpan(span, "builtin:offline", tracing.ModelOutcome{InputTokens: 1, OutputTokens: 2})
	if err := p.Shutdown(context.Background()); err != nil { // flushes the batch
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(paths) == 0 {
		t.Fatal("collector received nothing")
	}
	if paths[0] != "/v1/traces application/x-protobuf" {
		t.Errorf("export went to %q", paths[0])
	}
	if !containsBytes(bodies[0], "gen_ai.request.model") || !containsBytes(bodies[0], "crispy-test") {
		t.Errorf("export body lacks the span's attributes")
	}
}

func containsBytes(b []byte, s string) bool {
	for i := 0; i+len(s) <= len(b); i++ {
		if string(b[i:i+len(s)]) == s {
			return true
		}
	}
	return false
}

func TestToolAndInternalSpans(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	p := tracing.NewWithProcessor(tracing.Config{}, rec)
	ctx, parent := tracing.StartToolSpan(context.Background(), p.Tracer(), "summarize", "acme")
	_, child := tracing.StartSpan(ctx, p.Tracer(), "search.knn", "acme", attribute.Int("k", 5))
	tracing.End(child, nil, "")
	tracing.End(parent, errors.New("boom"), "EXECUTION_ERROR")
	ended := rec.Ended()
	if len(ended) != 2 {
		t.Fatalf("%d spans", len(ended))
	}
	c, pa := ended[0], ended[1]
	if c.Parent().SpanID() != pa.SpanContext().SpanID() {
		t.Error("index span is not a child of the tool span")
	}
	a := attrs(pa.Attributes())
	if pa.Name() != "execute_tool summarize" || a["gen_ai.tool.name"].AsString() != "summarize" || a["error.type"].AsString() != "EXECUTION_ERROR" || pa.Status().Code != codes.Error {
		t.Errorf("tool span %s %v %v", pa.Name(), a, pa.Status())
	}
	if attrs(c.Attributes())["crispy.tenant"].AsString() != "acme" {
		t.Error("internal span lacks the tenant")
	}
}
