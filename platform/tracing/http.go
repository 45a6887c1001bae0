package tracing

import (
	"context"
	"net/http"
	"strconv"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Propagator is W3C Trace Context (traceparent, tracestate): what an incoming request may carry and
// what crispy sends upstream to model providers and to plugins.
var Propagator propagation.TextMapPropagator = propagation.TraceContext{}

// Server wraps an HTTP handler in a server span, the root of the request's trace, or the child of
// the caller's span when the request carries a W3C traceparent. The span is named by its method
// until Route names the operation ("POST /chat"); it records the status code and marks 5xx answers
// as errors.
//
// Hand-written rather than otelhttp: the otelhttp versions the module proxy lists here (v0.65+)
// need otel v1.40+, while the module is on v1.29; what it would add beyond this (metrics, client
// spans) crispy has elsewhere.
func Server(tp trace.TracerProvider, next http.Handler) http.Handler {
	tr := tp.Tracer(InstrumentationName)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := Propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		ctx, span := tr.Start(ctx, r.Method, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(
			attribute.String("http.request.method", r.Method),
			attribute.String("url.path", r.URL.Path),
			attribute.String("url.scheme", scheme(r)),
			attribute.String("server.address", r.Host),
			attribute.String("user_agent.original", r.UserAgent()),
		))
		defer span.End()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(sw, r.WithContext(ctx))
		span.SetAttributes(attribute.Int("http.response.status_code", sw.status))
		if sw.status >= 500 {
			span.SetStatus(codes.Error, strconv.Itoa(sw.status))
			span.SetAttributes(attribute.String(AttrErrorType, strconv.Itoa(sw.status)))
		}
	})
}

// Route names the request's server span after its operation ("POST /chat/{sessionId}") and tags
// it with the tenant and request id, once the router knows them.
func Route(ctx context.Context, method, route, tenantID, requestID string) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	span.SetName(method + " " + route)
	attrs := []attribute.KeyValue{attribute.String("http.route", route)}
	if tenantID != "" {
		attrs = append(attrs, attribute.String(AttrTenant, tenantID))
	}
	if requestID != "" {
		attrs = append(attrs, attribute.String("crispy.request_id", requestID))
	}
	span.SetAttributes(attrs...)
}

// InjectHTTP writes ctx's trace context into an outgoing request's headers (traceparent), so a
// provider or gateway that traces joins the request's trace.
func InjectHTTP(ctx context.Context, h http.Header) {
	Propagator.Inject(ctx, propagation.HeaderCarrier(h))
}

func scheme(r *http.Request) string {
	if r.TLS != nil {
		return "https"
	}
	return "http"
}

// statusWriter remembers the status code; Flush and Unwrap keep streaming (SSE) and
// http.ResponseController working through it.
type statusWriter struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wroteHeader {
		w.status, w.wroteHeader = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wroteHeader = true
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
