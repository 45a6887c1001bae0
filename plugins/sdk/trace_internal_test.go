package sdk

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/metadata"
)

// The host's span context crosses to the plugin in the gRPC metadata of Execute: what the host
// sends (withOutgoingTrace) is what the tool's context carries (withIncomingTrace), and a plugin
// calling back forwards it the same way.
func TestTraceContextCrossesThePluginBoundary(t *testing.T) {
	t.Parallel()
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{0x4b, 0xf9}, SpanID: trace.SpanID{0x00, 0xf0, 0x67}, TraceFlags: trace.FlagsSampled})
	host := trace.ContextWithSpanContext(context.Background(), sc)
	out, ok := metadata.FromOutgoingContext(withOutgoingTrace(host))
	if !ok || len(out.Get("traceparent")) != 1 {
		t.Fatalf("outgoing metadata %v, want a traceparent", out)
	}
	plugin := withIncomingTrace(metadata.NewIncomingContext(context.Background(), out))
	got := trace.SpanContextFromContext(plugin)
	if got.TraceID() != sc.TraceID() || got.SpanID() != sc.SpanID() || !got.IsSampled() || !got.IsRemote() {
		t.Fatalf("the plugin's span context %v, want the host's %v (remote)", got, sc)
	}
	back, _ := metadata.FromOutgoingContext(withOutgoingTrace(plugin))
	if back.Get("traceparent")[0] != out.Get("traceparent")[0] {
		t.Fatalf("callback traceparent %v, want %v", back.Get("traceparent"), out.Get("traceparent"))
	}
	if _, ok := metadata.FromOutgoingContext(withOutgoingTrace(context.Background())); ok {
		t.Fatal("a call without a span sent trace metadata")
	}
}
