package main

import (
	"bytes"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// One trace per request (issue 15 item 4). Before: every span was its own trace (no server span,
// an incoming traceparent was ignored, none was sent upstream). Now a request with a W3C
// traceparent is one trace under the caller's span: the server span is its child, and the guard,
// the store appends, the tool call and the model attempt the tool's callback made are all in it;
// the model upstream receives a traceparent of the same trace.
func TestOneTracePerRequest(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	var mu sync.Mutex
	var upstreamParents []string
	srv, _, _ := modelServer(t, buildOptions{spans: rec}, func(r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		upstreamParents = append(upstreamParents, r.Header.Get("traceparent"))
	})

	const traceID, callerSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	body := `{"tool_name":"summarize","params":{"text":"Refunds are issued within 14 days of a return. Store credit is immediate."}}`
	req, _ := http.NewRequest("POST", srv.URL+"/tools/execute", bytes.NewReader([]byte(body)))
	req.Header.Set("x-tenant-id", "acme")
	req.Header.Set("content-type", "application/json")
	req.Header.Set("traceparent", "00-"+traceID+"-"+callerSpan+"-01")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("tool call: %d", resp.StatusCode)
	}

	// The server span ends after the response is written: wait for it.
	var server sdktrace.ReadOnlySpan
	deadline := time.Now().Add(10 * time.Second)
	for server == nil && time.Now().Before(deadline) {
		for _, s := range rec.Ended() {
			if s.SpanKind() == trace.SpanKindServer && s.Name() == "POST /tools/execute" {
				server = s
			}
		}
		if server == nil {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if server == nil {
		t.Fatalf("no server span named POST /tools/execute among %d spans", len(rec.Ended()))
	}
	if got := server.SpanContext().TraceID().String(); got != traceID {
		t.Fatalf("server span trace %s, want the caller's %s", got, traceID)
	}
	if got := server.Parent().SpanID().String(); got != callerSpan || !server.Parent().IsRemote() {
		t.Fatalf("server span parent %s (remote %v), want the caller's span %s", got, server.Parent().IsRemote(), callerSpan)
	}
	byName := map[string][]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		if s.SpanContext().TraceID().String() == traceID {
			byName[s.Name()] = append(byName[s.Name()], s)
		}
	}
	for _, want := range []string{"guard", "execute_tool summarize", "chat gpt-4o-mini"} {
		if len(byName[want]) == 0 {
			names := make([]string, 0, len(byName))
			for n := range byName {
				names = append(names, n)
			}
			t.Fatalf("no %q span in the request's trace; it has %s", want, strings.Join(names, ", "))
		}
	}
	if p := byName["guard"][0].Parent().SpanID(); p != server.SpanContext().SpanID() {
		t.Errorf("guard span's parent %s, want the server span", p)
	}
	// The model attempt the tool's callback made is under the tool span.
	tool := byName["execute_tool summarize"][0]
	if p := tool.Parent().SpanID(); p != server.SpanContext().SpanID() {
		t.Errorf("tool span's parent %s, want the server span", p)
	}
	attempt := byName["chat gpt-4o-mini"][0]
	if attempt.SpanKind() != trace.SpanKindClient || !descends(rec.Ended(), attempt, tool) {
		t.Errorf("model attempt span (kind %v) is not under the tool span", attempt.SpanKind())
	}
	mu.Lock()
	defer mu.Unlock()
	if len(upstreamParents) == 0 || !strings.Contains(upstreamParents[0], traceID) {
		t.Fatalf("the model upstream got traceparent %q, want one of trace %s", upstreamParents, traceID)
	}
}

// descends reports whether span s descends from ancestor among spans.
func descends(spans []sdktrace.ReadOnlySpan, s, ancestor sdktrace.ReadOnlySpan) bool {
	byID := map[trace.SpanID]sdktrace.ReadOnlySpan{}
	for _, x := range spans {
		byID[x.SpanContext().SpanID()] = x
	}
	for cur := s; cur != nil; cur = byID[cur.Parent().SpanID()] {
		if cur.Parent().SpanID() == ancestor.SpanContext().SpanID() {
			return true
		}
		if !cur.Parent().IsValid() {
			return false
		}
	}
	return false
}
