package telemetry_test

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/crispy-enigma/crispy/modules/observability/internal/telemetry"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

func TestTenantLabelsAreBoundedAndRefreshed(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	known := []tenant.ID{tenant.MustParse("a"), tenant.MustParse("b"), tenant.MustParse("c")}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	h := telemetry.NewHTTP(metrics.NewSet(), func() []tenant.ID { mu.Lock(); defer mu.Unlock(); return known }, 2, time.Minute, clock)
	if got := h.TenantLabel(tenant.MustParse("a")); got != "a" {
		t.Errorf("a: %s", got)
	}
	if got := h.TenantLabel(tenant.MustParse("c")); got != telemetry.OtherTenant {
		t.Errorf("c beyond the bound of 2: %s", got)
	}
	if got := h.TenantLabel(tenant.ID{}); got != telemetry.NoTenant {
		t.Errorf("no tenant: %s", got)
	}
	mu.Lock()
	known = []tenant.ID{tenant.MustParse("d")}
	mu.Unlock()
	if got := h.TenantLabel(tenant.MustParse("d")); got != telemetry.OtherTenant {
		t.Errorf("d before refresh: %s", got)
	}
	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	if got := h.TenantLabel(tenant.MustParse("d")); got != "d" {
		t.Errorf("d after refresh: %s", got)
	}
}

func TestRecordWritesCounterAndHistogram(t *testing.T) {
	t.Parallel()
	set := metrics.NewSet()
	h := telemetry.NewHTTP(set, nil, 10, time.Minute, time.Now)
	for i := 0; i < 3; i++ {
		h.Record("POST /chat", 200, 250*time.Millisecond, tenant.MustParse("acme"))
	}
	var buf bytes.Buffer
	set.WritePrometheus(&buf)
	out := buf.String()
	for _, want := range []string{`crispy_http_requests_total{route="POST /chat",status="200",tenant="other"} 3`,
		`crispy_http_request_duration_seconds_count{route="POST /chat",status="200"} 3`,
		`crispy_http_request_duration_seconds_sum{route="POST /chat",status="200"} 0.75`} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %s in\n%s", want, out)
		}
	}
}
