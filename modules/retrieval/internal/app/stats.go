package app

import (
	"fmt"
	"sync"
	"time"

	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// Stats counts cache checks per tenant in one-minute buckets kept for 30 days, for
// GET /metrics/search-cache. It lives in memory: it restarts from zero with the process.
type Stats struct {
	mu      sync.Mutex
	buckets map[tenant.ID]map[int64]*bucket // unix minute -> counts
}

type bucket struct {
	hits, misses int64
	latencyMs    float64
}

// NewStats builds empty statistics.
func NewStats() *Stats { return &Stats{buckets: map[tenant.ID]map[int64]*bucket{}} }

// Record notes one search: whether the cache answered, and how long the search took.
func (s *Stats) Record(t tenant.ID, at time.Time, hit bool, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.buckets[t]
	if m == nil {
		m = map[int64]*bucket{}
		s.buckets[t] = m
	}
	min := at.Unix() / 60
	b := m[min]
	if b == nil {
		b = &bucket{}
		m[min] = b
		for k := range m { // drop buckets older than the longest period
			if k < min-30*24*60 {
				delete(m, k)
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
func (s *Stats) Cache(t tenant.ID, now time.Time, period time.Duration) CacheStats {
	return s.Window(t, now.Add(-period), now)
}

// Window sums t's checks in the minutes from since to until (both inclusive, to the minute).
func (s *Stats) Window(t tenant.ID, since, until time.Time) CacheStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	from, to := since.Unix()/60, until.Unix()/60
	var out CacheStats
	var lat float64
	for k, b := range s.buckets[t] {
		if k >= from && k <= to {
			out.Hits += b.hits
			out.Misses += b.misses
			lat += b.latencyMs
		}
	}
	out.TotalChecks = out.Hits + out.Misses
	if out.TotalChecks > 0 {
		out.HitRate = float64(out.Hits) / float64(out.TotalChecks)
		out.AvgLatencyMs = lat / float64(out.TotalChecks)
	}
	return out
}
