package observability_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	convevents "github.com/crispy-enigma/crispy/modules/conversation/events"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

var updateGolden = flag.Bool("update", false, "rewrite testdata/usage_golden.json from the current code")

// goldenHistory appends a fixed, seeded history: three tenants, six models (priced, dated, unpriced,
// offline), completed, failed, cancelled and stateless turns, tool calls, over 40 days of event time
// (so buckets older than the retention are pruned on the way).
func goldenHistory(e *env) {
	r := rand.New(rand.NewPCG(11, 3))
	models := []string{"openai:gpt-4o", "openai:gpt-4o-mini", "openai:gpt-4o-mini-2024-07-18", "builtin:offline", "acme:private-model", ""}
	tenants := []tenant.ID{acme, beta, tenant.MustParse("gamma")}
	for i := 0; i < 1500; i++ {
		tn := tenants[r.IntN(len(tenants))]
		model := models[r.IntN(len(models))]
		sid := fmt.Sprintf("s%d", r.IntN(20))
		switch k := r.IntN(10); {
		case k < 5:
			e.turn(tn, sid, model, r.IntN(5000), r.IntN(2000), r.IntN(500), r.IntN(300))
		case k == 5:
			e.failedTurn(tn, sid, model, r.IntN(2) == 0)
		case k == 6:
			day := e.clk.Now().UTC().Format("20060102")
			out := []string{convevents.OutcomeCompleted, convevents.CodeStreamFailed, convevents.CodeCancelled}[r.IntN(3)]
			e.append(tn, convevents.CompletionsCategory, day, convevents.TypeCompletionRecorded, convevents.CompletionRecorded{
				CallID: fmt.Sprint(i), Model: model, Outcome: out, Cancelled: out == convevents.CodeCancelled,
				LatencyMs: float64(r.IntN(3000)) / 7, TTFTMs: float64(r.IntN(400)) / 3,
				Usage: convevents.Usage{PromptTokens: r.IntN(4000), CompletionTokens: r.IntN(900), CachedTokens: r.IntN(100), Estimated: r.IntN(4) == 0}})
		default:
			e.tool(tn, []string{"summarize", "classify_intent", "extract_entities"}[r.IntN(3)], r.IntN(5) != 0, float64(r.IntN(9000))/9)
		}
		// 1500 steps of 0..77 minutes: about 40 days.
		e.clk.Advance(time.Duration(r.IntN(78)) * time.Minute)
	}
}

// goldenSnapshot is every usage-derived answer of every tenant and period.
func goldenSnapshot(t *testing.T, e *env) map[string]any {
	t.Helper()
	out := map[string]any{}
	for _, tn := range []string{"acme", "beta", "gamma", "nobody"} {
		for _, p := range []string{"1h", "24h", "7d", "30d"} {
			for _, path := range []string{"/usage", "/metrics/cost", "/metrics/slis", "/metrics/anomalies"} {
				r := e.get(path+"?period="+p, tn)
				if r.status != 200 {
					t.Fatalf("%s %s: %d %s", tn, path, r.status, r.raw)
				}
				delete(r.body, "requestId")
				out[tn+" "+path+"?period="+p] = r.body
			}
		}
		tot, err := e.mod.Usage(context.Background(), tenant.MustParse(tn), e.clk.Now().Add(-7*24*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(tot)
		var m any
		_ = json.Unmarshal(b, &m)
		out[tn+" Usage(7d)"] = m
	}
	return out
}

// The usage and cost numbers are those the in-memory projection (before the read model moved to
// bbolt) gave on the same events: testdata/usage_golden.json was written by that code (go test
// -run TestUsageNumbersUnchanged -update at the commit before the move).
func TestUsageNumbersUnchanged(t *testing.T) {
	t.Parallel()
	e := newEnv(t, opts{})
	goldenHistory(e)
	got := goldenSnapshot(t, e)
	path := filepath.Join("testdata", "usage_golden.json")
	if *updateGolden {
		b, err := json.MarshalIndent(got, "", " ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var want map[string]any
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	// Round-trip got through JSON so both sides have the same shapes.
	gb, _ := json.Marshal(got)
	var gotJSON map[string]any
	_ = json.Unmarshal(gb, &gotJSON)
	var diffs []string
	goldenDiff("", want, gotJSON, &diffs)
	sort.Strings(diffs)
	if len(diffs) > 0 {
		if len(diffs) > 30 {
			diffs = append(diffs[:30], fmt.Sprintf("… and %d more", len(diffs)-30))
		}
		t.Fatalf("numbers differ from the old projection's:\n%s", strings.Join(diffs, "\n"))
	}
	if n := num(t, want["acme /usage?period=30d"].(map[string]any), "requests"); n < 100 {
		t.Fatalf("the golden history is too thin: %v requests", n)
	}
}

// goldenDiff compares JSON values: costs and counts exactly, sums of float latencies and durations
// (added in another order across buckets) to 1e-9 relative.
func goldenDiff(path string, want, got any, out *[]string) {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			*out = append(*out, fmt.Sprintf("%s: want object, got %v", path, got))
			return
		}
		for k, wv := range w {
			gv, ok := g[k]
			if !ok {
				*out = append(*out, fmt.Sprintf("%s.%s: missing", path, k))
				continue
			}
			goldenDiff(path+"."+k, wv, gv, out)
		}
		for k := range g {
			if _, ok := w[k]; !ok {
				*out = append(*out, fmt.Sprintf("%s.%s: unexpected", path, k))
			}
		}
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			*out = append(*out, fmt.Sprintf("%s: want %v, got %v", path, want, got))
			return
		}
		for i := range w {
			goldenDiff(fmt.Sprintf("%s[%d]", path, i), w[i], g[i], out)
		}
	case float64:
		g, ok := got.(float64)
		exact := strings.Contains(strings.ToLower(path), "cost") || strings.HasSuffix(path, "requests") || strings.Contains(path, "okens")
		switch {
		case !ok:
			*out = append(*out, fmt.Sprintf("%s: want %v, got %v", path, w, got))
		case exact && g != w:
			*out = append(*out, fmt.Sprintf("%s: want %v, got %v", path, w, g))
		case !exact && math.Abs(g-w) > 1e-9*math.Max(1, math.Abs(w)):
			*out = append(*out, fmt.Sprintf("%s: want %v, got %v", path, w, g))
		}
	default:
		if fmt.Sprint(want) != fmt.Sprint(got) {
			*out = append(*out, fmt.Sprintf("%s: want %v, got %v", path, want, got))
		}
	}
}
