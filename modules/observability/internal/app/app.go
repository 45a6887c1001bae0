// Package app answers the module's queries (usage, cost, SLIs, anomalies, overview) from the usage
// read model and the search statistics port.
package app

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/crispy-enigma/crispy/modules/observability/internal/alerts"
	"github.com/crispy-enigma/crispy/modules/observability/internal/domain"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// CacheFunc reads the search cache statistics of t in [since, until); nil means zeros.
type CacheFunc func(ctx context.Context, t tenant.ID, since, until time.Time) (domain.CacheStats, error)

// UsageModel is the usage read model (adapters.Usage): it refuses with 503 catching_up until it has
// caught up with the store.
type UsageModel interface {
	// Window sums t's usage from the bucket holding since to the one holding until.
	Window(ctx context.Context, t tenant.ID, since, until time.Time) (domain.Summary, error)
	// Series is n consecutive windows of step ending with the bucket holding until, oldest first.
	Series(ctx context.Context, t tenant.ID, until time.Time, step time.Duration, n int) ([]domain.Summary, error)
}

// Service holds what the queries read.
type Service struct {
	Model  UsageModel
	Prices domain.PriceTable
	Cache  CacheFunc
	Alerts *alerts.Engine
	Now    func() time.Time
}

func (s *Service) cache(ctx context.Context, t tenant.ID, since, until time.Time) (domain.CacheStats, error) {
	if s.Cache == nil {
		return domain.CacheStats{}, nil
	}
	c, err := s.Cache(ctx, t, since, until)
	if err != nil {
		return domain.CacheStats{}, fmt.Errorf("search cache statistics of %s: %w", t, err)
	}
	return c, nil
}

// Window is a period ending now.
type Window struct {
	Period string    `json:"period"`
	Since  time.Time `json:"since"`
	Until  time.Time `json:"until"`
}

func (s *Service) window(p domain.Period) Window {
	now := s.Now().UTC()
	return Window{Period: p.Name, Since: now.Add(-p.Span), Until: now}
}

// ModelUsage is one model's line of the usage report.
type ModelUsage struct {
	Model           string  `json:"model"`
	Requests        int64   `json:"requests"`
	Completed       int64   `json:"completed"`
	Failed          int64   `json:"failed"`
	Cancelled       int64   `json:"cancelled"`
	TokensIn        int64   `json:"tokensIn"`
	TokensOut       int64   `json:"tokensOut"`
	CachedTokens    int64   `json:"cachedTokens"`
	ReasoningTokens int64   `json:"reasoningTokens"`
	EstimatedTurns  int64   `json:"estimatedTurns" doc:"turns whose token counts were estimated because the provider reported none"`
	CostUSD         float64 `json:"costUsd"`
	Priced          bool    `json:"priced"`
}

// ToolUsage is one tool's line of the usage report.
type ToolUsage struct {
	Tool          string  `json:"tool"`
	Calls         int64   `json:"calls"`
	Failures      int64   `json:"failures"`
	AvgDurationMs float64 `json:"avgDurationMs"`
}

// UsageReport is GET /usage.
type UsageReport struct {
	Window
	Tenant          string       `json:"tenant"`
	Requests        int64        `json:"requests"`
	TokensIn        int64        `json:"tokensIn"`
	TokensOut       int64        `json:"tokensOut"`
	TotalTokens     int64        `json:"totalTokens"`
	CachedTokens    int64        `json:"cachedTokens"`
	ReasoningTokens int64        `json:"reasoningTokens"`
	ToolCalls       int64        `json:"toolCalls"`
	EstimatedCost   float64      `json:"estimatedCostUsd"`
	Currency        string       `json:"currency"`
	ByModel         []ModelUsage `json:"byModel"`
	ByTool          []ToolUsage  `json:"byTool"`
	GroupBy         string       `json:"groupBy,omitempty" doc:"the groupBy asked for (key, user or model)"`
	Groups          []GroupUsage `json:"groups,omitempty" doc:"every model call by groupBy, largest total tokens first; only with groupBy"`
}

// GroupUsage is one group's line of GET /usage?groupBy: a credential ("key:<id>"), a user id or a
// model; an empty group is the calls without one (a keyless tenant, no x-user-id).
type GroupUsage struct {
	Group           string  `json:"group"`
	Requests        int64   `json:"requests"`
	TokensIn        int64   `json:"tokensIn"`
	TokensOut       int64   `json:"tokensOut"`
	TotalTokens     int64   `json:"totalTokens"`
	CachedTokens    int64   `json:"cachedTokens"`
	ReasoningTokens int64   `json:"reasoningTokens"`
	CostUSD         float64 `json:"costUsd"`
}

// Usage groupings (GET /usage?groupBy).
const (
	GroupByKey   = "key"
	GroupByUser  = "user"
	GroupByModel = "model"
)

// groups is the report's Groups for groupBy: each group's models priced and summed.
func (s *Service) groups(sum domain.Summary, groupBy string) []GroupUsage {
	var src map[string]map[string]*domain.ModelUsage
	switch groupBy {
	case GroupByKey:
		src = sum.ByKey
	case GroupByUser:
		src = sum.ByUser
	case GroupByModel:
		src = map[string]map[string]*domain.ModelUsage{}
		for name, m := range sum.AllModels() {
			src[name] = map[string]*domain.ModelUsage{name: m}
		}
	default:
		return nil
	}
	out := make([]GroupUsage, 0, len(src))
	for g, models := range src {
		sub := domain.Summary{Models: models}
		costs, total := domain.Costs(sub, s.Prices)
		line := GroupUsage{Group: g, CostUSD: total}
		for _, c := range costs {
			line.Requests += c.Requests
			line.TokensIn += c.InputTokens
			line.TokensOut += c.OutputTokens
			line.CachedTokens += c.CachedTokens
			line.ReasoningTokens += c.Reasoning
		}
		line.TotalTokens = line.TokensIn + line.TokensOut
		out = append(out, line)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].TotalTokens != out[j].TotalTokens {
			return out[i].TotalTokens > out[j].TotalTokens
		}
		return out[i].Group < out[j].Group
	})
	return out
}

// Usage reports t's usage over period p, grouped by groupBy when set (GroupBy*).
func (s *Service) Usage(ctx context.Context, t tenant.ID, p domain.Period, groupBy string) (UsageReport, error) {
	w := s.window(p)
	sum, err := s.Model.Window(ctx, t, w.Since, w.Until)
	if err != nil {
		return UsageReport{}, err
	}
	costs, total := domain.Costs(sum, s.Prices)
	// Usage counts every model call: chat turns and the calls other modules make.
	tot, all := sum.AllTotal(), sum.AllModels()
	r := UsageReport{Window: w, Tenant: t.String(), Requests: tot.Requests, TokensIn: tot.Input, TokensOut: tot.Output,
		TotalTokens: tot.Input + tot.Output, CachedTokens: tot.Cached, ReasoningTokens: tot.Reasoning,
		ToolCalls: sum.ToolTotal().Calls, EstimatedCost: total, Currency: "USD", ByModel: []ModelUsage{}, ByTool: []ToolUsage{},
		GroupBy: groupBy, Groups: s.groups(sum, groupBy)}
	for _, c := range costs {
		m := all[c.Model]
		r.ByModel = append(r.ByModel, ModelUsage{Model: c.Model, Requests: m.Requests, Completed: m.Completed, Failed: m.Failed,
			Cancelled: m.Cancelled, TokensIn: m.Input, TokensOut: m.Output, CachedTokens: m.Cached, ReasoningTokens: m.Reasoning,
			EstimatedTurns: m.Estimated, CostUSD: c.CostUSD, Priced: c.Priced})
	}
	for _, name := range sum.ToolNames() {
		x := sum.Tools[name]
		avg := 0.0
		if x.Calls > 0 {
			avg = x.DurationMsSum / float64(x.Calls)
		}
		r.ByTool = append(r.ByTool, ToolUsage{Tool: name, Calls: x.Calls, Failures: x.Failures, AvgDurationMs: avg})
	}
	return r, nil
}

// CostReport is GET /metrics/cost.
type CostReport struct {
	Window
	Currency string             `json:"currency"`
	TotalUSD float64            `json:"totalCostUsd"`
	Requests int64              `json:"requests"`
	ByModel  []domain.ModelCost `json:"byModel"`
}

// Cost reports t's estimated cost over p.
func (s *Service) Cost(ctx context.Context, t tenant.ID, p domain.Period) (CostReport, error) {
	w := s.window(p)
	sum, err := s.Model.Window(ctx, t, w.Since, w.Until)
	if err != nil {
		return CostReport{}, err
	}
	costs, total := domain.Costs(sum, s.Prices)
	return CostReport{Window: w, Currency: "USD", TotalUSD: total, Requests: sum.AllTotal().Requests, ByModel: costs}, nil
}

// SLIReport is GET /metrics/slis.
type SLIReport struct {
	Window
	domain.SLIs
}

// SLIs reports t's indicators over p ending at now.
func (s *Service) SLIs(ctx context.Context, t tenant.ID, p domain.Period) (SLIReport, error) {
	w := s.window(p)
	slis, err := s.slisAt(ctx, t, w.Since, w.Until)
	return SLIReport{Window: w, SLIs: slis}, err
}

func (s *Service) slisAt(ctx context.Context, t tenant.ID, since, until time.Time) (domain.SLIs, error) {
	sum, err := s.Model.Window(ctx, t, since, until)
	if err != nil {
		return domain.SLIs{}, err
	}
	c, err := s.cache(ctx, t, since, until)
	if err != nil {
		return domain.SLIs{}, err
	}
	return domain.ComputeSLIs(sum, c, s.Prices), nil
}

// MetricValue is the alert evaluator: metric of t over p ending at now.
func (s *Service) MetricValue(ctx context.Context, t tenant.ID, metric string, p domain.Period, now time.Time) (float64, error) {
	slis, err := s.slisAt(ctx, t, now.Add(-p.Span), now)
	if err != nil {
		return 0, err
	}
	v, ok := slis.Value(metric)
	if !ok {
		return 0, fmt.Errorf("unknown metric %q", metric)
	}
	return v, nil
}

// AnomalyReport is GET /metrics/anomalies.
type AnomalyReport struct {
	Window
	Step      string           `json:"step" doc:"width of each point; the newest point is judged against the earlier ones"`
	Points    int              `json:"points"`
	Sigmas    float64          `json:"sigmas"`
	Anomalies []domain.Anomaly `json:"anomalies"`
}

// Anomalies splits p into domain.SeriesPoints windows and reports metrics of the newest window more
// than 3σ from the earlier windows that had activity (at least 5 of them).
func (s *Service) Anomalies(ctx context.Context, t tenant.ID, p domain.Period) (AnomalyReport, error) {
	w := s.window(p)
	step := p.Span / domain.SeriesPoints
	// Complete buckets only: the series ends with the last bucket that has ended, so steady traffic
	// does not look like a drop early in every bucket (the current one holds a few minutes at most).
	w.Until = domain.BucketStart(domain.BucketKey(w.Until))
	w.Since = w.Until.Add(-p.Span)
	sums, err := s.Model.Series(ctx, t, w.Until.Add(-time.Nanosecond), step, domain.SeriesPoints)
	if err != nil {
		return AnomalyReport{}, err
	}
	series := make([]domain.SLIs, len(sums))
	active := make([]bool, len(sums))
	for i, sum := range sums {
		c, err := s.cache(ctx, t, sum.Since, sum.Until)
		if err != nil {
			return AnomalyReport{}, err
		}
		series[i] = domain.ComputeSLIs(sum, c, s.Prices)
		active[i] = !sum.Empty() || c.TotalChecks > 0 || c.Hits+c.Misses > 0
	}
	out := domain.Anomalies(series, active)
	if out == nil {
		out = []domain.Anomaly{}
	}
	return AnomalyReport{Window: w, Step: step.String(), Points: domain.SeriesPoints, Sigmas: domain.Sigmas, Anomalies: out}, nil
}

// Overview is GET /metrics/overview.
type Overview struct {
	Window
	SLIs         domain.SLIs       `json:"slis"`
	Anomalies    []domain.Anomaly  `json:"anomalies"`
	Alerts       []alerts.RuleView `json:"alerts"`
	FiringAlerts int               `json:"firingAlerts"`
}

// Overview puts SLIs, anomalies and alert rules in one answer.
func (s *Service) Overview(ctx context.Context, t tenant.ID, p domain.Period) (Overview, error) {
	sl, err := s.SLIs(ctx, t, p)
	if err != nil {
		return Overview{}, err
	}
	an, err := s.Anomalies(ctx, t, p)
	if err != nil {
		return Overview{}, err
	}
	rules, err := s.Alerts.List(ctx, t)
	if err != nil {
		return Overview{}, err
	}
	firing := 0
	for _, r := range rules {
		if r.Firing {
			firing++
		}
	}
	return Overview{Window: sl.Window, SLIs: sl.SLIs, Anomalies: an.Anomalies, Alerts: rules, FiringAlerts: firing}, nil
}
