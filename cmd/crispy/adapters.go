package main

import (
	"context"
	"errors"
	"time"

	"github.com/crispy-enigma/crispy/modules/conversation"
	"github.com/crispy-enigma/crispy/modules/observability"
	"github.com/crispy-enigma/crispy/modules/retrieval"
	"github.com/crispy-enigma/crispy/modules/tenancy"
	"github.com/crispy-enigma/crispy/modules/tooling"
	"github.com/crispy-enigma/crispy/platform/ai"
	"github.com/crispy-enigma/crispy/platform/metering"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// The adapters below satisfy one module's port with another module's public API, so modules never
// import each other. They hold the app rather than the module because of construction order:
// tooling is built before conversation (which runs tools), but only called after both exist.

// toolCompleter answers a tool's Host.Complete with the tenant's chat model chain.
type toolCompleter struct{ a *app }

func (c toolCompleter) Complete(ctx context.Context, t tenant.ID, req tooling.Completion) (tooling.CompletionResult, error) {
	var msgs []ai.Message
	if req.System != "" {
		msgs = append(msgs, ai.Message{Role: ai.RoleSystem, Content: req.System})
	}
	msgs = append(msgs, ai.Message{Role: ai.RoleUser, Content: req.Prompt})
	ans, err := c.a.conv.Complete(ctx, t, metering.PurposeTool, msgs, req.MaxTokens)
	if errors.Is(err, conversation.ErrOfflineOnly) {
		return tooling.CompletionResult{}, tooling.ErrNoModel
	}
	if err != nil {
		return tooling.CompletionResult{}, err
	}
	return tooling.CompletionResult{Text: ans.Content, Model: ans.Model.String()}, nil
}

// ragCompleter writes RAG answers and query rewrites with the tenant's chat model chain.
type ragCompleter struct{ a *app }

func (c ragCompleter) Complete(ctx context.Context, t tenant.ID, req retrieval.CompletionRequest) (retrieval.CompletionResult, error) {
	msgs := make([]ai.Message, len(req.Messages))
	for i, m := range req.Messages {
		msgs[i] = ai.Message{Role: m.Role, Content: m.Content}
	}
	ans, err := c.a.conv.Complete(ctx, t, req.Purpose, msgs, req.MaxTokens)
	if errors.Is(err, conversation.ErrOfflineOnly) {
		return retrieval.CompletionResult{}, retrieval.ErrNoModel
	}
	if err != nil {
		return retrieval.CompletionResult{}, err
	}
	return retrieval.CompletionResult{Text: ans.Content, Model: ans.Model.String()}, nil
}

// convMeter meters other modules' model calls (embeddings) on the conversation module's token
// budget and usage events; built before conversation, called after.
type convMeter struct{ a *app }

func (m convMeter) Begin(ctx context.Context, t tenant.ID, tokens int) (metering.Hold, error) {
	return m.a.conv.Meter().Begin(ctx, t, tokens)
}

// toolIngester puts a tool's document into the calling tenant's index.
type toolIngester struct{ r *retrieval.Module }

func (i toolIngester) Ingest(ctx context.Context, t tenant.ID, d tooling.Document) (tooling.IngestResult, error) {
	res, err := i.r.Ingest(ctx, t, retrieval.Document(d))
	return tooling.IngestResult(res), err
}

// chatRetriever gives a chat turn the tenant's passages.
type chatRetriever struct{ r *retrieval.Module }

func (c chatRetriever) Retrieve(ctx context.Context, t tenant.ID, query string, k int) ([]conversation.Passage, error) {
	ps, err := c.r.Retrieve(ctx, t, query, k)
	if err != nil {
		return nil, err
	}
	out := make([]conversation.Passage, len(ps))
	for i, p := range ps {
		out[i] = conversation.Passage(p)
	}
	return out, nil
}

// searchStats gives the observability SLIs the retrieval module's search cache numbers.
type searchStats struct{ r *retrieval.Module }

func (s searchStats) CacheStats(ctx context.Context, t tenant.ID, since, until time.Time) (observability.CacheStats, error) {
	c, err := s.r.CacheStats(ctx, t, since, until)
	return observability.CacheStats{Hits: c.Hits, Misses: c.Misses, TotalChecks: c.TotalChecks, HitRate: c.HitRate, AvgLatencyMs: c.AvgLatencyMs}, err
}

// lazyPricer prices per-key USD budgets with observability's price table. The conversation module
// is built before observability, so the table is looked up at call time (no request is served
// before both exist); a server without it prices every call at 0.
type lazyPricer struct{ a *app }

func (p lazyPricer) Cost(model string, prompt, cached, completion, reasoning int64) (float64, bool) {
	if p.a.obs == nil {
		return 0, false
	}
	return p.a.obs.Cost(model, prompt, cached, completion, reasoning)
}

// windowOf gives the conversation module the tenancy module's shared tokens-per-minute log (nil
// without --redis: each process then counts its own calls).
func windowOf(m *tenancy.Module) conversation.TokenWindow {
	if w := m.TokenWindow(); w != nil {
		return tokenWindow{w}
	}
	return nil
}

type tokenWindow struct{ w *tenancy.TokenWindow }

func (w tokenWindow) Reserve(ctx context.Context, t tenant.ID, scope, turn string, prompt, want, least, limit int64, now time.Time) (conversation.TokenGrant, error) {
	g, err := w.w.Reserve(ctx, t, scope, turn, prompt, want, least, limit, now)
	return conversation.TokenGrant{OK: g.OK, Granted: g.Granted, Used: g.Used, RetryAfter: g.RetryAfter}, err
}

func (w tokenWindow) Settle(ctx context.Context, t tenant.ID, scope, turn string, tokens int64) error {
	return w.w.Settle(ctx, t, scope, turn, tokens)
}

func (w tokenWindow) Release(ctx context.Context, t tenant.ID, scope, turn string) error {
	return w.w.Release(ctx, t, scope, turn)
}
