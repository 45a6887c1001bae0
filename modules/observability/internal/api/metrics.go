package api

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"

	"github.com/danielgtaylor/huma/v2"
	"github.com/google/uuid"

	"github.com/crispy-enigma/crispy/modules/observability/events"
	"github.com/crispy-enigma/crispy/modules/observability/internal/alerts"
	"github.com/crispy-enigma/crispy/modules/observability/internal/app"
	"github.com/crispy-enigma/crispy/modules/observability/internal/domain"
	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/httpapi"
	"github.com/crispy-enigma/crispy/platform/request"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// Metrics serves the tenant-facing metrics endpoints, GET /usage and the Prometheus exposition.
type Metrics struct {
	App    *app.Service
	Alerts *alerts.Engine
	// Prometheus writes the exposition; nil leaves GET /metrics unregistered (cmd/crispy may serve
	// it on its own address).
	Prometheus func(w io.Writer)
}

type periodInput struct {
	Period string `query:"period" doc:"1h, 24h (default), 7d or 30d; anything else is 400" example:"24h"`
}

type usageInput struct {
	Period  string `query:"period" doc:"1h, 24h (default), 7d or 30d; anything else is 400" example:"24h"`
	GroupBy string `query:"groupBy" enum:"key,user,model" doc:"also report every model call grouped by credential (key: \"key:<id>\"), by user id (user) or by model; anything else is 422" example:"key"`
}

type usageOutput struct {
	Body struct {
		app.UsageReport
		RequestID string `json:"requestId"`
	}
}

type costOutput struct {
	Body struct {
		app.CostReport
		RequestID string `json:"requestId"`
	}
}

type slisOutput struct {
	Body struct {
		app.SLIReport
		RequestID string `json:"requestId"`
	}
}

type anomaliesOutput struct {
	Body struct {
		app.AnomalyReport
		RequestID string `json:"requestId"`
	}
}

type overviewOutput struct {
	Body struct {
		app.Overview
		RequestID string `json:"requestId"`
	}
}

type alertsOutput struct {
	Body struct {
		Alerts    []alerts.RuleView `json:"alerts"`
		RequestID string            `json:"requestId"`
	}
}

// RuleBody is an alert rule as a client sends it.
type RuleBody struct {
	ID         string  `json:"id,omitempty" maxLength:"63" doc:"Rule id (lower-case letters, digits, '-'); a PUT with an existing id replaces that rule; absent: a new id is generated" example:"high-error-rate"`
	Name       string  `json:"name" minLength:"1" maxLength:"200" example:"Chat error rate above 5%"`
	Metric     string  `json:"metric" doc:"requests, chatErrorRate, chatLatencyMs, chatTtftMs, tokens, inputTokens, outputTokens, costUsd, toolCalls, toolErrorRate, toolDurationMs, cacheHitRate, searchLatencyMs or searchQueries" example:"chatErrorRate"`
	Comparator string  `json:"comparator" doc:"gt, gte, lt or lte" example:"gt"`
	Threshold  float64 `json:"threshold" example:"0.05"`
	Period     string  `json:"period,omitempty" doc:"window the metric is computed over: 1h, 24h (default), 7d or 30d" example:"1h"`
	Enabled    *bool   `json:"enabled,omitempty" doc:"default true"`
	WebhookURL string  `json:"webhookUrl,omitempty" maxLength:"2048" doc:"http(s) URL that receives a signed JSON notice when the rule starts or stops firing; refused (422) when the server has no webhook secret, or when it points at an internal address unless the server allows them" example:"https://hooks.example.com/crispy"`
	For        string  `json:"for,omitempty" maxLength:"16" doc:"how long the condition must hold, evaluation after evaluation, before the rule fires (0s to 24h; empty: at once)" example:"5m"`
}

type putAlertInput struct {
	Body RuleBody
}

// Resolve refuses a blank name and multi-line names, ids and URLs with 422 naming the field.
func (in *putAlertInput) Resolve(huma.Context) []error {
	b := &in.Body
	return httpapi.FieldErrors(httpapi.Line("body.id", b.ID), httpapi.Line("body.name", b.Name),
		httpapi.Line("body.webhookUrl", b.WebhookURL))
}

type ruleOutput struct {
	Body struct {
		alerts.RuleView
		RequestID string `json:"requestId"`
	}
}

type deleteAlertInput struct {
	ID string `query:"id" required:"true" maxLength:"63" doc:"Id of the rule to delete" example:"high-error-rate"`
}

type deleteOutput struct {
	Body struct {
		Deleted   string `json:"deleted"`
		RequestID string `json:"requestId"`
	}
}

type promOutput struct {
	ContentType string `header:"Content-Type"`
	Body        []byte
}

func period(s string) (domain.Period, error) { return domain.ParsePeriod(s) }

// tenantPeriod is the scope of every per-period metrics operation: the request's tenant and its
// validated period.
func tenantPeriod(ctx context.Context, name string) (tenant.ID, domain.Period, error) {
	t, err := tenantOf(ctx)
	if err != nil {
		return tenant.ID{}, domain.Period{}, err
	}
	p, err := period(name)
	return t, p, err
}

// Register mounts the operations.
func (m *Metrics) Register(api huma.API) {
	get := func(id, path, summary, desc string) huma.Operation {
		return huma.Operation{OperationID: id, Method: http.MethodGet, Path: path, Tags: []string{tag}, Summary: summary, Description: desc}
	}
	huma.Register(api, get("get-usage", "/usage", "Usage by model and tool",
		"Requests, tokens in/out (cached and reasoning too), tool calls and estimated cost of the tenant over the period, by model; with groupBy, also by API key, user id or model. Periods start at a 5-minute bucket edge."),
		func(ctx context.Context, in *usageInput) (*usageOutput, error) {
			t, p, err := tenantPeriod(ctx, in.Period)
			if err != nil {
				return nil, err
			}
			r, err := m.App.Usage(ctx, t, p, in.GroupBy)
			if err != nil {
				return nil, unavailable(err, "usage_unavailable", "usage could not be read; try again")
			}
			out := &usageOutput{}
			out.Body.UsageReport = r
			out.Body.RequestID = request.From(ctx).ID
			return out, nil
		})
	huma.Register(api, get("get-cost", "/metrics/cost", "Estimated cost by model",
		"Tokens and USD cost by model over the period, from the configured price table (USD per million input, cached-input, output and reasoning tokens)."),
		func(ctx context.Context, in *periodInput) (*costOutput, error) {
			t, p, err := tenantPeriod(ctx, in.Period)
			if err != nil {
				return nil, err
			}
			r, err := m.App.Cost(ctx, t, p)
			if err != nil {
				return nil, unavailable(err, "cost_unavailable", "cost could not be read; try again")
			}
			out := &costOutput{}
			out.Body.CostReport = r
			out.Body.RequestID = request.From(ctx).ID
			return out, nil
		})
	huma.Register(api, get("get-slis", "/metrics/slis", "Service level indicators",
		"Chat, tools, search, cache and cost indicators of the tenant over the period."),
		func(ctx context.Context, in *periodInput) (*slisOutput, error) {
			t, p, err := tenantPeriod(ctx, in.Period)
			if err != nil {
				return nil, err
			}
			r, err := m.App.SLIs(ctx, t, p)
			if err != nil {
				return nil, unavailable(err, "slis_unavailable", "the indicators could not be computed; try again")
			}
			out := &slisOutput{}
			out.Body.SLIReport = r
			out.Body.RequestID = request.From(ctx).ID
			return out, nil
		})
	huma.Register(api, get("get-anomalies", "/metrics/anomalies", "Metrics far from their recent history",
		"The period is split into 12 points; a metric of the newest point more than 3σ from the earlier points that had activity (at least 5) is reported."),
		func(ctx context.Context, in *periodInput) (*anomaliesOutput, error) {
			t, p, err := tenantPeriod(ctx, in.Period)
			if err != nil {
				return nil, err
			}
			r, err := m.App.Anomalies(ctx, t, p)
			if err != nil {
				return nil, unavailable(err, "anomalies_unavailable", "anomalies could not be computed; try again")
			}
			out := &anomaliesOutput{}
			out.Body.AnomalyReport = r
			out.Body.RequestID = request.From(ctx).ID
			return out, nil
		})
	huma.Register(api, get("get-overview", "/metrics/overview", "SLIs, anomalies and alerts in one answer",
		"The tenant's SLIs, anomalies and alert rules over the period in one answer, for a dashboard: what /metrics/slis, /metrics/anomalies and /metrics/alerts answer, read at one time."),
		func(ctx context.Context, in *periodInput) (*overviewOutput, error) {
			t, p, err := tenantPeriod(ctx, in.Period)
			if err != nil {
				return nil, err
			}
			r, err := m.App.Overview(ctx, t, p)
			if err != nil {
				return nil, unavailable(err, "overview_unavailable", "the overview could not be computed; try again")
			}
			out := &overviewOutput{}
			out.Body.Overview = r
			out.Body.RequestID = request.From(ctx).ID
			return out, nil
		})
	huma.Register(api, get("list-alerts", "/metrics/alerts", "The tenant's alert rules",
		"Rules with whether each is firing now. Rules are evaluated continuously in the background."),
		func(ctx context.Context, _ *struct{}) (*alertsOutput, error) {
			t, err := tenantOf(ctx)
			if err != nil {
				return nil, err
			}
			rules, err := m.Alerts.List(ctx, t)
			if err != nil {
				return nil, unavailable(err, "alerts_unavailable", "alert rules could not be read; try again")
			}
			out := &alertsOutput{}
			out.Body.Alerts = rules
			out.Body.RequestID = request.From(ctx).ID
			return out, nil
		})
	huma.Register(api, huma.Operation{OperationID: "put-alert", Method: http.MethodPut, Path: "/metrics/alerts", Tags: []string{tag},
		Summary: "Create or replace an alert rule", Description: "Validated; recorded as an event in the rule's stream. A rule that starts or stops firing records AlertFired/AlertResolved and POSTs a notice signed with HMAC-SHA256 (x-crispy-signature) to its webhookUrl."},
		func(ctx context.Context, in *putAlertInput) (*ruleOutput, error) {
			t, err := tenantOf(ctx)
			if err != nil {
				return nil, err
			}
			b := in.Body
			r := events.AlertRule{ID: strings.TrimSpace(b.ID), Name: strings.TrimSpace(b.Name), Metric: b.Metric, Comparator: b.Comparator,
				Threshold: b.Threshold, Period: b.Period, Enabled: b.Enabled == nil || *b.Enabled, WebhookURL: b.WebhookURL, For: b.For}
			if r.ID == "" {
				r.ID = uuid.NewString()
			}
			if r.Period == "" {
				r.Period = domain.DefaultPeriod
			}
			saved, err := m.Alerts.Save(ctx, t, r)
			if e, ok := apperr.As(err); ok && e.Code == alerts.CodeWebhookRefused {
				// A URL the server will not deliver to is a semantic error of the body: 422.
				return nil, huma.Error422UnprocessableEntity(e.Message, &huma.ErrorDetail{Location: "body.webhookUrl", Message: e.Message, Value: r.WebhookURL})
			}
			if err != nil {
				return nil, err
			}
			out := &ruleOutput{}
			out.Body.RuleView = saved
			out.Body.RequestID = request.From(ctx).ID
			return out, nil
		})
	huma.Register(api, huma.Operation{OperationID: "delete-alert", Method: http.MethodDelete, Path: "/metrics/alerts", Tags: []string{tag},
		Summary: "Delete an alert rule", Description: "404 when the tenant has no rule with that id."},
		func(ctx context.Context, in *deleteAlertInput) (*deleteOutput, error) {
			t, err := tenantOf(ctx)
			if err != nil {
				return nil, err
			}
			if err := m.Alerts.Delete(ctx, t, in.ID); err != nil {
				return nil, err
			}
			out := &deleteOutput{}
			out.Body.Deleted = in.ID
			out.Body.RequestID = request.From(ctx).ID
			return out, nil
		})
	if m.Prometheus != nil {
		op := huma.Operation{OperationID: "get-prometheus-metrics", Method: http.MethodGet, Path: "/metrics", Tags: []string{tag},
			Summary: "Prometheus metrics", Description: "Text exposition of the platform's metrics plus Go runtime and process metrics. No tenant needed; carries no per-user labels.",
			Responses: map[string]*huma.Response{"200": {Description: "Prometheus text exposition format 0.0.4", Content: map[string]*huma.MediaType{
				"text/plain": {Schema: &huma.Schema{Type: huma.TypeString}, Example: "# HELP crispy_http_requests_total HTTP requests by route and status.\n# TYPE crispy_http_requests_total counter\ncrispy_http_requests_total{route=\"POST /chat\",status=\"200\"} 12\n"},
			}}}}
		httpapi.Public(&op)
		huma.Register(api, op, func(ctx context.Context, _ *struct{}) (*promOutput, error) {
			var buf bytes.Buffer
			m.Prometheus(&buf)
			return &promOutput{ContentType: "text/plain; version=0.0.4; charset=utf-8", Body: buf.Bytes()}, nil
		})
	}
}

// unavailable passes an *apperr.Error through (503 catching_up while a read model catches up, among
// others) and wraps anything else as 503 with code.
func unavailable(err error, code, msg string) error {
	if _, ok := apperr.As(err); ok {
		return err
	}
	return apperr.Wrap(err, apperr.KindUnavailable, code, msg)
}
