package domain

import "math"

// CacheStats are the search cache's numbers for a window, from the retrieval module (SPEC
// /metrics/search-cache). Zero when retrieval is not wired.
type CacheStats struct {
	Hits         int64   `json:"hits"`
	Misses       int64   `json:"misses"`
	TotalChecks  int64   `json:"totalChecks"`
	HitRate      float64 `json:"hitRate"`
	AvgLatencyMs float64 `json:"avgLatencyMs"`
}

// ChatSLI are the chat turns' indicators.
type ChatSLI struct {
	Requests     int64   `json:"requests"`
	Completed    int64   `json:"completed"`
	Failed       int64   `json:"failed"`
	Cancelled    int64   `json:"cancelled" doc:"turns the client abandoned; not counted as errors"`
	SuccessRate  float64 `json:"successRate" doc:"completed / (completed + failed); 1 when there were none"`
	ErrorRate    float64 `json:"errorRate"`
	AvgLatencyMs float64 `json:"avgLatencyMs"`
	AvgTTFTMs    float64 `json:"avgTtftMs"`
	FallbackRate float64 `json:"fallbackRate" doc:"fallback attempts per turn"`
}

// ToolSLI are the tool executions' indicators.
type ToolSLI struct {
	Calls         int64   `json:"calls"`
	Failures      int64   `json:"failures"`
	SuccessRate   float64 `json:"successRate"`
	ErrorRate     float64 `json:"errorRate"`
	AvgDurationMs float64 `json:"avgDurationMs"`
}

// SearchSLI are the retrieval indicators.
type SearchSLI struct {
	Queries      int64   `json:"queries"`
	AvgLatencyMs float64 `json:"avgLatencyMs"`
}

// CostSLI are the spending indicators.
type CostSLI struct {
	TotalUSD      float64 `json:"totalUsd"`
	PerRequestUSD float64 `json:"perRequestUsd"`
	Tokens        int64   `json:"tokens"`
	InputTokens   int64   `json:"inputTokens"`
	OutputTokens  int64   `json:"outputTokens"`
}

// SLIs are a tenant's service level indicators over a window.
type SLIs struct {
	Chat   ChatSLI    `json:"chat"`
	Tools  ToolSLI    `json:"tools"`
	Cache  CacheStats `json:"cache"`
	Search SearchSLI  `json:"search"`
	Cost   CostSLI    `json:"cost"`
}

// ModelCost is one model's tokens and cost.
type ModelCost struct {
	Model        string  `json:"model"`
	Requests     int64   `json:"requests"`
	InputTokens  int64   `json:"inputTokens"`
	CachedTokens int64   `json:"cachedInputTokens"`
	OutputTokens int64   `json:"outputTokens"`
	Reasoning    int64   `json:"reasoningTokens"`
	CostUSD      float64 `json:"costUsd"`
	Priced       bool    `json:"priced" doc:"false when the price table does not know the model (cost counted as 0)"`
}

// Costs prices every model of s, sorted by model name, and the total.
func Costs(s Summary, prices PriceTable) ([]ModelCost, float64) {
	var total float64
	all := s.AllModels()
	out := make([]ModelCost, 0, len(all))
	for _, name := range s.ModelNames() {
		m := all[name]
		p, ok := prices.Lookup(name)
		c := p.Cost(m.Tokens)
		total += c
		out = append(out, ModelCost{Model: name, Requests: m.Requests, InputTokens: m.Input, CachedTokens: m.Cached,
			OutputTokens: m.Output, Reasoning: m.Reasoning, CostUSD: round6(c), Priced: ok})
	}
	return out, round6(total)
}

func round6(v float64) float64 { return math.Round(v*1e6) / 1e6 }

func ratio(n, d float64, empty float64) float64 {
	if d == 0 {
		return empty
	}
	return n / d
}

// ComputeSLIs derives the indicators of a window.
func ComputeSLIs(s Summary, cache CacheStats, prices PriceTable) SLIs {
	tot := s.Total()
	var out SLIs
	decided := float64(tot.Completed + tot.Failed)
	out.Chat = ChatSLI{
		Requests: tot.Requests, Completed: tot.Completed, Failed: tot.Failed, Cancelled: tot.Cancelled,
		SuccessRate:  ratio(float64(tot.Completed), decided, 1),
		ErrorRate:    ratio(float64(tot.Failed), decided, 0),
		AvgLatencyMs: ratio(tot.LatencyMsSum, float64(tot.Requests), 0),
		AvgTTFTMs:    ratio(tot.TTFTMsSum, float64(tot.TTFTCount), 0),
		FallbackRate: ratio(float64(tot.Fallbacks), float64(tot.Requests), 0),
	}
	tt := s.ToolTotal()
	out.Tools = ToolSLI{Calls: tt.Calls, Failures: tt.Failures,
		SuccessRate:   ratio(float64(tt.Calls-tt.Failures), float64(tt.Calls), 1),
		ErrorRate:     ratio(float64(tt.Failures), float64(tt.Calls), 0),
		AvgDurationMs: ratio(tt.DurationMsSum, float64(tt.Calls), 0)}
	if cache.TotalChecks == 0 {
		cache.TotalChecks = cache.Hits + cache.Misses
	}
	if cache.HitRate == 0 && cache.TotalChecks > 0 {
		cache.HitRate = float64(cache.Hits) / float64(cache.TotalChecks)
	}
	out.Cache = cache
	out.Search = SearchSLI{Queries: cache.TotalChecks, AvgLatencyMs: cache.AvgLatencyMs}
	// Cost and tokens count every model call; per request is per chat turn, what a user asked for.
	_, total := Costs(s, prices)
	all := s.AllTotal()
	out.Cost = CostSLI{TotalUSD: total, PerRequestUSD: round6(ratio(total, float64(tot.Requests), 0)),
		Tokens: all.Input + all.Output, InputTokens: all.Input, OutputTokens: all.Output}
	return out
}

// Metric names that alert rules and anomaly detection understand.
const (
	MetricRequests       = "requests"
	MetricChatErrorRate  = "chatErrorRate"
	MetricChatLatencyMs  = "chatLatencyMs"
	MetricChatTTFTMs     = "chatTtftMs"
	MetricTokens         = "tokens"
	MetricInputTokens    = "inputTokens"
	MetricOutputTokens   = "outputTokens"
	MetricCostUSD        = "costUsd"
	MetricToolCalls      = "toolCalls"
	MetricToolErrorRate  = "toolErrorRate"
	MetricToolDurationMs = "toolDurationMs"
	MetricCacheHitRate   = "cacheHitRate"
	MetricSearchLatency  = "searchLatencyMs"
	MetricSearchQueries  = "searchQueries"
)

// MetricNames lists every metric, in a stable order.
var MetricNames = []string{MetricRequests, MetricChatErrorRate, MetricChatLatencyMs, MetricChatTTFTMs, MetricTokens,
	MetricInputTokens, MetricOutputTokens, MetricCostUSD, MetricToolCalls, MetricToolErrorRate, MetricToolDurationMs,
	MetricCacheHitRate, MetricSearchLatency, MetricSearchQueries}

// Value reads one metric from the indicators.
func (s SLIs) Value(metric string) (float64, bool) {
	switch metric {
	case MetricRequests:
		return float64(s.Chat.Requests), true
	case MetricChatErrorRate:
		return s.Chat.ErrorRate, true
	case MetricChatLatencyMs:
		return s.Chat.AvgLatencyMs, true
	case MetricChatTTFTMs:
		return s.Chat.AvgTTFTMs, true
	case MetricTokens:
		return float64(s.Cost.Tokens), true
	case MetricInputTokens:
		return float64(s.Cost.InputTokens), true
	case MetricOutputTokens:
		return float64(s.Cost.OutputTokens), true
	case MetricCostUSD:
		return s.Cost.TotalUSD, true
	case MetricToolCalls:
		return float64(s.Tools.Calls), true
	case MetricToolErrorRate:
		return s.Tools.ErrorRate, true
	case MetricToolDurationMs:
		return s.Tools.AvgDurationMs, true
	case MetricCacheHitRate:
		return s.Cache.HitRate, true
	case MetricSearchLatency:
		return s.Search.AvgLatencyMs, true
	case MetricSearchQueries:
		return float64(s.Search.Queries), true
	}
	return 0, false
}

// KnownMetric reports whether name is a metric.
func KnownMetric(name string) bool {
	_, ok := SLIs{}.Value(name)
	return ok
}
