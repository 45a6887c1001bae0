package observability_test

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/modules/observability"
	toolevents "github.com/crispy-enigma/crispy/modules/tooling/events"
	"github.com/crispy-enigma/crispy/platform/httpapi"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

func TestAnomaliesNeedHistoryAndFlagSpikes(t *testing.T) {
	t.Parallel()
	clk := &clock{now: epoch.Add(-55 * time.Minute)}
	e := newEnv(t, opts{clk: clk})
	// Four quiet windows only: not enough history, nothing is anomalous whatever happens next.
	for i := 0; i < 4; i++ {
		for j := 0; j < 2+i%2; j++ {
			e.turn(acme, "s", "openai:gpt-4o", 100, 100, 0, 0)
		}
		clk.Advance(5 * time.Minute)
	}
	clk.Set(epoch)
	for j := 0; j < 30; j++ {
		e.turn(beta, "s", "openai:gpt-4o", 100, 100, 0, 0) // beta's spike, with no history of its own
	}
	if r := e.get("/metrics/anomalies?period=1h", "beta"); len(r.body["anomalies"].([]any)) != 0 {
		t.Fatalf("anomaly without history: %s", r.raw)
	}

	// Acme: eleven windows of 2–3 turns, then 30 turns now.
	clk.Set(epoch.Add(-35 * time.Minute))
	for i := 4; i < 11; i++ {
		for j := 0; j < 2+i%2; j++ {
			e.turn(acme, "s", "openai:gpt-4o", 100, 100, 0, 0)
		}
		clk.Advance(5 * time.Minute)
	}
	clk.Set(epoch)
	for j := 0; j < 30; j++ {
		e.turn(acme, "s", "openai:gpt-4o", 100, 100, 0, 0)
	}
	// The spike's bucket counts once it has ended (complete buckets only).
	clk.Set(epoch.Add(5 * time.Minute))
	r := e.get("/metrics/anomalies?period=1h", "acme")
	if r.status != 200 || num(t, r.body, "points") != 12 {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	found := map[string]map[string]any{}
	for _, a := range r.body["anomalies"].([]any) {
		found[a.(map[string]any)["metric"].(string)] = a.(map[string]any)
	}
	req, ok := found["requests"]
	if !ok || req["direction"] != "above" || num(t, req, "value") != 30 || num(t, req, "points") != 11 || num(t, req, "zScore") <= 3 {
		t.Fatalf("requests anomaly: %s", r.raw)
	}
	if _, ok := found["chatLatencyMs"]; ok {
		t.Fatalf("steady latency flagged: %v", found["chatLatencyMs"])
	}
	// Beta's spike still lacks history; acme's history is not beta's.
	if r := e.get("/metrics/anomalies?period=1h", "beta"); len(r.body["anomalies"].([]any)) != 0 {
		t.Fatalf("beta anomalies from acme's history: %s", r.raw)
	}
}

// Anomalies read complete buckets only. Before, the current 5-minute bucket was the newest point:
// a minute into it, steady traffic (2 or 3 turns every 5 minutes) had made 0 or 1 turn so far and read
// as a drop far below its history.
func TestAnomaliesIgnoreTheUnfinishedBucket(t *testing.T) {
	t.Parallel()
	clk := &clock{now: epoch.Add(-60 * time.Minute)}
	e := newEnv(t, opts{clk: clk})
	for i := 0; i < 12; i++ {
		for j := 0; j < 2+i%2; j++ {
			e.turn(acme, "s", "openai:gpt-4o", 100, 100, 0, 0)
		}
		clk.Advance(5 * time.Minute)
	}
	clk.Set(epoch.Add(time.Minute)) // one minute into a bucket with no turn yet
	r := e.get("/metrics/anomalies?period=1h", "acme")
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	if as := r.body["anomalies"].([]any); len(as) != 0 {
		t.Fatalf("steady traffic flagged a minute into a bucket: %s", r.raw)
	}
}

func TestPrometheusExpositionBoundedLabels(t *testing.T) {
	t.Parallel()
	e := newEnv(t, opts{deps: func(d *observability.Deps) {
		d.KnownTenants = func() []tenant.ID { return []tenant.ID{acme} }
	}})
	e.turn(acme, "s", "openai:gpt-4o", 1, 1, 0, 0)
	e.get("/usage", "acme")
	e.get("/usage", "beta")
	e.get("/usage?period=nope", "acme")
	r := httpGet(e, "/metrics")
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	for _, want := range []string{
		`crispy_http_requests_total{route="GET /usage",status="200",tenant="acme"} 1`,
		`crispy_http_requests_total{route="GET /usage",status="200",tenant="other"} 1`,
		`crispy_http_requests_total{route="GET /usage",status="400",tenant="acme"} 1`,
		`crispy_http_request_duration_seconds_bucket{route="GET /usage",status="200"`,
		"go_goroutines", "process_cpu_seconds_total",
	} {
		if !strings.Contains(r.raw, want) {
			t.Errorf("exposition lacks %s", want)
		}
	}
	if strings.Contains(r.raw, `tenant="beta"`) {
		t.Error("an unconfigured tenant got its own label")
	}
	// The module records requests it did not serve too (cmd/crispy hooks it into httpapi).
	e.mod.RecordRequest(httpapi.RequestRecord{Method: "GET", Route: "unmatched", Status: 404, Duration: time.Millisecond})
	var buf bytes.Buffer
	e.mod.WritePrometheus(&buf)
	if !strings.Contains(buf.String(), `crispy_http_requests_total{route="unmatched",status="404",tenant="none"} 1`) {
		t.Errorf("unmatched route not recorded:\n%s", buf.String())
	}
}

func httpGet(e *env, path string) resp {
	e.t.Helper()
	return e.do(http.MethodGet, path, "", "", nil)
}

func TestPriceFileOverridesDefaults(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := dir + "/prices.yaml"
	if err := writeFile(path, "prices:\n  \"openai:gpt-4o\": {input: 1, output: 2}\n  \"acme:private\": {input: 10, output: 10}\n"); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, opts{deps: func(d *observability.Deps) { d.Config.PriceFile = path }})
	e.turn(acme, "s", "openai:gpt-4o", 1_000_000, 1_000_000, 0, 0)
	e.turn(acme, "s", "acme:private", 100_000, 0, 0, 0)
	if got := num(t, e.get("/metrics/cost", "acme").body, "totalCostUsd"); got != 3+1 {
		t.Fatalf("cost with price file: %v", got)
	}
	if _, err := observability.New(observability.Deps{Store: e.store, Config: observability.Config{PriceFile: dir + "/missing.yaml"}}); err == nil {
		t.Fatal("a missing price file was accepted")
	}
	bad := dir + "/bad.json"
	_ = writeFile(bad, `{"openai:gpt-4o": {"input": -1, "output": 1}}`)
	if _, err := observability.New(observability.Deps{Store: e.store, Config: observability.Config{PriceFile: bad}}); err == nil {
		t.Fatal("a negative price was accepted")
	}
	if tot, _ := e.mod.Usage(context.Background(), acme, epoch.Add(-time.Hour)); tot.CostUSD != 4 {
		t.Fatalf("Usage cost %v", tot.CostUSD)
	}
}

// A client's own errors (params that fail the schema, a tool it may not run, its budget) are not
// failures of the tool: the tool SLIs count them as calls, not errors. Before, a 422 or a 403 made
// the tool's error rate.
func TestToolSLIsLeaveClientErrorsOut(t *testing.T) {
	t.Parallel()
	e := newEnv(t, opts{})
	e.tool(acme, "summarize", true, 10)
	for _, code := range []string{"VALIDATION_FAILED", "PERMISSION_DENIED", "budget_exceeded"} {
		e.append(acme, "tool-audit", "", toolevents.TypeToolFailed, toolevents.ToolFailed{Tenant: acme.String(), Tool: "summarize", DurationMs: 1, ErrorCode: code})
	}
	e.tool(acme, "summarize", false, 10) // EXECUTION_ERROR: the tool's own failure
	e.sync()
	s := e.get("/metrics/slis?period=1h", "acme")
	if num(t, s.body, "tools", "calls") != 5 || num(t, s.body, "tools", "failures") != 1 || num(t, s.body, "tools", "errorRate") != 0.2 {
		t.Fatalf("tool SLIs: %s, want 5 calls, 1 failure (the tool's own), error rate 0.2", s.raw)
	}
}
