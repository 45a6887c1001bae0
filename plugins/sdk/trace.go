package sdk

import (
	"context"

	"go.opentelemetry.io/otel/propagation"
	"google.golang.org/grpc/metadata"
)

// Trace context crosses the plugin boundary as W3C Trace Context (traceparent, tracestate) in the
// gRPC metadata of each call: the host sends its tool span's context with Execute, and the SDK puts
// it in the context a Tool runs with, so trace.SpanContextFromContext(ctx) in a tool is the host's
// span (a tool that traces starts its spans as its children), and the tool's own calls back to the
// host (Complete, Embed, Ingest) carry it too.

var traceContext = propagation.TraceContext{}

// mdCarrier adapts gRPC metadata to the propagator (keys are lower-case in gRPC metadata, as the
// W3C headers are).
type mdCarrier metadata.MD

func (c mdCarrier) Get(key string) string {
	if vs := metadata.MD(c).Get(key); len(vs) > 0 {
		return vs[0]
	}
	return ""
}

func (c mdCarrier) Set(key, value string) { metadata.MD(c).Set(key, value) }

func (c mdCarrier) Keys() []string {
	out := make([]string, 0, len(c))
	for k := range c {
		out = append(out, k)
	}
	return out
}

// withOutgoingTrace adds ctx's trace context to the metadata of the gRPC calls made with it.
func withOutgoingTrace(ctx context.Context) context.Context {
	md := metadata.MD{}
	traceContext.Inject(ctx, mdCarrier(md))
	if len(md) == 0 {
		return ctx
	}
	if out, ok := metadata.FromOutgoingContext(ctx); ok {
		md = metadata.Join(out, md)
	}
	return metadata.NewOutgoingContext(ctx, md)
}

// withIncomingTrace returns ctx carrying the trace context of the gRPC call's metadata, if any.
func withIncomingTrace(ctx context.Context) context.Context {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return ctx
	}
	return traceContext.Extract(ctx, mdCarrier(md))
}
