package tracing

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// The standard OpenTelemetry environment variables this package honours. cmd/crispy reads them
// (nothing here reads the environment) and passes a getter to FromEnv.
const (
	EnvEndpoint       = "OTEL_EXPORTER_OTLP_ENDPOINT"
	EnvTracesEndpoint = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	EnvHeaders        = "OTEL_EXPORTER_OTLP_HEADERS"
	EnvTracesHeaders  = "OTEL_EXPORTER_OTLP_TRACES_HEADERS"
	EnvProtocol       = "OTEL_EXPORTER_OTLP_PROTOCOL"
	EnvTracesProtocol = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	EnvServiceName    = "OTEL_SERVICE_NAME"
	EnvSampler        = "OTEL_TRACES_SAMPLER"
	EnvSamplerArg     = "OTEL_TRACES_SAMPLER_ARG"
	EnvSDKDisabled    = "OTEL_SDK_DISABLED"
)

// FromEnv builds a Config from the standard variables, read through get ("" when unset):
//
//   - OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (used as is) or OTEL_EXPORTER_OTLP_ENDPOINT (+ /v1/traces);
//     neither: tracing is off;
//   - OTEL_EXPORTER_OTLP_HEADERS and _TRACES_HEADERS (the latter wins per key): "k=v,k2=v2", values
//     URL-decoded, as the specification says;
//   - OTEL_EXPORTER_OTLP_PROTOCOL / _TRACES_PROTOCOL: http/protobuf (the default) is the exporter
//     built in; grpc and http/json are refused with an error naming the fix rather than ignored;
//   - OTEL_SERVICE_NAME (default crispy);
//   - OTEL_TRACES_SAMPLER and _ARG: always_on, always_off, traceidratio, parentbased_always_on
//     (the default), parentbased_always_off, parentbased_traceidratio; the ratio defaults to 1;
//   - OTEL_SDK_DISABLED=true turns tracing off.
func FromEnv(get func(string) string) (Config, error) {
	c := Config{ServiceName: get(EnvServiceName)}
	if strings.EqualFold(get(EnvSDKDisabled), "true") {
		return Config{}, nil
	}
	c.Endpoint = get(EnvEndpoint)
	if te := get(EnvTracesEndpoint); te != "" {
		c.Endpoint, c.ExactEndpoint = te, true
	}
	for _, name := range []string{EnvHeaders, EnvTracesHeaders} {
		h, err := parseHeaders(get(name))
		if err != nil {
			return Config{}, fmt.Errorf("%s: %w", name, err)
		}
		for k, v := range h {
			if c.Headers == nil {
				c.Headers = map[string]string{}
			}
			c.Headers[k] = v
		}
	}
	proto, name := get(EnvProtocol), EnvProtocol
	if p := get(EnvTracesProtocol); p != "" {
		proto, name = p, EnvTracesProtocol
	}
	switch proto {
	case "", "http/protobuf":
	default:
		return Config{}, fmt.Errorf("%s=%s is not supported: crispy exports traces over OTLP/HTTP with protobuf; set it to http/protobuf (or unset it) and point %s at the collector's HTTP port (4318)", name, proto, EnvEndpoint)
	}
	sampler := get(EnvSampler)
	arg := get(EnvSamplerArg)
	ratio := 1.0
	if arg != "" && strings.HasSuffix(sampler, "traceidratio") {
		r, err := strconv.ParseFloat(arg, 64)
		if err != nil || r < 0 || r > 1 {
			return Config{}, fmt.Errorf("%s=%q: want a ratio between 0 and 1", EnvSamplerArg, arg)
		}
		ratio = r
	}
	switch sampler {
	case "", "parentbased_always_on":
		c.Sampler = SamplerParentBasedRatio
	case "always_on":
		c.Sampler = SamplerRatio
	case "always_off":
		c.Sampler, ratio = SamplerRatio, 0
	case "traceidratio":
		c.Sampler = SamplerRatio
	case "parentbased_always_off":
		c.Sampler, ratio = SamplerParentBasedRatio, 0
	case "parentbased_traceidratio":
		c.Sampler = SamplerParentBasedRatio
	default:
		return Config{}, fmt.Errorf("%s=%s is not supported: use always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio", EnvSampler, sampler)
	}
	c.SampleRatio = ratio
	c.NeverSample = ratio == 0
	return c, nil
}

// parseHeaders reads "k=v,k2=v2" with URL-encoded values.
func parseHeaders(s string) (map[string]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		if strings.TrimSpace(kv) == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("%q is not key=value", kv)
		}
		dv, err := url.PathUnescape(strings.TrimSpace(v))
		if err != nil {
			return nil, fmt.Errorf("value of %q: %w", k, err)
		}
		out[k] = dv
	}
	return out, nil
}
