package observability_test

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/modules/observability"
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

// The projection rebuilt from zero by replaying the store gives the same numbers.
func TestUsageRebuildsByReplay(t *testing.T) {
	t.Parallel()
	e := newEnv(t, opts{})
	for i := 0; i < 30; i++ {
		e.turn(acme, "s1", []string{"openai:gpt-4o", "openai:gpt-4o-mini", "builtin:offline"}[i%3], 100+i, 50+i, i, i/2)
		if i%4 == 0 {
			e.failedTurn(acme, "s2", "openai:gpt-4o", i%8 == 0)
			e.tool(acme, "summarize", i%3 != 0, float64(i))
		}
		e.turn(beta, "s9", "openai:gpt-4.1", 7, 7, 0, 0)
		e.clk.Advance(17 * time.Minute)
	}
	snap := func(env *env) map[string]any {
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
	before := snap(e)
	// The projection is fed twice (at-least-once delivery): nothing may count twice.
	for _, ev := range mustRead(t, e) {
		if err := e.mod.ProjectUsage(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	if again := snap(e); !reflect.DeepEqual(before, again) {
		t.Fatalf("redelivery changed the numbers")
	}
	rebuilt := newEnv(t, opts{store: e.store, clk: e.clk})
	after := snap(rebuilt)
	if !reflect.DeepEqual(before, after) {
		b, _ := json.Marshal(before)
		a, _ := json.Marshal(after)
		t.Fatalf("rebuild differs:\nbefore %s\nafter  %s", b, a)
	}
	if num(t, before["acme/usage?period=30d"].(map[string]any), "requests") != 30+8 {
		t.Fatalf("unexpected totals: %v", before["acme/usage?period=30d"])
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
