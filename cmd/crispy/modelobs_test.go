package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/crispy-enigma/crispy/platform/ai"
	"github.com/crispy-enigma/crispy/platform/exposition"
	"github.com/crispy-enigma/crispy/platform/logging"
	"github.com/crispy-enigma/crispy/platform/request"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// A failed model attempt and the breaker change it caused are WARN lines carrying the request's id
// and tenant; every attempt is metered in le-bucket histograms and an outcome counter.
func TestModelAttemptsAreMeteredAndFailuresLoggedWithTheRequest(t *testing.T) {
	var logs bytes.Buffer
	set := metrics.NewSet()
	o := newModelObserver(set, logging.New(&logs, slog.LevelInfo))
	ctx := tenant.WithID(request.With(context.Background(), request.Info{ID: "req-42"}), tenant.MustParse("acme"))

	o.attempt(ctx, ai.AttemptRecord{Model: "openai:gpt-4o-mini", Duration: 300 * time.Millisecond, FirstToken: 120 * time.Millisecond, Stream: true})
	o.breaker("openai:gpt-4o-mini", "closed", "open")
	o.attempt(ctx, ai.AttemptRecord{Model: "openai:gpt-4o-mini", Retry: 1, Reason: "unavailable", Err: errors.New("upstream said 503"), Duration: 2 * time.Second})
	o.fallback(ctx, ai.Attempt{Model: ai.ModelID{Provider: "openai", Model: "gpt-4o-mini"}, Reason: "unavailable"}, ai.ModelID{Provider: "builtin", Model: "offline"})

	var warns []map[string]any
	for _, l := range bytes.Split(bytes.TrimSpace(logs.Bytes()), []byte("\n")) {
		var m map[string]any
		if err := json.Unmarshal(l, &m); err != nil {
			t.Fatalf("%v: %s", err, l)
		}
		warns = append(warns, m)
	}
	want := []string{"model attempt failed", "model circuit breaker changed state", "model fallback"}
	if len(warns) != len(want) {
		t.Fatalf("log lines:\n%s\nwant %v", logs.String(), want)
	}
	for i, m := range warns {
		if m["msg"] != want[i] || m["level"] != "WARN" || m["requestId"] != "req-42" || m["tenant"] != "acme" || m["model"] != "openai:gpt-4o-mini" {
			t.Errorf("line %d = %v, want WARN %q with requestId req-42, tenant acme and the model", i, m, want[i])
		}
	}
	if warns[0]["reason"] != "unavailable" || warns[0]["retry"] != float64(1) || warns[1]["change"] != "closed -> open" || warns[2]["next"] != "builtin:offline" {
		t.Errorf("details: %v", warns)
	}

	var exp bytes.Buffer
	if err := exposition.Write(&exp, set); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{
		`crispy_ai_upstream_duration_seconds_bucket{model="openai:gpt-4o-mini",outcome="ok",le="0.5"} 1`,
		`crispy_ai_upstream_duration_seconds_bucket{model="openai:gpt-4o-mini",outcome="unavailable",le="2.5"} 1`,
		`crispy_ai_upstream_ttft_seconds_bucket{model="openai:gpt-4o-mini",le="0.25"} 1`,
		`crispy_ai_attempts_total{model="openai:gpt-4o-mini",outcome="unavailable"} 1`,
		`crispy_ai_breaker_transitions_total{model="openai:gpt-4o-mini",to="open"} 1`,
		`crispy_ai_fallbacks_total{model="openai:gpt-4o-mini",reason="unavailable"} 1`,
		`# TYPE crispy_ai_upstream_duration_seconds histogram`,
	} {
		if !strings.Contains(exp.String(), s) {
			t.Errorf("exposition lacks %q:\n%s", s, exp.String())
		}
	}
}
