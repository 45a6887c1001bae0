package domain

import (
	"sort"
	"sync"
	"time"
)

// Stats is the read model behind GET /metrics/tools/execution: per tenant and tool, executions in
// one-minute buckets, fed by the ToolSucceeded and ToolFailed events in global order.
type Stats struct {
	mu      sync.Mutex
	lastPos uint64
	tenants map[string]map[string]map[int64]*bucket // tenant -> tool -> minute -> bucket
}

type bucket struct {
	n, ok, failed int
	sumMs         float64
}

// ToolStats is one tool's figures over a period.
type ToolStats struct {
	Tool           string
	Executions     int
	Successes      int
	Errors         int
	MeanDurationMs float64
}

// NewStats returns an empty read model.
func NewStats() *Stats { return &Stats{tenants: map[string]map[string]map[int64]*bucket{}} }

// Record adds one finished call. pos is the event's global position: a position at or below the last
// one recorded is a redelivery and is ignored.
func (s *Stats) Record(pos uint64, tenant, tool string, at time.Time, ok bool, durationMs float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if pos != 0 && pos <= s.lastPos {
		return
	}
	if pos != 0 {
		s.lastPos = pos
	}
	tools := s.tenants[tenant]
	if tools == nil {
		tools = map[string]map[int64]*bucket{}
		s.tenants[tenant] = tools
	}
	mins := tools[tool]
	if mins == nil {
		mins = map[int64]*bucket{}
		tools[tool] = mins
	}
	m := at.Unix() / 60
	b := mins[m]
	if b == nil {
		b = &bucket{}
		mins[m] = b
	}
	b.n++
	if ok {
		b.ok++
	} else {
		b.failed++
	}
	b.sumMs += durationMs
}

// Query sums the tenant's buckets whose minute lies in [since, until], by tool.
func (s *Stats) Query(tenant string, since, until time.Time) []ToolStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	lo, hi := since.Unix()/60, until.Unix()/60
	out := []ToolStats{}
	for tool, mins := range s.tenants[tenant] {
		ts := ToolStats{Tool: tool}
		var sum float64
		for m, b := range mins {
			if m < lo || m > hi {
				continue
			}
			ts.Executions += b.n
			ts.Successes += b.ok
			ts.Errors += b.failed
			sum += b.sumMs
		}
		if ts.Executions == 0 {
			continue
		}
		ts.MeanDurationMs = sum / float64(ts.Executions)
		out = append(out, ts)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Tool < out[j].Tool })
	return out
}

// Period parses SPEC §2's period: 1h, 24h (default when empty), 7d or 30d.
func Period(p string) (time.Duration, bool) {
	switch p {
	case "1h":
		return time.Hour, true
	case "", "24h":
		return 24 * time.Hour, true
	case "7d":
		return 7 * 24 * time.Hour, true
	case "30d":
		return 30 * 24 * time.Hour, true
	}
	return 0, false
}
