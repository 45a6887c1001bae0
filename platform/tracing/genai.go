package tracing

import (
	"context"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Attribute keys of the OpenTelemetry GenAI semantic conventions. gen_ai.system is the older name of
// gen_ai.provider.name; both are set so that backends on either version of the conventions group
// spans by provider.
const (
	AttrOperationName    = "gen_ai.operation.name"
	AttrSystem           = "gen_ai.system"
	AttrProviderName     = "gen_ai.provider.name"
	AttrRequestModel     = "gen_ai.request.model"
	AttrResponseModel    = "gen_ai.response.model"
	AttrInputTokens      = "gen_ai.usage.input_tokens"
	AttrOutputTokens     = "gen_ai.usage.output_tokens"
	AttrFinishReasons    = "gen_ai.response.finish_reasons"
	AttrRequestMaxTokens = "gen_ai.request.max_tokens"
	AttrToolName         = "gen_ai.tool.name"
	AttrErrorType        = "error.type"
	AttrTenant           = "crispy.tenant"
	AttrUsageEstimated   = "crispy.usage.estimated"
)

// Operation names of the conventions.
const (
	OpChat        = "chat"
	OpEmbeddings  = "embeddings"
	OpExecuteTool = "execute_tool"
)

// ModelCall describes a model request at its start.
type ModelCall struct {
	Operation string // OpChat or OpEmbeddings (default OpChat)
	// Model is the platform's "provider:model" id ("openai:gpt-4o-mini"); the provider part becomes
	// gen_ai.provider.name and the rest gen_ai.request.model.
	Model     string
	MaxTokens int    // 0: not set
	Tenant    string // optional, recorded as crispy.tenant
}

// ModelOutcome describes a finished model request.
type ModelOutcome struct {
	ResponseModel string // the model the provider says answered; default the requested one
	InputTokens   int
	OutputTokens  int
	// Estimated: the provider reported no usage and the tokens are estimated (crispy.usage.estimated).
	Estimated    bool
	FinishReason string
	// Err marks the span as failed; ErrorType is error.type ("timeout", "breaker_open", a status code);
	// default "error" when Err is set.
	Err       error
	ErrorType string
}

// ProviderName maps the platform's provider prefix to the conventions' provider names.
func ProviderName(provider string) string {
	switch provider {
	case "openai":
		return "openai"
	case "workers-ai":
		return "cloudflare.workers_ai"
	case "builtin":
		return "crispy.builtin"
	default:
		return provider
	}
}

// SplitModel splits "provider:model" at the first ':' (model ids such as "@cf/meta/llama" keep theirs).
func SplitModel(id string) (provider, model string) {
	if i := strings.IndexByte(id, ':'); i > 0 {
		return id[:i], id[i+1:]
	}
	return "", id
}

// StartModelSpan starts a client span named "{operation} {model}" with the GenAI request attributes.
// End it with EndModelSpan.
func StartModelSpan(ctx context.Context, tr trace.Tracer, c ModelCall) (context.Context, trace.Span) {
	op := c.Operation
	if op == "" {
		op = OpChat
	}
	provider, model := SplitModel(c.Model)
	attrs := []attribute.KeyValue{
		attribute.String(AttrOperationName, op),
		attribute.String(AttrRequestModel, model),
	}
	if provider != "" {
		name := ProviderName(provider)
		attrs = append(attrs, attribute.String(AttrProviderName, name), attribute.String(AttrSystem, name))
	}
	if c.MaxTokens > 0 {
		attrs = append(attrs, attribute.Int(AttrRequestMaxTokens, c.MaxTokens))
	}
	if c.Tenant != "" {
		attrs = append(attrs, attribute.String(AttrTenant, c.Tenant))
	}
	return tr.Start(ctx, op+" "+model, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
}

// EndModelSpan records the response attributes (usage, response model, finish reason, error) and
// ends the span.
func EndModelSpan(span trace.Span, requestModel string, o ModelOutcome) {
	if !span.IsRecording() {
		// Unsampled, or no tracing configured: the attributes would be dropped, and building them
		// is a dozen allocations on every model call (the /v1 proxy's hot path).
		span.End()
		return
	}
	resp := o.ResponseModel
	if resp == "" {
		_, resp = SplitModel(requestModel)
	} else if _, m := SplitModel(resp); m != "" {
		resp = m
	}
	attrs := []attribute.KeyValue{
		attribute.String(AttrResponseModel, resp),
		attribute.Int(AttrInputTokens, o.InputTokens),
		attribute.Int(AttrOutputTokens, o.OutputTokens),
	}
	if o.FinishReason != "" {
		attrs = append(attrs, attribute.StringSlice(AttrFinishReasons, []string{o.FinishReason}))
	}
	if o.Estimated {
		attrs = append(attrs, attribute.Bool(AttrUsageEstimated, true))
	}
	span.SetAttributes(attrs...)
	endWithError(span, o.Err, o.ErrorType)
}

// StartToolSpan starts an internal span "execute_tool {tool}" around a tool call.
func StartToolSpan(ctx context.Context, tr trace.Tracer, tool, tenantID string) (context.Context, trace.Span) {
	attrs := []attribute.KeyValue{attribute.String(AttrOperationName, OpExecuteTool), attribute.String(AttrToolName, tool)}
	if tenantID != "" {
		attrs = append(attrs, attribute.String(AttrTenant, tenantID))
	}
	return tr.Start(ctx, OpExecuteTool+" "+tool, trace.WithSpanKind(trace.SpanKindInternal), trace.WithAttributes(attrs...))
}

// End ends any span, marking it failed when err is set (errorType as error.type, default "error").
func End(span trace.Span, err error, errorType string) { endWithError(span, err, errorType) }

func endWithError(span trace.Span, err error, errorType string) {
	if err != nil {
		if errorType == "" {
			errorType = "error"
		}
		span.SetAttributes(attribute.String(AttrErrorType, errorType))
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// StartSpan starts an internal span for platform work that is not a model call (index queries,
// retrieval, projections), tagged with the tenant when given. End it with End.
func StartSpan(ctx context.Context, tr trace.Tracer, name, tenantID string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	if tenantID != "" {
		attrs = append(attrs, attribute.String(AttrTenant, tenantID))
	}
	return tr.Start(ctx, name, trace.WithSpanKind(trace.SpanKindInternal), trace.WithAttributes(attrs...))
}
