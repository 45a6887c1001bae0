package ai_test

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/crispy-enigma/crispy/platform/ai"
	"github.com/crispy-enigma/crispy/platform/ai/offline"
	"github.com/crispy-enigma/crispy/platform/tracing"
)

// The offline model reports no usage; its attempt span carries the estimated token counts, marked
// as estimated, instead of 0 tokens (issue 15 item 4).
func TestOfflineAttemptSpanCarriesTokenCounts(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	r, err := ai.NewRouter(ai.RouterConfig{Tracer: tracing.NewWithProcessor(tracing.Config{}, rec).Tracer()},
		map[string]ai.Provider{offline.Name: offline.New()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Complete(context.Background(), []ai.ModelID{ai.Offline}, ai.Request{Messages: []ai.Message{{Role: ai.RoleUser, Content: "How long do refunds take?"}}}); err != nil {
		t.Fatal(err)
	}
	spans := rec.Ended()
	if len(spans) != 1 {
		t.Fatalf("%d spans", len(spans))
	}
	got := map[string]any{}
	for _, a := range spans[0].Attributes() {
		got[string(a.Key)] = a.Value.AsInterface()
	}
	if in, _ := got[tracing.AttrInputTokens].(int64); in <= 0 {
		t.Fatalf("input tokens %v in %v", got[tracing.AttrInputTokens], got)
	}
	if out, _ := got[tracing.AttrOutputTokens].(int64); out <= 0 {
		t.Fatalf("output tokens %v in %v", got[tracing.AttrOutputTokens], got)
	}
	if got[tracing.AttrUsageEstimated] != true {
		t.Fatalf("not marked estimated: %v", got)
	}
}
