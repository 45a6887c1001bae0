package adapters

import (
	"bytes"
	"context"
	"encoding/binary"
	"math"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/crispy-enigma/crispy/modules/tooling/internal/domain"
	"github.com/crispy-enigma/crispy/platform/bus"
	"github.com/crispy-enigma/crispy/platform/readmodel"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// The execution statistics read model lives in its projection's bbolt bucket, so its memory stays
// flat however long the history, and a start resumes from its checkpoint instead of replaying the
// audit. One key per tenant, minute and tool:
//
//	tenant 0x00 minute (8 bytes, big-endian Unix minutes) tool  ->  calls, successes, errors (uint64), sum of ms (float64)
//
// Keys sort by tenant then time, so a period is one cursor range over that tenant's keys.
const statsValueLen = 32

// Outcome is how a finished call counts: a success, an error of the tool, or a call refused for the
// caller's own fault, which counts as a call but neither as a success nor as an error of the tool.
type Outcome int

const (
	Succeeded Outcome = iota
	Failed
	Refused
)

// RecordExecution adds one finished call to the statistics (the projection's ToolSucceeded and
// ToolFailed handlers).
func RecordExecution(b *bolt.Bucket, t tenant.ID, tool string, at time.Time, outcome Outcome, durationMs float64) error {
	key := statsKey(t, minuteOf(at), tool)
	var calls, oks, fails uint64
	var sum float64
	if v := b.Get(key); len(v) == statsValueLen {
		calls, oks, fails, sum = decodeStats(v)
	}
	calls++
	switch outcome {
	case Succeeded:
		oks++
	case Failed:
		fails++
	}
	sum += durationMs
	v := make([]byte, statsValueLen)
	binary.BigEndian.PutUint64(v[0:], calls)
	binary.BigEndian.PutUint64(v[8:], oks)
	binary.BigEndian.PutUint64(v[16:], fails)
	binary.BigEndian.PutUint64(v[24:], math.Float64bits(sum))
	return b.Put(key, v)
}

func decodeStats(v []byte) (calls, oks, fails uint64, sum float64) {
	return binary.BigEndian.Uint64(v[0:]), binary.BigEndian.Uint64(v[8:]), binary.BigEndian.Uint64(v[16:]),
		math.Float64frombits(binary.BigEndian.Uint64(v[24:]))
}

func minuteOf(at time.Time) uint64 {
	m := at.Unix() / 60
	if m < 0 {
		return 0
	}
	return uint64(m)
}

func statsKey(t tenant.ID, minute uint64, tool string) []byte {
	k := make([]byte, 0, len(t.String())+9+len(tool))
	k = append(k, t.String()...)
	k = append(k, 0)
	k = binary.BigEndian.AppendUint64(k, minute)
	return append(k, tool...)
}

// QueryExecutions sums the tenant's calls whose minute lies in [since, until], by tool, sorted by
// tool.
func QueryExecutions(b *bolt.Bucket, t tenant.ID, since, until time.Time) []domain.ToolStats {
	prefix := append([]byte(t.String()), 0)
	lo, hi := minuteOf(since), minuteOf(until)
	byTool := map[string]*domain.ToolStats{}
	sums := map[string]float64{}
	c := b.Cursor()
	for k, v := c.Seek(statsKey(t, lo, "")); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		rest := k[len(prefix):]
		if len(rest) < 8 || len(v) != statsValueLen {
			continue
		}
		if binary.BigEndian.Uint64(rest) > hi {
			break
		}
		tool := string(rest[8:])
		calls, oks, fails, sum := decodeStats(v)
		ts := byTool[tool]
		if ts == nil {
			ts = &domain.ToolStats{Tool: tool}
			byTool[tool] = ts
		}
		ts.Executions += int(calls)
		ts.Successes += int(oks)
		ts.Errors += int(fails)
		sums[tool] += sum
	}
	out := make([]domain.ToolStats, 0, len(byTool))
	for tool, ts := range byTool {
		if ts.Executions == 0 {
			continue
		}
		ts.MeanDurationMs = sums[tool] / float64(ts.Executions)
		out = append(out, *ts)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Tool < out[j].Tool })
	return out
}

// ExecutionStats answers the statistics queries from the projection: 503 catching_up until it has
// caught up with the store, never a partial answer.
type ExecutionStats struct{ Projection *bus.Projection }

// Query sums the tenant's calls over [since, until] by tool.
func (s ExecutionStats) Query(ctx context.Context, t tenant.ID, since, until time.Time) ([]domain.ToolStats, error) {
	var out []domain.ToolStats
	err := s.Projection.View(ctx, func(tx *readmodel.Tx) error {
		out = QueryExecutions(tx.Bucket(), t, since, until)
		return nil
	})
	return out, err
}
