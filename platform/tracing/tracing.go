// Package tracing gives the platform its OpenTelemetry tracer: spans exported over OTLP/HTTP when an
// endpoint is configured (cmd/crispy passes OTEL_EXPORTER_OTLP_ENDPOINT in; nothing here reads the
// environment on purpose), and a no-op tracer otherwise, so instrumented code never checks whether
// tracing is on. genai.go holds span helpers that follow the OpenTelemetry GenAI semantic conventions.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// InstrumentationName names the tracer every platform span comes from.
const InstrumentationName = "github.com/crispy-enigma/crispy"

// Config configures tracing.
type Config struct {
	// Endpoint is the OTLP/HTTP base URL (the value of OTEL_EXPORTER_OTLP_ENDPOINT, for example
	// http://collector:4318); "/v1/traces" is appended unless the URL already names a path ending in
	// it. Empty: tracing is off and the tracer is a no-op.
	Endpoint string
	// ExactEndpoint: Endpoint is the traces URL itself (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT), nothing
	// is appended.
	ExactEndpoint bool
	// Headers are sent with every export (OTEL_EXPORTER_OTLP_HEADERS, already parsed).
	Headers map[string]string
	// ServiceName defaults to "crispy"; ServiceVersion is optional.
	ServiceName    string
	ServiceVersion string
	// SampleRatio is the fraction of traces kept (0 means 1: keep all, unless NeverSample).
	SampleRatio float64
	// NeverSample keeps no trace (OTEL_TRACES_SAMPLER=always_off): spans are not recorded.
	NeverSample bool
	// Sampler says whose decision counts: SamplerParentBasedRatio (the default) follows an incoming
	// traceparent's sampled flag and applies the ratio to new traces; SamplerRatio applies it to all.
	Sampler Sampler
	// ExportTimeout bounds one export (default 10 s).
	ExportTimeout time.Duration
}

// Sampler is how a span's sampling is decided.
type Sampler int

const (
	SamplerParentBasedRatio Sampler = iota // the parent's decision, else the ratio
	SamplerRatio                           // the ratio, whatever the parent says
)

// Validate checks the configuration.
func (c Config) Validate() error {
	if c.SampleRatio < 0 || c.SampleRatio > 1 {
		return fmt.Errorf("tracing: sample ratio %v is outside [0, 1]", c.SampleRatio)
	}
	if c.Endpoint != "" {
		u, err := url.Parse(c.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("tracing: OTLP endpoint %q must be an http(s) URL such as http://localhost:4318", c.Endpoint)
		}
	}
	return nil
}

// Provider owns the tracer provider and its exporter.
type Provider struct {
	tp       trace.TracerProvider
	sdk      *sdktrace.TracerProvider // nil when tracing is off
	endpoint string
}

// New returns a Provider exporting over OTLP/HTTP to cfg.Endpoint, or a no-op Provider when the
// endpoint is empty. The exporter connects lazily: an unreachable collector does not fail start-up
// (spans are dropped and the SDK logs the export error).
func New(ctx context.Context, cfg Config) (*Provider, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Endpoint == "" {
		return &Provider{tp: noop.NewTracerProvider()}, nil
	}
	endpoint := cfg.Endpoint
	if !cfg.ExactEndpoint {
		endpoint = tracesURL(cfg.Endpoint)
	}
	opts := []otlptracehttp.Option{otlptracehttp.WithEndpointURL(endpoint)}
	if len(cfg.Headers) > 0 {
		opts = append(opts, otlptracehttp.WithHeaders(cfg.Headers))
	}
	timeout := cfg.ExportTimeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	opts = append(opts, otlptracehttp.WithTimeout(timeout))
	exp, err := otlptracehttp.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("tracing: OTLP exporter for %s: %w", endpoint, err)
	}
	p := NewWithProcessor(cfg, sdktrace.NewBatchSpanProcessor(exp))
	p.endpoint = endpoint
	return p, nil
}

// NewWithProcessor builds a Provider around any span processor: tests pass a
// tracetest.SpanRecorder, a CLI could pass a stdout exporter's processor.
func NewWithProcessor(cfg Config, sp sdktrace.SpanProcessor) *Provider {
	name := cfg.ServiceName
	if name == "" {
		name = "crispy"
	}
	attrs := []attribute.KeyValue{attribute.String("service.name", name)}
	if cfg.ServiceVersion != "" {
		attrs = append(attrs, attribute.String("service.version", cfg.ServiceVersion))
	}
	ratio := cfg.SampleRatio
	if ratio == 0 {
		ratio = 1
	}
	var sampler sdktrace.Sampler = sdktrace.TraceIDRatioBased(ratio)
	switch {
	case cfg.NeverSample:
		sampler = sdktrace.NeverSample()
	case ratio == 1:
		sampler = sdktrace.AlwaysSample()
	}
	if cfg.Sampler == SamplerParentBasedRatio {
		sampler = sdktrace.ParentBased(sampler)
	}
	sdk := sdktrace.NewTracerProvider(
		sdktrace.WithSpanProcessor(sp),
		sdktrace.WithResource(resource.NewWithAttributes("", attrs...)),
		sdktrace.WithSampler(sampler),
	)
	return &Provider{tp: sdk, sdk: sdk}
}

// Noop returns a Provider whose spans go nowhere.
func Noop() *Provider { return &Provider{tp: noop.NewTracerProvider()} }

// Enabled reports whether spans are recorded and exported.
func (p *Provider) Enabled() bool { return p != nil && p.sdk != nil }

// Endpoint is the URL spans are exported to ("" when tracing is off), for the start-up log line.
func (p *Provider) Endpoint() string {
	if p == nil {
		return ""
	}
	return p.endpoint
}

// TracerProvider is the underlying provider (for libraries that take one).
func (p *Provider) TracerProvider() trace.TracerProvider {
	if p == nil {
		return noop.NewTracerProvider()
	}
	return p.tp
}

// Tracer returns the platform's tracer. A nil Provider gives a no-op tracer.
func (p *Provider) Tracer() trace.Tracer { return p.TracerProvider().Tracer(InstrumentationName) }

// Shutdown flushes pending spans and stops the exporter. Safe on a no-op Provider.
func (p *Provider) Shutdown(ctx context.Context) error {
	if p == nil || p.sdk == nil {
		return nil
	}
	if err := p.sdk.Shutdown(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("tracing: shutdown: %w", err)
	}
	return nil
}

// tracesURL turns an OTLP base endpoint into the traces URL, as the OTLP exporter specification says
// for OTEL_EXPORTER_OTLP_ENDPOINT.
func tracesURL(base string) string {
	if strings.HasSuffix(strings.TrimRight(base, "/"), "/v1/traces") {
		return base
	}
	return strings.TrimRight(base, "/") + "/v1/traces"
}
