package tracing_test

import (
	"context"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/crispy-enigma/crispy/platform/tracing"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// The standard OTEL_* variables are honoured or refused by name, never ignored.
func TestFromEnvHonoursTheStandardVariables(t *testing.T) {
	t.Parallel()
	c, err := tracing.FromEnv(envOf(map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
		"OTEL_EXPORTER_OTLP_HEADERS":  "authorization=Bearer%20abc, x-team=crispy",
		"OTEL_SERVICE_NAME":           "crispy-eu",
		"OTEL_TRACES_SAMPLER":         "parentbased_traceidratio",
		"OTEL_TRACES_SAMPLER_ARG":     "0.25",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Endpoint != "http://collector:4318" || c.ExactEndpoint || c.ServiceName != "crispy-eu" || c.SampleRatio != 0.25 ||
		c.Sampler != tracing.SamplerParentBasedRatio || c.Headers["authorization"] != "Bearer abc" || c.Headers["x-team"] != "crispy" {
		t.Fatalf("config %+v", c)
	}
	c, err = tracing.FromEnv(envOf(map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://otel.example/api/traces", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}))
	if err != nil || c.Endpoint != "https://otel.example/api/traces" || !c.ExactEndpoint {
		t.Fatalf("traces endpoint: %+v, %v", c, err)
	}
	for _, bad := range []map[string]string{
		{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
		{"OTEL_TRACES_SAMPLER": "jaeger_remote"},
		{"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"},
		{"OTEL_EXPORTER_OTLP_HEADERS": "novalue"},
	} {
		if _, err := tracing.FromEnv(envOf(bad)); err == nil {
			t.Errorf("%v accepted, want an error naming it", bad)
		} else {
			for k := range bad {
				if !strings.Contains(err.Error(), k) {
					t.Errorf("%v: error %q does not name %s", bad, err, k)
				}
			}
		}
	}
}

// always_off records nothing; a parent-based sampler follows an incoming sampled parent.
func TestSamplersFromEnv(t *testing.T) {
	t.Parallel()
	remote := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, TraceFlags: trace.FlagsSampled, Remote: true})
	for _, tc := range []struct {
		sampler     string
		root, child bool // recorded: a new trace, a child of a sampled remote parent
	}{
		{"always_off", false, false},
		{"parentbased_always_off", false, true},
		{"always_on", true, true},
		{"", true, true},
	} {
		c, err := tracing.FromEnv(envOf(map[string]string{"OTEL_TRACES_SAMPLER": tc.sampler}))
		if err != nil {
			t.Fatal(err)
		}
		rec := tracetest.NewSpanRecorder()
		tr := tracing.NewWithProcessor(c, rec).Tracer()
		_, root := tr.Start(context.Background(), "root")
		_, child := tr.Start(trace.ContextWithRemoteSpanContext(context.Background(), remote), "child")
		if root.IsRecording() != tc.root || child.IsRecording() != tc.child {
			t.Errorf("sampler %q: root recorded %v, child %v; want %v, %v", tc.sampler, root.IsRecording(), child.IsRecording(), tc.root, tc.child)
		}
	}
}
