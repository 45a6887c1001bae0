// Package httpapi mounts the tooling endpoints of SPEC §2 on the Huma API.
package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/crispy-enigma/crispy/modules/tooling/internal/app"
	platformhttp "github.com/crispy-enigma/crispy/platform/httpapi"
	"github.com/crispy-enigma/crispy/platform/request"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

const tag = "tools"

// ToolInfo describes one tool.
type ToolInfo struct {
	Name        string          `json:"name" doc:"The tool's name, used as tool_name" example:"summarize"`
	Description string          `json:"description" doc:"What the tool does"`
	Version     string          `json:"version" doc:"Semantic version of the plugin" example:"1.0.0"`
	Parameters  json.RawMessage `json:"parameters" doc:"JSON Schema of params"`
	Output      json.RawMessage `json:"output" doc:"JSON Schema of result"`
	TimeoutMs   int64           `json:"timeout_ms" doc:"The call is stopped after this long (504 EXECUTION_TIMEOUT)" example:"30000"`
	Permissions []string        `json:"permissions" doc:"Host capabilities the tool uses: model:complete, model:embed, index:write"`
}

// ListToolsOutput is GET /schema/tools.
type ListToolsOutput struct {
	Body struct {
		Tools []ToolInfo `json:"tools" doc:"The tools this tenant may run"`
	}
}

// ExecuteInput is POST /tools/execute.
type ExecuteInput struct {
	Body struct {
		ToolName string          `json:"tool_name" minLength:"1" maxLength:"64" doc:"Name of the tool (GET /schema/tools)" example:"summarize"`
		Params   json.RawMessage `json:"params,omitempty" doc:"Parameters, validated against the tool's JSON Schema (absent: {})"`
		UserID   string          `json:"user_id,omitempty" maxLength:"256" doc:"End user on whose behalf the tool runs (default: x-user-id)"`
	}
}

// Resolve adds the text rules of the names (the tool's schema judges params; the floor has refused
// invalid UTF-8 and control characters in any of its strings).
func (in *ExecuteInput) Resolve(huma.Context) []error {
	return platformhttp.FieldErrors(platformhttp.Line("body.tool_name", in.Body.ToolName), platformhttp.Line("body.user_id", in.Body.UserID))
}

// ExecuteMetadata describes the call.
type ExecuteMetadata struct {
	DurationMs float64 `json:"durationMs" doc:"Time spent in the tool, in milliseconds" example:"12.5"`
}

// ExecuteOutput is the answer of POST /tools/execute.
type ExecuteOutput struct {
	Body struct {
		ToolName  string          `json:"tool_name" example:"summarize"`
		Result    json.RawMessage `json:"result" doc:"The tool's output, valid against its output schema"`
		Metadata  ExecuteMetadata `json:"metadata"`
		RequestID string          `json:"requestId"`
	}
}

// MetricsInput is GET /metrics/tools/execution.
type MetricsInput struct {
	Period string `query:"period" doc:"1h, 24h (default), 7d or 30d" example:"24h"`
}

// ToolMetrics is one tool's figures.
type ToolMetrics struct {
	ToolName       string  `json:"tool_name" example:"summarize"`
	Executions     int     `json:"executions" doc:"Calls that ran or were refused after the tool was found"`
	Successes      int     `json:"successes"`
	Errors         int     `json:"errors"`
	MeanDurationMs float64 `json:"meanDurationMs"`
}

// MetricsOutput is the answer of GET /metrics/tools/execution.
type MetricsOutput struct {
	Body struct {
		Tenant    string        `json:"tenant" example:"acme"`
		Period    string        `json:"period" example:"24h"`
		From      time.Time     `json:"from"`
		Until     time.Time     `json:"until"`
		Tools     []ToolMetrics `json:"tools" doc:"By tool, sorted by name"`
		Totals    ToolMetrics   `json:"totals" doc:"All tools (tool_name \"*\")"`
		RequestID string        `json:"requestId"`
	}
}

// Register mounts the endpoints.
func Register(api huma.API, svc *app.Service) {
	huma.Register(api, huma.Operation{OperationID: "list-tools", Method: http.MethodGet, Path: "/schema/tools", Tags: []string{tag},
		Summary: "List tools", Description: "The tools this tenant may run, with the JSON Schemas of their parameters and output."},
		func(ctx context.Context, _ *struct{}) (*ListToolsOutput, error) {
			t, _ := tenant.FromContext(ctx)
			tools, err := svc.ListTools(ctx, t)
			if err != nil {
				return nil, err
			}
			out := &ListToolsOutput{}
			out.Body.Tools = make([]ToolInfo, 0, len(tools))
			for _, tl := range tools {
				d := tl.Desc
				perms := d.Permissions
				if perms == nil {
					perms = []string{}
				}
				out.Body.Tools = append(out.Body.Tools, ToolInfo{Name: d.Name, Description: d.Description, Version: d.Version,
					Parameters: d.InputSchema, Output: d.OutputSchema, TimeoutMs: d.EffectiveTimeout().Milliseconds(), Permissions: perms})
			}
			return out, nil
		})

	huma.Register(api, huma.Operation{OperationID: "execute-tool", Method: http.MethodPost, Path: "/tools/execute", Tags: []string{tag},
		Summary: "Execute a tool",
		Description: "Runs a tool plugin for this tenant. Errors: TOOL_NOT_FOUND 404, VALIDATION_FAILED 400 (failing paths in errors), " +
			"PERMISSION_DENIED 403, EXECUTION_TIMEOUT 504, EXECUTION_ERROR 502.",
		Responses: map[string]*huma.Response{
			"400": platformhttp.ProblemResponse("Params do not match the tool's schema (VALIDATION_FAILED)"),
			"403": platformhttp.ProblemResponse("The tenant does not allow the tool or its permissions (PERMISSION_DENIED), or the API key lacks the tools scope (scope_required)"),
			"502": platformhttp.ProblemResponse("The tool failed or returned invalid output (EXECUTION_ERROR)"),
			"504": platformhttp.ProblemResponse("The tool timed out and was stopped (EXECUTION_TIMEOUT)"),
		}},
		func(ctx context.Context, in *ExecuteInput) (*ExecuteOutput, error) {
			t, _ := tenant.FromContext(ctx)
			user := in.Body.UserID
			if user == "" {
				user = request.From(ctx).User
			}
			res, err := svc.Execute(ctx, app.Execute{Tenant: t, Tool: in.Body.ToolName, Params: in.Body.Params, UserID: user})
			if err != nil {
				return nil, err
			}
			out := &ExecuteOutput{}
			out.Body.ToolName = res.Tool
			out.Body.Result = res.Result
			out.Body.Metadata.DurationMs = float64(res.Duration.Microseconds()) / 1000
			out.Body.RequestID = request.From(ctx).ID
			return out, nil
		})

	huma.Register(api, huma.Operation{OperationID: "get-tool-execution-metrics", Method: http.MethodGet, Path: "/metrics/tools/execution",
		Tags: []string{tag}, Summary: "Tool execution metrics",
		Description: "This tenant's tool executions, successes, errors and mean duration by tool over the period, from the tool audit.",
		Responses: map[string]*huma.Response{
			"503": platformhttp.ProblemResponse("The statistics are catching up with the event store after a start (catching_up, with retry-after)"),
		}},
		func(ctx context.Context, in *MetricsInput) (*MetricsOutput, error) {
			t, _ := tenant.FromContext(ctx)
			st, err := svc.ExecutionMetrics(ctx, t, in.Period)
			if err != nil {
				return nil, err
			}
			out := &MetricsOutput{}
			out.Body.Tenant = t.String()
			out.Body.Period = in.Period
			if out.Body.Period == "" {
				out.Body.Period = "24h"
			}
			out.Body.From, out.Body.Until = st.From, st.Until
			out.Body.Tools = make([]ToolMetrics, 0, len(st.Tools))
			for _, ts := range st.Tools {
				out.Body.Tools = append(out.Body.Tools, ToolMetrics{ToolName: ts.Tool, Executions: ts.Executions, Successes: ts.Successes,
					Errors: ts.Errors, MeanDurationMs: ts.MeanDurationMs})
			}
			out.Body.Totals = ToolMetrics{ToolName: "*", Executions: st.Total.Executions, Successes: st.Total.Successes,
				Errors: st.Total.Errors, MeanDurationMs: st.Total.MeanDurationMs}
			out.Body.RequestID = request.From(ctx).ID
			return out, nil
		})
}
