package app

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/crispy-enigma/crispy/modules/retrieval/events"
	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// Stats counts search cache checks per tenant in one-minute buckets, for GET /metrics/search-cache.
//
// With a Durable read model (serve), the counts of this replica are kept in memory only until Flush
// records them as events (retrieval.SearchStatsRecorded, one per tenant and minute, in
// t-{tenant}.searchstats-{yyyymmdd}); a projection of those events (every replica's) is the
// statistics, checkpointed with the other read models: they survive restarts and are summed over
// replicas. A crash loses at most the checks since the last Flush. Without one (the CLI, unit
// tests), the counts live in memory.
type Stats struct {
	mu      sync.Mutex
	pending map[tenant.ID]map[int64]*bucket // unix minute -> counts not yet recorded
	// inflight: recorded, maybe not yet in the read model (counted until it reflects their position)
	inflight []inflight
	// Durable, when set, sums the recorded minutes of a tenant (the projection), and says up to
	// which position its snapshot reflects the store.
	Durable func(t tenant.ID, from, to int64) (hits, misses int64, latencyMs float64, at eventstore.Position, err error)
}

type inflight struct {
	pos     eventstore.Position
	t       tenant.ID
	minutes map[int64]*bucket
}

type bucket struct {
	hits, misses int64
	latencyMs    float64
}

// NewStats builds empty statistics.
func NewStats() *Stats { return &Stats{pending: map[tenant.ID]map[int64]*bucket{}} }

// Record notes one search: whether the cache answered, and how long the search took.
func (s *Stats) Record(t tenant.ID, at time.Time, hit bool, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.pending[t]
	if m == nil {
		m = map[int64]*bucket{}
		s.pending[t] = m
	}
	minute := at.Unix() / 60
	b := m[minute]
	if b == nil {
		b = &bucket{}
		m[minute] = b
		if s.Durable == nil {
			for k := range m { // drop buckets older than the longest period
				if k < minute-30*24*60 {
					delete(m, k)
				}
			}
		}
	}
	if hit {
		b.hits++
	} else {
		b.misses++
	}
	b.latencyMs += float64(d.Microseconds()) / 1000
}

// Flush records the pending counts as events, one append per tenant and day. Until an append
// succeeds its counts stay pending (and counted); once it has, they move to inflight in one step, so
// a concurrent Window never misses or doubles them.
func (s *Stats) Flush(ctx context.Context, store eventstore.Store) error {
	s.dropProjected()
	s.mu.Lock()
	snap := make(map[tenant.ID]map[int64]bucket, len(s.pending))
	for t, minutes := range s.pending {
		m := make(map[int64]bucket, len(minutes))
		for k, b := range minutes {
			m[k] = *b
		}
		snap[t] = m
	}
	s.mu.Unlock()
	var firstErr error
	for t, minutes := range snap {
		byDay := map[string][]eventstore.EventData{}
		dayMinutes := map[string][]int64{}
		for minute, b := range minutes {
			day := time.Unix(minute*60, 0).UTC().Format("20060102")
			d, err := eventstore.NewEventData(events.TypeSearchStatsRecorded,
				events.SearchStatsRecorded{Minute: minute, Hits: b.hits, Misses: b.misses, LatencyMs: b.latencyMs})
			if err != nil {
				return err
			}
			byDay[day] = append(byDay[day], d)
			dayMinutes[day] = append(dayMinutes[day], minute)
		}
		for day, evs := range byDay {
			st, err := tenant.NewStream(t, events.StatsCategory, day)
			var ar eventstore.AppendResult
			if err == nil {
				ar, err = store.Append(ctx, st, eventstore.Any, evs...)
			}
			if err != nil {
				if firstErr == nil {
					firstErr = fmt.Errorf("record %s search statistics: %w", t, err)
				}
				continue
			}
			f := inflight{pos: ar.Position, t: t, minutes: map[int64]*bucket{}}
			s.mu.Lock()
			for _, m := range dayMinutes[day] {
				sent := minutes[m]
				f.minutes[m] = &sent
				if cur := s.pending[t][m]; cur != nil {
					cur.hits -= sent.hits
					cur.misses -= sent.misses
					cur.latencyMs -= sent.latencyMs
					if cur.hits == 0 && cur.misses == 0 {
						delete(s.pending[t], m)
					}
				}
			}
			if len(s.pending[t]) == 0 {
				delete(s.pending, t)
			}
			s.inflight = append(s.inflight, f)
			s.mu.Unlock()
		}
	}
	return firstErr
}

// dropProjected forgets the recorded appends the read model reflects, so that they do not pile up
// when nobody reads the statistics (Window does the same on every read). A read model that cannot
// answer (catching up) keeps them for the next try.
func (s *Stats) dropProjected() {
	if s.Durable == nil {
		return
	}
	s.mu.Lock()
	if len(s.inflight) == 0 {
		s.mu.Unlock()
		return
	}
	t := s.inflight[0].t
	s.mu.Unlock()
	_, _, _, at, err := s.Durable(t, 1, 0) // an empty range: only the position
	if err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	kept := s.inflight[:0]
	for _, f := range s.inflight {
		if f.pos > at {
			kept = append(kept, f)
		}
	}
	clear(s.inflight[len(kept):])
	s.inflight = kept
}

// CacheStats is GET /metrics/search-cache.
type CacheStats struct {
	Hits, Misses, TotalChecks int64
	HitRate, AvgLatencyMs     float64
}

// Periods maps the SPEC's period names to durations.
var Periods = map[string]time.Duration{"1h": time.Hour, "24h": 24 * time.Hour, "7d": 7 * 24 * time.Hour, "30d": 30 * 24 * time.Hour}

// ParsePeriod validates a period ("" is 24h).
func ParsePeriod(p string) (time.Duration, error) {
	if p == "" {
		p = "24h"
	}
	d, ok := Periods[p]
	if !ok {
		return 0, apperr.Invalid("retrieval.invalidPeriod", "query.period", fmt.Sprintf("period %q must be 1h, 24h, 7d or 30d", p))
	}
	return d, nil
}

// Cache sums t's checks over the period ending at now.
func (s *Stats) Cache(t tenant.ID, now time.Time, period time.Duration) (CacheStats, error) {
	return s.Window(t, now.Add(-period), now)
}

// Window sums t's checks in the minutes from since to until (both inclusive, to the minute): the
// recorded ones (503 catching_up while their read model catches up) and the pending ones.
func (s *Stats) Window(t tenant.ID, since, until time.Time) (CacheStats, error) {
	from, to := since.Unix()/60, until.Unix()/60
	var out CacheStats
	var lat float64
	var at eventstore.Position
	if s.Durable != nil {
		h, m, l, pos, err := s.Durable(t, from, to)
		if err != nil {
			return CacheStats{}, err
		}
		out.Hits, out.Misses, lat, at = h, m, l, pos
	}
	add := func(minutes map[int64]*bucket) {
		for k, b := range minutes {
			if k >= from && k <= to {
				out.Hits += b.hits
				out.Misses += b.misses
				lat += b.latencyMs
			}
		}
	}
	s.mu.Lock()
	add(s.pending[t])
	kept := s.inflight[:0]
	for _, f := range s.inflight {
		if f.pos <= at {
			continue // in the read model now
		}
		kept = append(kept, f)
		if f.t == t {
			add(f.minutes)
		}
	}
	clear(s.inflight[len(kept):])
	s.inflight = kept
	s.mu.Unlock()
	out.TotalChecks = out.Hits + out.Misses
	if out.TotalChecks > 0 {
		out.HitRate = float64(out.Hits) / float64(out.TotalChecks)
		out.AvgLatencyMs = lat / float64(out.TotalChecks)
	}
	return out, nil
}

// The search statistics read model, in its projection's bucket: one key per tenant and minute,
//
//	tenant 0x00 minute (8 bytes, big-endian)  ->  hits, misses (uint64), sum of latency ms (float64)
//
// so a period is one cursor range over the tenant's keys, and no key of another tenant is read.
const statsValueLen = 24

func statsKey(t tenant.ID, minute int64) []byte {
	k := make([]byte, 0, len(t.String())+9)
	k = append(k, t.String()...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint64(k, uint64(max(minute, 0)))
}

// RecordStats adds one SearchStatsRecorded event to the read model (the projection's handler).
func RecordStats(b *bolt.Bucket, t tenant.ID, ev events.SearchStatsRecorded) error {
	key := statsKey(t, ev.Minute)
	var hits, misses uint64
	var lat float64
	if v := b.Get(key); len(v) == statsValueLen {
		hits, misses = binary.BigEndian.Uint64(v[0:]), binary.BigEndian.Uint64(v[8:])
		lat = math.Float64frombits(binary.BigEndian.Uint64(v[16:]))
	}
	v := make([]byte, statsValueLen)
	binary.BigEndian.PutUint64(v[0:], hits+uint64(max(ev.Hits, 0)))
	binary.BigEndian.PutUint64(v[8:], misses+uint64(max(ev.Misses, 0)))
	binary.BigEndian.PutUint64(v[16:], math.Float64bits(lat+ev.LatencyMs))
	return b.Put(key, v)
}

// SumStats sums t's minutes from..to (inclusive) in the read model.
func SumStats(b *bolt.Bucket, t tenant.ID, from, to int64) (hits, misses int64, latencyMs float64) {
	lo, hi := statsKey(t, from), statsKey(t, to)
	c := b.Cursor()
	for k, v := c.Seek(lo); k != nil && string(k) <= string(hi); k, v = c.Next() {
		if len(v) != statsValueLen || len(k) != len(lo) {
			continue
		}
		hits += int64(binary.BigEndian.Uint64(v[0:]))
		misses += int64(binary.BigEndian.Uint64(v[8:]))
		latencyMs += math.Float64frombits(binary.BigEndian.Uint64(v[16:]))
	}
	return hits, misses, latencyMs
}
