// Package adapters keeps the module's read models in their projections' bbolt buckets (usage and
// cost; alert rules and their state), so memory stays flat however long the history, and a start
// resumes from the checkpoint instead of replaying the store.
package adapters

import (
	"bytes"
	"context"
	"encoding/binary"
	"math"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/crispy-enigma/crispy/modules/observability/internal/domain"
	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/bus"
	"github.com/crispy-enigma/crispy/platform/readmodel"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// The usage read model, one key per tenant, 5-minute bucket and model or tool:
//
//	tenant 0x00 bucket (8 bytes, big-endian BucketKey) 'm' model  ->  ModelUsage (13 × 8 bytes)
//	tenant 0x00 bucket                                 'c' model  ->  ModelUsage of the model calls that are
//	                                                                  not chat turns (rewrites, answers,
//	                                                                  tool callbacks, embeddings)
//	tenant 0x00 bucket                                 't' tool   ->  ToolUsage (3 × 8 bytes)
//	tenant 0x00 bucket                                 'k' key 0x00 model   ->  ModelUsage of every model call
//	                                                                            of that credential (the actor)
//	tenant 0x00 bucket                                 'u' user 0x00 model  ->  the same by user id
//	tenant 0x01                                                   ->  the tenant's newest bucket (8 bytes)
//
// Tenant ids never hold 0x00 or 0x01, so a tenant's keys are one contiguous range sorted by time,
// and a period is one cursor range. Buckets more than domain.Retention older than the tenant's
// newest are deleted when a newer bucket appears (by event time: a rebuild keeps what the live
// model kept).
const (
	kindModel = 'm'
	kindCall  = 'c'
	kindTool  = 't'
	kindKey   = 'k'
	kindUser  = 'u'

	modelValueLen = 13 * 8
	toolValueLen  = 3 * 8
)

func tenantPrefix(t tenant.ID) []byte { return append([]byte(t.String()), 0) }

func newestKey(t tenant.ID) []byte { return append([]byte(t.String()), 1) }

func bucketPrefix(t tenant.ID, k int64) []byte {
	return binary.BigEndian.AppendUint64(tenantPrefix(t), uint64(max(k, 0)))
}

func usageKey(t tenant.ID, k int64, kind byte, name string) []byte {
	return append(append(bucketPrefix(t, k), kind), name...)
}

// touchBucket records that bucket k of t is written, dropping buckets past the retention when it is
// the tenant's newest.
func touchBucket(b *bolt.Bucket, p *readmodel.Pending, t tenant.ID, k int64) error {
	nk := newestKey(t)
	var newest int64
	if v := p.Get(nk); len(v) == 8 {
		newest = int64(binary.BigEndian.Uint64(v))
	}
	if k <= newest {
		return nil
	}
	p.Put(nk, binary.BigEndian.AppendUint64(nil, uint64(k)))
	cutoff := k - domain.RetainedBuckets
	if cutoff <= 0 {
		return nil
	}
	prefix, end := tenantPrefix(t), bucketPrefix(t, cutoff)
	p.Forget(prefix, end)
	var old [][]byte
	c := b.Cursor()
	for key, _ := c.Seek(prefix); key != nil && bytes.Compare(key, end) < 0; key, _ = c.Next() {
		old = append(old, bytes.Clone(key))
	}
	for _, key := range old {
		if err := b.Delete(key); err != nil {
			return err
		}
	}
	return nil
}

// pendingUsageKey names the usage model's readmodel.Pending: while it catches up, a commit holds
// thousands of turns, most of them adding to the same few keys (a tenant's 5-minute bucket and
// model, by key and by user), each of which was read and written back at every event.
type pendingUsageKey struct{}

// RecordTurn adds a chat turn of t at event time at (a projection handler).
func RecordTurn(tx *readmodel.Tx, t tenant.ID, at time.Time, turn domain.ChatTurn) error {
	return recordModel(tx, t, at, kindModel, turn)
}

// RecordCall adds a model call of t that is not a chat turn (a metered call of another module:
// CompletionRecorded with a purpose): counted in usage and cost, not in the chat indicators.
func RecordCall(tx *readmodel.Tx, t tenant.ID, at time.Time, call domain.ChatTurn) error {
	return recordModel(tx, t, at, kindCall, call)
}

func recordModel(tx *readmodel.Tx, t tenant.ID, at time.Time, kind byte, turn domain.ChatTurn) error {
	b, p := tx.Bucket(), tx.Pending(pendingUsageKey{})
	k := domain.BucketKey(at)
	if err := touchBucket(b, p, t, k); err != nil {
		return err
	}
	key := usageKey(t, k, kind, domain.ModelName(turn.Model))
	var m domain.ModelUsage
	if v := p.Get(key); len(v) == modelValueLen {
		m = decodeModel(v)
	}
	m.AddTurn(turn)
	p.Put(key, encodeModel(&m))
	// The same call by credential and by user id (GET /usage?groupBy=key|user).
	for _, g := range []struct {
		kind byte
		name string
	}{{kindKey, turn.Key}, {kindUser, turn.User}} {
		gk := usageKey(t, k, g.kind, g.name+"\x00"+domain.ModelName(turn.Model))
		var gm domain.ModelUsage
		if v := p.Get(gk); len(v) == modelValueLen {
			gm = decodeModel(v)
		}
		gm.AddTurn(turn)
		p.Put(gk, encodeModel(&gm))
	}
	return nil
}

// RecordTool adds a tool call of t at event time at (a projection handler).
func RecordTool(tx *readmodel.Tx, t tenant.ID, at time.Time, call domain.ToolCall) error {
	b, p := tx.Bucket(), tx.Pending(pendingUsageKey{})
	k := domain.BucketKey(at)
	if err := touchBucket(b, p, t, k); err != nil {
		return err
	}
	key := usageKey(t, k, kindTool, call.Tool)
	var x domain.ToolUsage
	if v := p.Get(key); len(v) == toolValueLen {
		x = decodeTool(v)
	}
	x.AddCall(call)
	p.Put(key, encodeTool(&x))
	return nil
}

func encodeModel(m *domain.ModelUsage) []byte {
	v := make([]byte, 0, modelValueLen)
	for _, n := range []int64{m.Requests, m.Completed, m.Failed, m.Cancelled, m.Input, m.Cached, m.Output, m.Reasoning,
		m.Estimated, m.Fallbacks, int64(math.Float64bits(m.LatencyMsSum)), int64(math.Float64bits(m.TTFTMsSum)), m.TTFTCount} {
		v = binary.BigEndian.AppendUint64(v, uint64(n))
	}
	return v
}

func decodeModel(v []byte) domain.ModelUsage {
	f := func(i int) int64 { return int64(binary.BigEndian.Uint64(v[8*i:])) }
	return domain.ModelUsage{Requests: f(0), Completed: f(1), Failed: f(2), Cancelled: f(3),
		Tokens:    domain.Tokens{Input: f(4), Cached: f(5), Output: f(6), Reasoning: f(7)},
		Estimated: f(8), Fallbacks: f(9), LatencyMsSum: math.Float64frombits(uint64(f(10))),
		TTFTMsSum: math.Float64frombits(uint64(f(11))), TTFTCount: f(12)}
}

func encodeTool(x *domain.ToolUsage) []byte {
	v := binary.BigEndian.AppendUint64(make([]byte, 0, toolValueLen), uint64(x.Calls))
	v = binary.BigEndian.AppendUint64(v, uint64(x.Failures))
	return binary.BigEndian.AppendUint64(v, math.Float64bits(x.DurationMsSum))
}

func decodeTool(v []byte) domain.ToolUsage {
	return domain.ToolUsage{Calls: int64(binary.BigEndian.Uint64(v)), Failures: int64(binary.BigEndian.Uint64(v[8:])),
		DurationMsSum: math.Float64frombits(binary.BigEndian.Uint64(v[16:]))}
}

// scan calls fn for every key of t in buckets [lo, hi), in bucket order.
func scan(b *bolt.Bucket, t tenant.ID, lo, hi int64, fn func(k int64, kind byte, name string, v []byte)) {
	prefix := tenantPrefix(t)
	c := b.Cursor()
	for key, v := c.Seek(bucketPrefix(t, lo)); key != nil && bytes.HasPrefix(key, prefix); key, v = c.Next() {
		rest := key[len(prefix):]
		if len(rest) < 9 {
			continue
		}
		k := int64(binary.BigEndian.Uint64(rest))
		if k >= hi {
			return
		}
		fn(k, rest[8], string(rest[9:]), v)
	}
}

func addTo(s *domain.Summary, kind byte, name string, v []byte) {
	switch {
	case kind == kindModel && len(v) == modelValueLen:
		m := decodeModel(v)
		s.AddModel(name, &m)
	case kind == kindCall && len(v) == modelValueLen:
		m := decodeModel(v)
		s.AddCall(name, &m)
	case kind == kindTool && len(v) == toolValueLen:
		x := decodeTool(v)
		s.AddTool(name, &x)
	case (kind == kindKey || kind == kindUser) && len(v) == modelValueLen:
		// group 0x00 model: the model never holds 0x00, a client's user id might.
		i := strings.LastIndexByte(name, 0)
		if i < 0 {
			return
		}
		m := decodeModel(v)
		g := s.ByKey
		if kind == kindUser {
			g = s.ByUser
		}
		if g != nil {
			domain.AddGroup(g, name[:i], name[i+1:], &m)
		}
	}
}

// QueryWindow sums t's buckets from the one holding since to the one holding until.
func QueryWindow(b *bolt.Bucket, t tenant.ID, since, until time.Time) domain.Summary {
	s := domain.NewSummary(since, until)
	lo, hi := domain.WindowBuckets(since, until)
	scan(b, t, lo, hi, func(_ int64, kind byte, name string, v []byte) { addTo(&s, kind, name, v) })
	return s
}

// QuerySeries is n consecutive windows of step ending with the bucket holding until, oldest
// first (domain.SeriesBuckets).
func QuerySeries(b *bolt.Bucket, t tenant.ID, until time.Time, step time.Duration, n int) []domain.Summary {
	ranges := domain.SeriesBuckets(until, step, n)
	out := make([]domain.Summary, n)
	for i, r := range ranges {
		out[i] = domain.NewSummary(domain.BucketStart(r[0]), domain.BucketStart(r[1]))
	}
	if n == 0 {
		return out
	}
	lo, width := ranges[0][0], ranges[0][1]-ranges[0][0]
	scan(b, t, lo, ranges[n-1][1], func(k int64, kind byte, name string, v []byte) {
		addTo(&out[(k-lo)/width], kind, name, v)
	})
	return out
}

// errNotRegistered answers the queries of a module whose Register was not called (no read model).
var errNotRegistered = apperr.New(apperr.KindUnavailable, "read_model_unavailable", "this read model is not running")

// Usage answers the usage queries from the projection: 503 catching_up until it has caught up with
// the store, never a partial answer.
type Usage struct{ Projection *bus.Projection }

// Window sums t's usage over [since, until] (since rounded down to a bucket edge).
func (u Usage) Window(ctx context.Context, t tenant.ID, since, until time.Time) (domain.Summary, error) {
	var s domain.Summary
	if u.Projection == nil {
		return s, errNotRegistered
	}
	err := u.Projection.View(ctx, func(tx *readmodel.Tx) error {
		s = QueryWindow(tx.Bucket(), t, since, until)
		return nil
	})
	return s, err
}

// Series is QuerySeries on a consistent snapshot.
func (u Usage) Series(ctx context.Context, t tenant.ID, until time.Time, step time.Duration, n int) ([]domain.Summary, error) {
	var out []domain.Summary
	if u.Projection == nil {
		return nil, errNotRegistered
	}
	err := u.Projection.View(ctx, func(tx *readmodel.Tx) error {
		out = QuerySeries(tx.Bucket(), t, until, step, n)
		return nil
	})
	return out, err
}
