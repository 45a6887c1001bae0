package domain_test

import (
	"math"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/modules/observability/events"
	"github.com/crispy-enigma/crispy/modules/observability/internal/domain"
	"github.com/crispy-enigma/crispy/platform/apperr"
)

func TestParsePeriod(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]time.Duration{"": 24 * time.Hour, "1h": time.Hour, "24h": 24 * time.Hour, "7d": 7 * 24 * time.Hour, "30d": 30 * 24 * time.Hour} {
		p, err := domain.ParsePeriod(in)
		if err != nil || p.Span != want {
			t.Errorf("%q: %v %v", in, p, err)
		}
	}
	for _, in := range []string{"1d", "2h", "24H", "30", "7d ", "-1h"} {
		if _, err := domain.ParsePeriod(in); apperr.KindOf(err) != apperr.KindInvalid {
			t.Errorf("%q accepted: %v", in, err)
		}
	}
}

func TestPriceLookupAndCost(t *testing.T) {
	t.Parallel()
	tab := domain.DefaultPrices()
	cases := []struct {
		model string
		want  domain.Price
		ok    bool
	}{
		{"openai:gpt-4o", tab["openai:gpt-4o"], true},
		{"openai:gpt-4o-mini", tab["openai:gpt-4o-mini"], true},
		{"openai:gpt-4o-mini-2024-07-18", tab["openai:gpt-4o-mini"], true}, // longest prefix, not gpt-4o
		{"openai:gpt-4o-2024-08-06", tab["openai:gpt-4o"], true},
		{"openai:gpt-4oo", domain.Price{}, false}, // a prefix must end at '-'
		{"builtin:offline", domain.Price{}, true},
		{"ollama:llama3", domain.Price{}, false},
	}
	for _, c := range cases {
		got, ok := tab.Lookup(c.model)
		if got != c.want || ok != c.ok {
			t.Errorf("%s: %+v %v, want %+v %v", c.model, got, ok, c.want, c.ok)
		}
	}
	bare := domain.PriceTable{"llama3": {Input: 1, Output: 1}}
	if _, ok := bare.Lookup("ollama:llama3"); !ok {
		t.Error("a bare model name should match under any provider")
	}

	p := domain.Price{Input: 2, CachedInput: 1, Output: 10, Reasoning: 20}
	// 1M prompt of which 400k cached; 1M completion of which 100k reasoning.
	got := p.Cost(domain.Tokens{Input: 1_000_000, Cached: 400_000, Output: 1_000_000, Reasoning: 100_000})
	want := 0.6*2 + 0.4*1 + 0.9*10 + 0.1*20
	if math.Abs(got-want) > 1e-9 {
		t.Errorf("cost %v, want %v", got, want)
	}
	// No separate cached/reasoning price: billed at input/output. Counts above their totals are clamped.
	q := domain.Price{Input: 2, Output: 10}
	if got := q.Cost(domain.Tokens{Input: 1_000_000, Cached: 5_000_000, Output: 1_000_000, Reasoning: 9_000_000}); math.Abs(got-12) > 1e-9 {
		t.Errorf("cost %v, want 12", got)
	}
}

func TestDetect(t *testing.T) {
	t.Parallel()
	if _, ok := domain.Detect("m", []float64{1, 2, 1, 2}, 100); ok {
		t.Error("4 points of history flagged")
	}
	a, ok := domain.Detect("m", []float64{10, 12, 10, 12, 10, 12}, 20)
	if !ok || a.Direction != "above" || a.Mean != 11 || a.StdDev != 1 || a.ZScore != 9 {
		t.Errorf("spike: %+v %v", a, ok)
	}
	if _, ok := domain.Detect("m", []float64{10, 12, 10, 12, 10, 12}, 13.9); ok {
		t.Error("within 3σ flagged")
	}
	if a, ok := domain.Detect("m", []float64{10, 12, 10, 12, 10, 12}, 7); !ok || a.Direction != "below" {
		t.Errorf("drop: %+v %v", a, ok)
	}
	if _, ok := domain.Detect("m", []float64{5, 5, 5, 5, 5}, 5); ok {
		t.Error("constant value flagged")
	}
	if a, ok := domain.Detect("m", []float64{5, 5, 5, 5, 5}, 6); !ok || a.ZScore <= 0 {
		t.Errorf("change from a constant history: %+v %v", a, ok)
	}
}

func TestValidateRule(t *testing.T) {
	t.Parallel()
	good := events.AlertRule{ID: "r1", Name: "n", Metric: domain.MetricCostUSD, Comparator: "gte", Threshold: 1, Period: "7d", Enabled: true, WebhookURL: "https://hooks.example.com/x"}
	if err := domain.ValidateRule(good); err != nil {
		t.Fatal(err)
	}
	bad := good
	bad.Metric, bad.Comparator, bad.WebhookURL = "cpu", "ne", "javascript:alert(1)"
	err := domain.ValidateRule(bad)
	e, ok := apperr.As(err)
	if !ok || e.Kind != apperr.KindInvalid || len(e.Fields) != 3 {
		t.Fatalf("%+v", err)
	}
	if !domain.Fires(good, 1) || domain.Fires(good, 0.99) {
		t.Error("gte comparator")
	}
}
