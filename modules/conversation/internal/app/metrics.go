package app

import (
	"fmt"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/crispy-enigma/crispy/platform/ai"
	"github.com/crispy-enigma/crispy/platform/exposition"
)

// Metrics records chat figures on a VictoriaMetrics set. A nil *Metrics (or a nil set) records
// nothing. Labels carry models and outcomes, never tenant data.
type Metrics struct {
	set      *metrics.Set
	router   *ai.Router
	mu       sync.Mutex
	breakers map[string]bool
	// named holds the per-call series by their labels: formatting a series name (fmt.Sprintf) and
	// looking it up in the set cost allocations on every call of the /v1 proxy's hot path.
	namedMu sync.RWMutex
	named   map[seriesKey]any
}

type seriesKey struct{ kind, a, b string }

// series is the metric of key, made by create on first use.
func (m *Metrics) series(key seriesKey, create func() any) any {
	m.namedMu.RLock()
	v, ok := m.named[key]
	m.namedMu.RUnlock()
	if ok {
		return v
	}
	v = create()
	m.namedMu.Lock()
	if m.named == nil {
		m.named = map[seriesKey]any{}
	}
	m.named[key] = v
	m.namedMu.Unlock()
	return v
}

func (m *Metrics) counter(key seriesKey, name func() string) *metrics.Counter {
	return m.series(key, func() any { return m.set.GetOrCreateCounter(name()) }).(*metrics.Counter)
}

// NewMetrics returns metrics on set (nil: none).
func NewMetrics(set *metrics.Set, router *ai.Router) *Metrics {
	if set == nil {
		return nil
	}
	return &Metrics{set: set, router: router, breakers: map[string]bool{}}
}

func (m *Metrics) turn(model, outcome string) {
	if m == nil {
		return
	}
	m.counter(seriesKey{"turns", model, outcome}, func() string {
		return fmt.Sprintf(`crispy_chat_turns_total{model=%q,outcome=%q}`, model, outcome)
	}).Inc()
}

func (m *Metrics) ttft(model string, d time.Duration) {
	if m == nil {
		return
	}
	m.series(seriesKey{"ttft", model, ""}, func() any {
		return m.set.GetOrCreatePrometheusHistogramExt(fmt.Sprintf(`crispy_chat_ttft_seconds{model=%q}`, model), exposition.LatencyBuckets)
	}).(*metrics.PrometheusHistogram).Update(d.Seconds())
}

func (m *Metrics) tokens(model string, in, out int) {
	if m == nil {
		return
	}
	m.counter(seriesKey{"tokens", model, "in"}, func() string { return fmt.Sprintf(`crispy_chat_tokens_total{model=%q,direction="in"}`, model) }).Add(in)
	m.counter(seriesKey{"tokens", model, "out"}, func() string { return fmt.Sprintf(`crispy_chat_tokens_total{model=%q,direction="out"}`, model) }).Add(out)
}

func (m *Metrics) fallback(model, reason string) {
	if m == nil {
		return
	}
	m.set.GetOrCreateCounter(fmt.Sprintf(`crispy_chat_fallbacks_total{model=%q,reason=%q}`, model, reason)).Inc()
	m.watchBreaker(model)
}

func (m *Metrics) interrupted(n int) {
	if m == nil {
		return
	}
	m.set.GetOrCreateCounter(`crispy_chat_turns_interrupted_total`).Add(n)
}

func (m *Metrics) sweep() {
	if m == nil {
		return
	}
	m.set.GetOrCreateCounter(`crispy_chat_retention_sweeps_total`).Inc()
}

func (m *Metrics) conflict() {
	if m == nil {
		return
	}
	m.set.GetOrCreateCounter(`crispy_chat_append_conflicts_total`).Inc()
}

func (m *Metrics) snapshot(segments int) {
	if m == nil {
		return
	}
	m.set.GetOrCreateCounter(`crispy_chat_session_snapshot_segments_total`).Add(segments)
}

// WatchMemory exposes what the fold cache and the resume buffer hold, and counts their evictions.
func (m *Metrics) WatchMemory(c *Cache, h *Hub) {
	if m == nil {
		return
	}
	cacheEvicted := m.set.GetOrCreateCounter(`crispy_chat_session_cache_evictions_total`)
	c.onEvict = cacheEvicted.Inc
	m.set.GetOrCreateGauge(`crispy_chat_session_cache_bytes`, func() float64 { b, _ := c.Stats(); return float64(b) })
	m.set.GetOrCreateGauge(`crispy_chat_session_cache_sessions`, func() float64 { _, n := c.Stats(); return float64(n) })
	resumeEvicted := m.set.GetOrCreateCounter(`crispy_chat_resume_buffer_evictions_total`)
	h.onEvict = resumeEvicted.Inc
	m.set.GetOrCreateGauge(`crispy_chat_resume_buffer_bytes`, func() float64 { b, _ := h.Stats(); return float64(b) })
	m.set.GetOrCreateGauge(`crispy_chat_resume_buffer_turns`, func() float64 { _, n := h.Stats(); return float64(n) })
}

// watchBreaker exposes a model's breaker state (0 closed, 1 half-open, 2 open) once it is used.
func (m *Metrics) watchBreaker(model string) {
	if m == nil || m.router == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.breakers[model] {
		return
	}
	m.breakers[model] = true
	r := m.router
	m.set.GetOrCreateGauge(fmt.Sprintf(`crispy_ai_breaker_state{model=%q}`, model), func() float64 {
		switch r.BreakerStates()[model] {
		case "open":
			return 2
		case "half-open":
			return 1
		}
		return 0
	})
}
