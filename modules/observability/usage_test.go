package observability_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/modules/observability"
	"github.com/crispy-enigma/crispy/platform/bus/bustest"
	"github.com/crispy-enigma/crispy/platform/httpapi"
	"github.com/crispy-enigma/crispy/platform/httpapi/httpapitest"
)

func TestUsageAndCostByModel(t *testing.T) {
	t.Parallel()
	e := newEnv(t, opts{})
	e.turn(acme, "s1", "openai:gpt-4o-mini", 1000, 500, 200, 0)
	e.turn(acme, "s1", "openai:gpt-4o-mini-2024-07-18", 2000, 100, 0, 0) // dated snapshot: same price
	e.turn(acme, "s2", "builtin:offline", 50, 60, 0, 0)
	e.turn(acme, "s2", "acme:private-model", 10, 10, 0, 0)
	e.failedTurn(acme, "s2", "openai:gpt-4o-mini", false)
	e.failedTurn(acme, "s2", "openai:gpt-4o-mini", true)
	e.tool(acme, "summarize", true, 10)
	e.tool(acme, "summarize", false, 30)

	r := e.get("/usage", "acme")
	if r.status != 200 {
		t.Fatalf("usage: %d %s", r.status, r.raw)
	}
	for k, want := range map[string]float64{"requests": 6, "tokensIn": 1000 + 2000 + 50 + 10 + 20, "tokensOut": 500 + 100 + 60 + 10,
		"cachedTokens": 200, "toolCalls": 2} {
		if got := num(t, r.body, k); got != want {
			t.Errorf("%s = %v, want %v", k, got, want)
		}
	}
	if r.body["period"] != "24h" || r.body["tenant"] != "acme" || r.body["requestId"] == "" {
		t.Errorf("envelope: %s", r.raw)
	}
	// gpt-4o-mini: input 0.15, cached 0.075, output 0.60 USD per million.
	mini := (800*0.15 + 200*0.075 + 500*0.60) / 1e6
	dated := (2000*0.15 + 100*0.60) / 1e6
	c := e.get("/metrics/cost?period=1h", "acme")
	if c.status != 200 {
		t.Fatalf("cost: %d %s", c.status, c.raw)
	}
	byModel := map[string]map[string]any{}
	for _, m := range c.body["byModel"].([]any) {
		mm := m.(map[string]any)
		byModel[mm["model"].(string)] = mm
	}
	if got := num(t, byModel["openai:gpt-4o-mini"], "costUsd"); !approx(got, round6(mini+10*0.15/1e6*2)) {
		t.Errorf("gpt-4o-mini cost %v, want %v", got, mini+20*0.15/1e6)
	}
	if got := num(t, byModel["openai:gpt-4o-mini-2024-07-18"], "costUsd"); !approx(got, round6(dated)) {
		t.Errorf("dated snapshot cost %v, want %v", got, dated)
	}
	if num(t, byModel["builtin:offline"], "costUsd") != 0 || byModel["builtin:offline"]["priced"] != true {
		t.Errorf("offline model: %v", byModel["builtin:offline"])
	}
	if byModel["acme:private-model"]["priced"] != false {
		t.Errorf("unknown model should be unpriced: %v", byModel["acme:private-model"])
	}
	if got, want := num(t, c.body, "totalCostUsd"), round6(mini+20*0.15/1e6+dated); !approx(got, want) {
		t.Errorf("total %v, want %v", got, want)
	}

	// The exported reader (for budgets) agrees with the endpoint.
	tot, err := e.mod.Usage(context.Background(), acme, epoch.Add(-24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if tot.Tokens() != int64(num(t, r.body, "totalTokens")) || tot.Requests != 6 {
		t.Errorf("Usage() = %+v", tot)
	}
}

func round6(v float64) float64 {
	return float64(int64(v*1e6+0.5)) / 1e6
}

func TestUsagePeriodsAndBadPeriod(t *testing.T) {
	t.Parallel()
	e := newEnv(t, opts{})
	e.turn(acme, "s1", "openai:gpt-4o", 100, 100, 0, 0) // at epoch
	e.clk.Advance(3 * time.Hour)
	e.turn(acme, "s1", "openai:gpt-4o", 1, 1, 0, 0)
	e.clk.Advance(2 * 24 * time.Hour)
	e.turn(acme, "s1", "openai:gpt-4o", 10, 10, 0, 0)
	for period, want := range map[string]float64{"1h": 1, "24h": 1, "7d": 3, "30d": 3} {
		if got := num(t, e.get("/usage?period="+period, "acme").body, "requests"); got != want {
			t.Errorf("period %s: requests %v, want %v", period, got, want)
		}
	}
	for _, path := range []string{"/usage?period=2d", "/metrics/cost?period=1w", "/metrics/slis?period=24", "/metrics/anomalies?period=x", "/metrics/overview?period=-1h"} {
		wantProblem(t, e.get(path, "acme"), 400, "invalid_period")
	}
}

func TestUsageIsolation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, opts{})
	e.turn(acme, "s1", "openai:gpt-4o", 100, 100, 0, 0)
	e.tool(acme, "summarize", true, 5)
	b := e.get("/usage", "beta")
	if b.status != 200 || num(t, b.body, "requests") != 0 || num(t, b.body, "toolCalls") != 0 || len(b.body["byModel"].([]any)) != 0 {
		t.Fatalf("beta sees acme's usage: %s", b.raw)
	}
	if c := e.get("/metrics/cost", "beta"); num(t, c.body, "totalCostUsd") != 0 {
		t.Fatalf("beta sees acme's cost: %s", c.raw)
	}
	if s := e.get("/metrics/slis", "beta"); num(t, s.body, "chat", "requests") != 0 || num(t, s.body, "tools", "calls") != 0 {
		t.Fatalf("beta sees acme's SLIs: %s", s.raw)
	}
	if tot, _ := e.mod.Usage(context.Background(), beta, time.Time{}); tot != (observability.UsageTotals{}) {
		t.Fatalf("Usage(beta) = %+v", tot)
	}
	if a := e.get("/usage", "acme"); num(t, a.body, "requests") != 1 {
		t.Fatalf("acme: %s", a.raw)
	}
}

// usageHistory is 30 steps of 17 minutes of acme and beta traffic.
func usageHistory(e *env) {
	for i := 0; i < 30; i++ {
		e.turn(acme, "s1", []string{"openai:gpt-4o", "openai:gpt-4o-mini", "builtin:offline"}[i%3], 100+i, 50+i, i, i/2)
		if i%4 == 0 {
			e.failedTurn(acme, "s2", "openai:gpt-4o", i%8 == 0)
			e.tool(acme, "summarize", i%3 != 0, float64(i))
		}
		e.turn(beta, "s9", "openai:gpt-4.1", 7, 7, 0, 0)
		e.clk.Advance(17 * time.Minute)
	}
}

// usageSnapshot is what the usage endpoints answer for acme and beta.
func usageSnapshot(t *testing.T, env *env) map[string]any {
	t.Helper()
	out := map[string]any{}
	for _, p := range []string{"/usage?period=30d", "/metrics/cost?period=7d", "/metrics/slis?period=24h", "/usage?period=1h"} {
		for _, tn := range []string{"acme", "beta"} {
			r := env.get(p, tn)
			if r.status != 200 {
				t.Fatalf("%s: %d %s", p, r.status, r.raw)
			}
			delete(r.body, "requestId")
			out[tn+p] = r.body
		}
	}
	return out
}

func sameSnapshot(t *testing.T, what string, before, after map[string]any) {
	t.Helper()
	if !reflect.DeepEqual(before, after) {
		b, _ := json.Marshal(before)
		a, _ := json.Marshal(after)
		t.Fatalf("%s differs:\nbefore %s\nafter  %s", what, b, a)
	}
}

// A restart resumes the read models from their checkpoints: nothing is applied again, only the
// events recorded since, and the numbers are those before the stop.
func TestUsageRestartResumesFromCheckpoint(t *testing.T) {
	t.Parallel()
	e := newEnv(t, opts{})
	usageHistory(e)
	e.do("PUT", "/metrics/alerts", "acme", "", map[string]any{"id": "r", "name": "n", "metric": "requests", "comparator": "gt", "threshold": 1e9})
	before := usageSnapshot(t, e)
	if n := e.projected("observability.usage"); n != 30+8+8+30 {
		t.Fatalf("first start applied %d usage events, want 76", n)
	}
	if err := e.stop(); err != nil {
		t.Fatal(err)
	}

	again := newEnv(t, opts{store: e.store, clk: e.clk, dir: e.dir})
	sameSnapshot(t, "usage after a restart", before, usageSnapshot(t, again))
	if got := again.get("/metrics/alerts", "acme").body["alerts"].([]any); len(got) != 1 {
		t.Fatalf("rules after a restart: %v", got)
	}
	if u, r := again.projected("observability.usage"), again.projected("observability.alert-rules"); u != 0 || r != 0 {
		t.Fatalf("the restart applied %d usage and %d rule events again, want none", u, r)
	}
	again.turn(acme, "s1", "openai:gpt-4o", 1, 1, 0, 0)
	if got := num(t, again.get("/usage?period=1h", "acme").body, "requests"); got != num(t, before["acme/usage?period=1h"].(map[string]any), "requests")+1 {
		t.Fatalf("a turn after the restart: %v requests", got)
	}
	if n := again.projected("observability.usage"); n != 1 {
		t.Fatalf("after the restart %d usage events applied, want the 1 new one", n)
	}
}

// A read model rebuilt from zero (a fresh folder), or from a corrupt file, gives the same numbers.
func TestUsageRebuildsFromZeroAndFromACorruptFile(t *testing.T) {
	t.Parallel()
	e := newEnv(t, opts{})
	usageHistory(e)
	e.do("PUT", "/metrics/alerts", "acme", "", map[string]any{"id": "r", "name": "n", "metric": "requests", "comparator": "gt", "threshold": 1e9})
	before := usageSnapshot(t, e)
	if err := e.stop(); err != nil {
		t.Fatal(err)
	}

	rebuilt := newEnv(t, opts{store: e.store, clk: e.clk})
	sameSnapshot(t, "a rebuild from zero", before, usageSnapshot(t, rebuilt))
	if n := rebuilt.projected("observability.usage"); n != 76 {
		t.Fatalf("the rebuild applied %d usage events, want 76", n)
	}
	if err := rebuilt.stop(); err != nil {
		t.Fatal(err)
	}

	// Overwrite both read model files with garbage: each is moved aside and rebuilt.
	for _, name := range []string{"observability.usage", "observability.alert-rules"} {
		path := filepath.Join(e.dir, "readmodels", name+".db")
		if err := os.WriteFile(path, bytes.Repeat([]byte("not a bbolt file "), 1000), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	healed := newEnv(t, opts{store: e.store, clk: e.clk, dir: e.dir})
	sameSnapshot(t, "a rebuild from a corrupt file", before, usageSnapshot(t, healed))
	if got := healed.get("/metrics/alerts", "acme").body["alerts"].([]any); len(got) != 1 {
		t.Fatalf("rules after the rebuild: %v", got)
	}
	aside, _ := filepath.Glob(filepath.Join(e.dir, "readmodels", "observability.*.db.corrupt-*"))
	if len(aside) != 2 {
		t.Fatalf("corrupt files kept aside: %v", aside)
	}
	if num(t, before["acme/usage?period=30d"].(map[string]any), "requests") != 30+8 {
		t.Fatalf("unexpected totals: %v", before["acme/usage?period=30d"])
	}
}

// Until the read model has caught up with the store, the usage endpoints answer 503 catching_up
// (never a partial answer).
func TestUsageAnswers503WhileCatchingUp(t *testing.T) {
	t.Parallel()
	e := newEnv(t, opts{})
	e.turn(acme, "s1", "openai:gpt-4o", 1, 1, 0, 0)
	e.sync()
	// A module whose bus has not run: its read models have not caught up.
	mod, err := observability.New(observability.Deps{Store: e.store, Now: e.clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := httpapi.New(httpapi.Config{}, httpapi.Deps{Guard: httpapitest.HeaderGuard{}, Now: e.clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	mod.Register(srv.API, bustest.NewBus(t, e.store))
	cold := &env{t: t, store: e.store, clk: e.clk, mod: mod, h: srv.Handler()}
	for _, path := range []string{"/usage", "/metrics/cost", "/metrics/slis", "/metrics/anomalies", "/metrics/overview", "/metrics/alerts"} {
		r := cold.do("GET", path, "acme", "", nil)
		wantProblem(t, r, 503, "catching_up")
		if r.header.Get("retry-after") == "" {
			t.Errorf("%s: 503 without retry-after", path)
		}
	}
	if _, err := mod.Usage(context.Background(), acme, epoch.Add(-time.Hour)); err == nil {
		t.Fatal("Usage answered before the read model caught up")
	}
}

func TestSLIsUseSearchStatsPort(t *testing.T) {
	t.Parallel()
	stats := &fakeSearch{}
	e := newEnv(t, opts{deps: func(d *observability.Deps) { d.Search = stats }})
	e.turn(acme, "s1", "openai:gpt-4o", 10, 10, 0, 0)
	e.failedTurn(acme, "s1", "openai:gpt-4o", false)
	e.failedTurn(acme, "s1", "openai:gpt-4o", true) // cancelled: not an error
	e.tool(acme, "summarize", false, 40)
	r := e.get("/metrics/slis", "acme")
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	if num(t, r.body, "chat", "errorRate") != 0.5 || num(t, r.body, "chat", "cancelled") != 1 || num(t, r.body, "tools", "errorRate") != 1 {
		t.Errorf("chat/tools SLIs: %s", r.raw)
	}
	if num(t, r.body, "cache", "hitRate") != 0.75 || num(t, r.body, "search", "queries") != 4 || num(t, r.body, "search", "avgLatencyMs") != 12 {
		t.Errorf("cache SLIs: %s", r.raw)
	}
	if len(stats.tenants) == 0 || stats.tenants[0] != "acme" {
		t.Errorf("search port asked for %v", stats.tenants)
	}
	ov := e.get("/metrics/overview", "acme")
	if ov.status != 200 || ov.body["slis"] == nil || ov.body["anomalies"] == nil || ov.body["alerts"] == nil {
		t.Errorf("overview: %s", ov.raw)
	}
}
