package observability_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	convevents "github.com/crispy-enigma/crispy/modules/conversation/events"
	"github.com/crispy-enigma/crispy/modules/observability"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/embedded"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/httpapi"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// BenchmarkReplayVerify1M builds a 1,000,000-event tenant (plus 50,000 events of another tenant
// interleaved) on the embedded store once, then measures Replay (JSONL to io.Discard) and Verify.
// Target: >= 100,000 events/s each. CRISPY_BENCH_EVENTS overrides the size (for a quick run).
func BenchmarkReplayVerify1M(b *testing.B) {
	total := 1_000_000
	if v := os.Getenv("CRISPY_BENCH_EVENTS"); v != "" {
		total, _ = strconv.Atoi(v)
	}
	s, err := embedded.Open(b.TempDir(), embedded.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	data, _ := eventstore.NewEventData(convevents.TypeAssistantMessageCompleted, convevents.AssistantMessageCompleted{
		SessionID: "0b0f6a2e-0c4b-4a57-9a65-3f5f0f3a1d2e", TurnID: "1", Content: "An answer of moderate length, about as long as a short chat reply.",
		Model: "openai:gpt-4o-mini", Usage: convevents.Usage{PromptTokens: 120, CompletionTokens: 40, TotalTokens: 160}, LatencyMs: 812, TTFTMs: 120})
	batch := make([]eventstore.EventData, 1000)
	for i := range batch {
		batch[i] = data
	}
	built := time.Now()
	for i := 0; i < total/len(batch); i++ {
		if _, err := s.Append(ctx, tenant.MustStream(acme, "session", fmt.Sprint(i%200)), eventstore.Any, batch...); err != nil {
			b.Fatal(err)
		}
		if i%20 == 0 {
			if _, err := s.Append(ctx, tenant.MustStream(beta, "session", "x"), eventstore.Any, batch...); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Logf("built %d events in %s", total, time.Since(built).Round(time.Millisecond))

	b.Run("replay", func(b *testing.B) {
		var n int
		start := time.Now()
		for b.Loop() {
			n, err = observability.Replay(ctx, s, acme, observability.ReplayOptions{}, io.Discard, nil)
			if err != nil || n != total {
				b.Fatalf("replayed %d: %v", n, err)
			}
		}
		b.ReportMetric(float64(n*b.N)/time.Since(start).Seconds(), "events/s")
	})
	b.Run("verify", func(b *testing.B) {
		var res observability.VerifyResult
		start := time.Now()
		for b.Loop() {
			res, err = observability.Verify(ctx, s, acme, nil)
			if err != nil || !res.OK || res.EventsChecked != total {
				b.Fatalf("verify %+v: %v", res, err)
			}
		}
		b.ReportMetric(float64(res.EventsChecked*b.N)/time.Since(start).Seconds(), "events/s")
	})
}

// BenchmarkRecordRequest is the per-request cost of the HTTP metrics hook (target < 1 µs).
func BenchmarkRecordRequest(b *testing.B) {
	m, err := observability.New(observability.Deps{Store: eventstoretest.NewMemory(), Metrics: metrics.NewSet(),
		KnownTenants: func() []tenant.ID { return []tenant.ID{acme} }})
	if err != nil {
		b.Fatal(err)
	}
	rec := httpapi.RequestRecord{Method: "GET", Route: "GET /usage", Status: 200, Duration: 3 * time.Millisecond, Tenant: acme}
	for b.Loop() {
		m.RecordRequest(rec)
	}
}
