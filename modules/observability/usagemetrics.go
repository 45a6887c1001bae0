package observability

import (
	"context"
	"fmt"

	convevents "github.com/crispy-enigma/crispy/modules/conversation/events"
	"github.com/crispy-enigma/crispy/platform/bus"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// processorUsageMetrics counts tokens and cost into Prometheus counters (durable name: never rename).
// A processor, not a projection: it runs once per deployment, so each model call is counted on
// exactly one replica and a sum over replicas is the deployment's total; a restart resumes from
// its checkpoint instead of counting the history again.
const processorUsageMetrics = "observability.usage-metrics"

// registerUsageMetrics counts every recorded model call (chat turns, /v1 completions and the calls
// other modules make through the metering port) into crispy_ai_tokens_total{tenant,model,purpose,
// direction} and crispy_ai_cost_usd_total{tenant,model,purpose}. The tenant label is the bounded
// one of the request counters (configured tenants up to MaxTenantLabels, then "other").
func (m *Module) registerUsageMetrics(b bus.Consumers) {
	q := b.Processor(processorUsageMetrics)
	bus.HandleView[convevents.AssistantMessageCompleted](q, func(_ context.Context, env bus.Envelope, ev convevents.Metered) error {
		m.countUsage(env.Tenant, ev.Model, "chat", ev.Usage)
		return nil
	})
	bus.Handle(q, func(_ context.Context, env bus.Envelope, ev convevents.AssistantMessageFailed) error {
		m.countUsage(env.Tenant, ev.Model, "chat", ev.Usage)
		return nil
	})
	bus.Handle(q, func(_ context.Context, env bus.Envelope, ev convevents.CompletionRecorded) error {
		purpose := ev.Purpose
		if purpose == "" {
			purpose = "chat.completions"
		}
		m.countUsage(env.Tenant, ev.Model, purpose, ev.Usage)
		return nil
	})
}

func (m *Module) countUsage(t tenant.ID, model, purpose string, u convevents.Usage) {
	if model == "" || (u.PromptTokens == 0 && u.CompletionTokens == 0) {
		return
	}
	label := m.http.TenantLabel(t)
	m.set.GetOrCreateCounter(fmt.Sprintf(`crispy_ai_tokens_total{tenant=%q,model=%q,purpose=%q,direction="in"}`, label, model, purpose)).Add(u.PromptTokens)
	m.set.GetOrCreateCounter(fmt.Sprintf(`crispy_ai_tokens_total{tenant=%q,model=%q,purpose=%q,direction="out"}`, label, model, purpose)).Add(u.CompletionTokens)
	if p, ok := m.svc.Prices.Lookup(model); ok {
		m.set.GetOrCreateFloatCounter(fmt.Sprintf(`crispy_ai_cost_usd_total{tenant=%q,model=%q,purpose=%q}`, label, model, purpose)).Add(p.Cost(tokens(u)))
	}
}
