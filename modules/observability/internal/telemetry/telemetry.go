// Package telemetry records HTTP requests into Prometheus metrics with bounded label sets: the route
// template (never the raw path), the status code, and the tenant only for tenants the operator
// configured (any other becomes "other"); user ids are never labels.
package telemetry

import (
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/crispy-enigma/crispy/platform/exposition"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// Metric names.
const (
	MetricRequests = "crispy_http_requests_total"           // {route, status, tenant}
	MetricDuration = "crispy_http_request_duration_seconds" // {route, status}
)

// OtherTenant is the label of tenants not in the known set; NoTenant of public routes.
const (
	OtherTenant = "other"
	NoTenant    = "none"
)

// HTTP records requests.
type HTTP struct {
	set        *metrics.Set
	known      func() []tenant.ID
	maxTenants int
	refresh    time.Duration
	now        func() time.Time

	tenants atomic.Pointer[tenantSet]
	series  sync.Map // seriesKey -> *series
}

type tenantSet struct {
	names map[tenant.ID]struct{}
	at    time.Time
}

type seriesKey struct {
	route  string
	status int
	tenant string
}

type series struct {
	count *metrics.Counter
	dur   *metrics.PrometheusHistogram
}

// NewHTTP returns a recorder. known lists the tenants that get their own label (re-read every
// refresh); at most maxTenants of them are labelled, the rest are "other".
func NewHTTP(set *metrics.Set, known func() []tenant.ID, maxTenants int, refresh time.Duration, now func() time.Time) *HTTP {
	return &HTTP{set: set, known: known, maxTenants: maxTenants, refresh: refresh, now: now}
}

// TenantLabel is the label value for t.
func (h *HTTP) TenantLabel(t tenant.ID) string {
	if t.IsZero() {
		return NoTenant
	}
	ts := h.tenants.Load()
	if ts == nil || h.now().Sub(ts.at) > h.refresh {
		ts = h.reload()
	}
	if _, ok := ts.names[t]; ok {
		return t.String()
	}
	return OtherTenant
}

func (h *HTTP) reload() *tenantSet {
	ts := &tenantSet{names: map[tenant.ID]struct{}{}, at: h.now()}
	if h.known != nil {
		for _, t := range h.known() {
			if len(ts.names) >= h.maxTenants {
				break
			}
			ts.names[t] = struct{}{}
		}
	}
	h.tenants.Store(ts)
	return ts
}

// Record counts one finished request and its latency.
func (h *HTTP) Record(route string, status int, d time.Duration, t tenant.ID) {
	k := seriesKey{route: route, status: status, tenant: h.TenantLabel(t)}
	v, ok := h.series.Load(k)
	if !ok {
		code := strconv.Itoa(status)
		s := &series{
			count: h.set.GetOrCreateCounter(fmt.Sprintf(`%s{route=%q,status=%q,tenant=%q}`, MetricRequests, route, code, k.tenant)),
			dur:   h.set.GetOrCreatePrometheusHistogramExt(fmt.Sprintf(`%s{route=%q,status=%q}`, MetricDuration, route, code), exposition.LatencyBuckets),
		}
		v, _ = h.series.LoadOrStore(k, s)
	}
	s := v.(*series)
	s.count.Inc()
	s.dur.Update(d.Seconds())
}
