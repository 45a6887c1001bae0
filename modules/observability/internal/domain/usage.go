package domain

import (
	"sort"
	"time"
)

// BucketWidth is the resolution of the usage read model: every period is answered by summing the
// buckets it covers, so a period's start is rounded down to a bucket edge (at most 5 minutes early).
const BucketWidth = 5 * time.Minute

// Retention bounds how far back the read model keeps buckets: the longest period plus a margin.
const Retention = 31 * 24 * time.Hour

// ChatTurn is one finished chat turn (AssistantMessageCompleted, AssistantMessageFailed or
// CompletionRecorded).
type ChatTurn struct {
	Model     string
	Completed bool
	Cancelled bool // the client went away: not counted as an error of the platform
	Tokens    Tokens
	Estimated bool
	LatencyMs float64
	TTFTMs    float64
	Fallbacks int
	// Key is the credential that made the call (the event's actor, "key:<id>"; empty: none) and
	// User the user id the client gave (empty: none): GET /usage?groupBy=key|user.
	Key, User string
}

// ToolCall is one finished tool execution (ToolSucceeded or ToolFailed).
type ToolCall struct {
	Tool       string
	Succeeded  bool
	DurationMs float64
	// ClientError: the call was refused for the caller's own fault (tooling's ToolFailed.CallersFault): counted as a
	// call, not as a failure of the tool.
	ClientError bool
}

// ModelUsage accumulates one model's turns.
type ModelUsage struct {
	Requests  int64 `json:"requests"`
	Completed int64 `json:"completed"`
	Failed    int64 `json:"failed"`
	Cancelled int64 `json:"cancelled"`
	Tokens
	Estimated    int64   `json:"-"` // turns whose usage was estimated
	Fallbacks    int64   `json:"-"`
	LatencyMsSum float64 `json:"-"`
	TTFTMsSum    float64 `json:"-"`
	TTFTCount    int64   `json:"-"`
}

func (m *ModelUsage) add(o *ModelUsage) {
	m.Requests += o.Requests
	m.Completed += o.Completed
	m.Failed += o.Failed
	m.Cancelled += o.Cancelled
	m.Input += o.Input
	m.Cached += o.Cached
	m.Output += o.Output
	m.Reasoning += o.Reasoning
	m.Estimated += o.Estimated
	m.Fallbacks += o.Fallbacks
	m.LatencyMsSum += o.LatencyMsSum
	m.TTFTMsSum += o.TTFTMsSum
	m.TTFTCount += o.TTFTCount
}

// ToolUsage accumulates one tool's calls.
type ToolUsage struct {
	Calls         int64
	Failures      int64
	DurationMsSum float64
}

// BucketKey is the usage bucket holding at: Unix seconds divided by the bucket width.
func BucketKey(at time.Time) int64 { return at.Unix() / int64(BucketWidth/time.Second) }

// BucketStart is the time a bucket begins.
func BucketStart(k int64) time.Time { return time.Unix(k*int64(BucketWidth/time.Second), 0).UTC() }

// RetainedBuckets is how many buckets before a tenant's newest one are kept: a bucket older than
// newest-RetainedBuckets is dropped when a newer bucket appears (by event time, not the wall clock,
// so a rebuild keeps exactly what the live model kept).
const RetainedBuckets = int64(Retention / BucketWidth)

// AddTurn folds one chat turn into a model's bucket totals.
func (m *ModelUsage) AddTurn(turn ChatTurn) {
	m.Requests++
	switch {
	case turn.Completed:
		m.Completed++
	case turn.Cancelled:
		m.Cancelled++
	default:
		m.Failed++
	}
	m.Input += turn.Tokens.Input
	m.Cached += turn.Tokens.Cached
	m.Output += turn.Tokens.Output
	m.Reasoning += turn.Tokens.Reasoning
	if turn.Estimated {
		m.Estimated++
	}
	m.Fallbacks += int64(turn.Fallbacks)
	m.LatencyMsSum += turn.LatencyMs
	if turn.TTFTMs > 0 {
		m.TTFTMsSum += turn.TTFTMs
		m.TTFTCount++
	}
}

// AddCall folds one tool call into a tool's bucket totals.
func (x *ToolUsage) AddCall(c ToolCall) {
	x.Calls++
	if !c.Succeeded && !c.ClientError {
		x.Failures++
	}
	x.DurationMsSum += c.DurationMs
}

// ModelName is the name a turn is counted under ("unknown" when the event names none).
func ModelName(model string) string {
	if model == "" {
		return "unknown"
	}
	return model
}

// Summary is a tenant's usage over a window.
type Summary struct {
	Since, Until time.Time
	Models       map[string]*ModelUsage // chat turns (sessions and stateless /v1 calls), by model
	// Calls are the other model calls (query rewrites, search answers, tool callbacks,
	// embeddings), by model: in usage and cost, not in the chat indicators.
	Calls map[string]*ModelUsage
	Tools map[string]*ToolUsage
	// ByKey and ByUser are every model call (chat turns and other calls) by credential and by
	// user id, each by model (so each group is priced per model).
	ByKey, ByUser map[string]map[string]*ModelUsage
}

// AddGroup adds one bucket's totals of model under group of g (ByKey or ByUser of a summary).
func AddGroup(g map[string]map[string]*ModelUsage, group, model string, m *ModelUsage) {
	ms := g[group]
	if ms == nil {
		ms = map[string]*ModelUsage{}
		g[group] = ms
	}
	acc := ms[model]
	if acc == nil {
		acc = &ModelUsage{}
		ms[model] = acc
	}
	acc.add(m)
}

// AllModels is every model call, chat turns and other calls together, by model (usage and cost).
func (s Summary) AllModels() map[string]*ModelUsage {
	if len(s.Calls) == 0 {
		return s.Models
	}
	out := make(map[string]*ModelUsage, len(s.Models)+len(s.Calls))
	for _, src := range []map[string]*ModelUsage{s.Models, s.Calls} {
		for name, m := range src {
			acc := out[name]
			if acc == nil {
				acc = &ModelUsage{}
				out[name] = acc
			}
			acc.add(m)
		}
	}
	return out
}

// AllTotal sums every model call (AllModels).
func (s Summary) AllTotal() ModelUsage {
	var t ModelUsage
	for _, m := range s.AllModels() {
		t.add(m)
	}
	return t
}

// Total sums the chat turns of every model.
func (s Summary) Total() ModelUsage {
	var t ModelUsage
	for _, m := range s.Models {
		t.add(m)
	}
	return t
}

// ToolTotal sums every tool.
func (s Summary) ToolTotal() ToolUsage {
	var t ToolUsage
	for _, x := range s.Tools {
		t.Calls += x.Calls
		t.Failures += x.Failures
		t.DurationMsSum += x.DurationMsSum
	}
	return t
}

// ModelNames returns the models of every call in the summary (AllModels), sorted.
func (s Summary) ModelNames() []string {
	all := s.AllModels()
	out := make([]string, 0, len(all))
	for k := range all {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ToolNames returns the tools in the summary, sorted.
func (s Summary) ToolNames() []string {
	out := make([]string, 0, len(s.Tools))
	for k := range s.Tools {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Empty reports whether nothing happened in the window.
func (s Summary) Empty() bool { return len(s.Models) == 0 && len(s.Calls) == 0 && len(s.Tools) == 0 }

// NewSummary is an empty summary of [since, until].
func NewSummary(since, until time.Time) Summary {
	return Summary{Since: since, Until: until, Models: map[string]*ModelUsage{}, Calls: map[string]*ModelUsage{}, Tools: map[string]*ToolUsage{},
		ByKey: map[string]map[string]*ModelUsage{}, ByUser: map[string]map[string]*ModelUsage{}}
}

// AddModel adds one bucket's totals of a model.
func (s *Summary) AddModel(name string, m *ModelUsage) {
	acc := s.Models[name]
	if acc == nil {
		acc = &ModelUsage{}
		s.Models[name] = acc
	}
	acc.add(m)
}

// AddCall adds one bucket's totals of a model's calls that are not chat turns.
func (s *Summary) AddCall(name string, m *ModelUsage) {
	if s.Calls == nil {
		s.Calls = map[string]*ModelUsage{}
	}
	acc := s.Calls[name]
	if acc == nil {
		acc = &ModelUsage{}
		s.Calls[name] = acc
	}
	acc.add(m)
}

// AddTool adds one bucket's totals of a tool.
func (s *Summary) AddTool(name string, x *ToolUsage) {
	acc := s.Tools[name]
	if acc == nil {
		acc = &ToolUsage{}
		s.Tools[name] = acc
	}
	acc.Calls += x.Calls
	acc.Failures += x.Failures
	acc.DurationMsSum += x.DurationMsSum
}

// WindowBuckets is the bucket range [lo, hi) of a window: from the bucket holding since to the one
// holding until, both included (so a period's start is rounded down to a bucket edge, and events at
// until count).
func WindowBuckets(since, until time.Time) (lo, hi int64) {
	return BucketKey(since), BucketKey(until) + 1
}

// SeriesBuckets splits the time up to until into n consecutive ranges of step (rounded up to whole
// buckets), oldest first, as bucket ranges [lo, hi); the newest ends with the bucket holding until.
// No bucket is in two ranges.
func SeriesBuckets(until time.Time, step time.Duration, n int) [][2]int64 {
	width := int64((step + BucketWidth - 1) / BucketWidth)
	if width < 1 {
		width = 1
	}
	end := BucketKey(until) + 1
	out := make([][2]int64, n)
	for i := 0; i < n; i++ {
		lo := end - int64(n-i)*width
		out[i] = [2]int64{lo, lo + width}
	}
	return out
}
