package domain

import (
	"sort"
	"sync"
	"time"

	"github.com/crispy-enigma/crispy/platform/tenant"
)

// BucketWidth is the resolution of the usage read model: every period is answered by summing the
// buckets it covers, so a period's start is rounded down to a bucket edge (at most 5 minutes early).
const BucketWidth = 5 * time.Minute

// Retention bounds how far back the read model keeps buckets: the longest period plus a margin.
const Retention = 31 * 24 * time.Hour

// ChatTurn is one finished chat turn (AssistantMessageCompleted or AssistantMessageFailed).
type ChatTurn struct {
	Model     string
	Completed bool
	Cancelled bool // the client went away: not counted as an error of the platform
	Tokens    Tokens
	Estimated bool
	LatencyMs float64
	TTFTMs    float64
	Fallbacks int
}

// ToolCall is one finished tool execution (ToolSucceeded or ToolFailed).
type ToolCall struct {
	Tool       string
	Succeeded  bool
	DurationMs float64
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

type bucket struct {
	models map[string]*ModelUsage
	tools  map[string]*ToolUsage
}

type tenantUsage struct {
	buckets map[int64]*bucket // key: unix seconds / bucket width
	newest  int64
}

// Usage is the per-tenant usage read model. It is fed in global order by the bus projection (or by
// replay), ignores events it has already applied (by global position), and is safe for concurrent use.
type Usage struct {
	mu      sync.RWMutex
	tenants map[tenant.ID]*tenantUsage
	last    uint64
}

// NewUsage returns an empty read model.
func NewUsage() *Usage { return &Usage{tenants: map[tenant.ID]*tenantUsage{}} }

func bucketKey(at time.Time) int64 { return at.Unix() / int64(BucketWidth/time.Second) }

// seen reports whether pos was applied already; it must be called with mu held for writing.
func (u *Usage) seen(pos uint64) bool {
	if pos == 0 {
		return false
	}
	if pos <= u.last {
		return true
	}
	u.last = pos
	return false
}

func (u *Usage) bucket(t tenant.ID, at time.Time) *bucket {
	tu := u.tenants[t]
	if tu == nil {
		tu = &tenantUsage{buckets: map[int64]*bucket{}}
		u.tenants[t] = tu
	}
	k := bucketKey(at)
	b := tu.buckets[k]
	if b == nil {
		b = &bucket{models: map[string]*ModelUsage{}, tools: map[string]*ToolUsage{}}
		tu.buckets[k] = b
		if k > tu.newest {
			tu.newest = k
			// Prune by event time, not the wall clock, so a rebuild keeps exactly what the live model kept.
			cutoff := k - int64(Retention/BucketWidth)
			for old := range tu.buckets {
				if old < cutoff {
					delete(tu.buckets, old)
				}
			}
		}
	}
	return b
}

// ApplyTurn adds a chat turn recorded at position pos (0: no deduplication) and time at.
func (u *Usage) ApplyTurn(pos uint64, t tenant.ID, at time.Time, turn ChatTurn) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.seen(pos) {
		return
	}
	b := u.bucket(t, at)
	model := turn.Model
	if model == "" {
		model = "unknown"
	}
	m := b.models[model]
	if m == nil {
		m = &ModelUsage{}
		b.models[model] = m
	}
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

// ApplyTool adds a tool call recorded at position pos and time at.
func (u *Usage) ApplyTool(pos uint64, t tenant.ID, at time.Time, c ToolCall) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.seen(pos) {
		return
	}
	b := u.bucket(t, at)
	tu := b.tools[c.Tool]
	if tu == nil {
		tu = &ToolUsage{}
		b.tools[c.Tool] = tu
	}
	tu.Calls++
	if !c.Succeeded {
		tu.Failures++
	}
	tu.DurationMsSum += c.DurationMs
}

// Summary is a tenant's usage over a window.
type Summary struct {
	Since, Until time.Time
	Models       map[string]*ModelUsage
	Tools        map[string]*ToolUsage
}

// Total sums every model.
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

// ModelNames returns the models in the summary, sorted.
func (s Summary) ModelNames() []string {
	out := make([]string, 0, len(s.Models))
	for k := range s.Models {
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
func (s Summary) Empty() bool { return len(s.Models) == 0 && len(s.Tools) == 0 }

// Window sums t's buckets from the one holding since to the one holding until, both included (so a
// period's start is rounded down to a bucket edge, and events at until count).
func (u *Usage) Window(t tenant.ID, since, until time.Time) Summary {
	return u.keys(t, since, until, bucketKey(since), bucketKey(until)+1)
}

// keys sums the buckets with keys in [lo, hi).
func (u *Usage) keys(t tenant.ID, since, until time.Time, lo, hi int64) Summary {
	s := Summary{Since: since, Until: until, Models: map[string]*ModelUsage{}, Tools: map[string]*ToolUsage{}}
	u.mu.RLock()
	defer u.mu.RUnlock()
	tu := u.tenants[t]
	if tu == nil {
		return s
	}
	// Iterate whichever is smaller: the window's buckets or the tenant's buckets.
	if hi-lo <= int64(len(tu.buckets)) {
		for k := lo; k < hi; k++ {
			if b := tu.buckets[k]; b != nil {
				s.addBucket(b)
			}
		}
	} else {
		for k, b := range tu.buckets {
			if k >= lo && k < hi {
				s.addBucket(b)
			}
		}
	}
	return s
}

func (s *Summary) addBucket(b *bucket) {
	for name, m := range b.models {
		acc := s.Models[name]
		if acc == nil {
			acc = &ModelUsage{}
			s.Models[name] = acc
		}
		acc.add(m)
	}
	for name, x := range b.tools {
		acc := s.Tools[name]
		if acc == nil {
			acc = &ToolUsage{}
			s.Tools[name] = acc
		}
		acc.Calls += x.Calls
		acc.Failures += x.Failures
		acc.DurationMsSum += x.DurationMsSum
	}
}

// Series splits the time up to until into n consecutive windows of step (rounded up to whole
// buckets), oldest first; the newest ends with the bucket holding until. No bucket counts twice.
func (u *Usage) Series(t tenant.ID, until time.Time, step time.Duration, n int) []Summary {
	width := int64((step + BucketWidth - 1) / BucketWidth)
	if width < 1 {
		width = 1
	}
	end := bucketKey(until) + 1
	out := make([]Summary, n)
	for i := 0; i < n; i++ {
		lo := end - int64(n-i)*width
		hi := lo + width
		out[i] = u.keys(t, time.Unix(lo*int64(BucketWidth/time.Second), 0).UTC(), time.Unix(hi*int64(BucketWidth/time.Second), 0).UTC(), lo, hi)
	}
	return out
}

// Tenants lists the tenants the model has seen, sorted.
func (u *Usage) Tenants() []tenant.ID {
	u.mu.RLock()
	defer u.mu.RUnlock()
	out := make([]tenant.ID, 0, len(u.tenants))
	for t := range u.tenants {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// LastPosition is the global position of the last event applied.
func (u *Usage) LastPosition() uint64 {
	u.mu.RLock()
	defer u.mu.RUnlock()
	return u.last
}
