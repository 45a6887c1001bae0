package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/crispy-enigma/crispy/platform/ai/rerank"
	"github.com/crispy-enigma/crispy/platform/metering"
	"github.com/crispy-enigma/crispy/platform/search"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// Rerankers resolves a tenant's models.rerank ("provider:model"; "": the server's default; "none":
// off) to a reranker, nil when there is none; *rerank.Resolver implements it.
type Rerankers interface {
	Resolve(spec string) (rerank.Reranker, error)
}

// RerankCandidates is how many fused candidates a reranker reorders (at least the k asked for): a
// cross-encoder reads every candidate with the query, so cost and latency grow with them, and a
// relevant passage the first stage ranked below 50 is rare. 50 is the candidate depth Cohere's and
// most RAG frameworks' rerank examples use; it is not fitted to any collection.
const RerankCandidates = 50

// DefaultMinRerankScore is the relevance threshold of a reranked hit when the tenant sets none
// (search.minRerankScore): its reranker score, on the [0, 1] scale platform/ai/rerank gives every
// provider. It replaces the per-half thresholds (search.Relevant), which judge the first stage's
// scores: a reranked list is judged on the reranker's reading only. Unlike those, it is NOT
// calibrated here (no reranking model runs offline, so test/cranfield cannot measure one). 0.1 is
// chosen from the providers' scales: cross-encoders such as bge-reranker read through the logistic
// function, and Cohere's normalised relevance_score, put unrelated passages around 0.001–0.05 and
// related ones well above 0.1. A tenant should set its own after asking its reranker off-topic
// questions, as test/cranfield's TestCalibrateRelevanceThresholds does for the first stage.
const DefaultMinRerankScore = 0.1

// reranker returns the tenant's reranker (nil: none), from its settings' spec.
func (s *Service) reranker(st SearchSettings) (rerank.Reranker, error) {
	if s.Rerankers == nil {
		return nil, nil
	}
	return s.Rerankers.Resolve(st.Rerank)
}

// rerankOutcome says what the rerank step did to a list.
type rerankOutcome int

const (
	notReranked rerankOutcome = iota // no reranker (or the request turned it off)
	reranked                         // the list is the reranker's order and scores
	fellBack                         // the reranker failed or timed out: the fused order, cut to k
)

// rerankHits reorders hits (the fused candidates, best first) by x's reading of query against
// each, keeping the k best, with Score set to the reranker's. It is bounded by RerankTimeout; on
// timeout or failure it logs, counts (crispy_retrieval_rerank_fallbacks_total) and returns the
// fused order cut to k: a search is never lost to an optional step. The tenant's token budget
// refusing the call is returned (429), as for the rewrite: answering without the model would hide
// that the tenant is out of budget.
func (s *Service) rerankHits(ctx context.Context, t tenant.ID, x rerank.Reranker, query string, hits []search.Hit, k int) ([]search.Hit, rerankOutcome, error) {
	cut := func() []search.Hit { return hits[:min(k, len(hits))] }
	if len(hits) == 0 {
		return hits, reranked, nil
	}
	docs := make([]string, len(hits))
	for i, h := range hits {
		docs[i] = embedText(h.Title, h.Text) // the title names what a passage cut from the middle is about
	}
	res, err := s.rerankMetered(ctx, t, x, query, docs, min(k, len(hits)))
	if err != nil {
		if overBudget(err) {
			return nil, notReranked, err
		}
		reason := "error"
		if errors.Is(err, context.DeadlineExceeded) {
			reason = "timeout"
		}
		s.Log.WarnContext(ctx, "retrieval: rerank failed; the fused order is kept", "model", x.Model(), "reason", reason, "error", err)
		if s.Metrics != nil {
			s.Metrics.GetOrCreateCounter(fmt.Sprintf(`crispy_retrieval_rerank_fallbacks_total{tenant=%q,reason=%q}`, t.String(), reason)).Inc()
		}
		return cut(), fellBack, nil
	}
	out := make([]search.Hit, 0, len(res.Ranked))
	for _, r := range res.Ranked {
		h := hits[r.Index]
		h.Score = r.Score
		out = append(out, h)
	}
	return out, reranked, nil
}

// rerankMetered runs one rerank call of t bounded by RerankTimeout: booked against the tenant's
// token budget and recorded as a usage event (purpose search.rerank) with the tokens the provider
// reports, else the estimate of what a cross-encoder reads (the query once per passage, and the
// passages).
func (s *Service) rerankMetered(ctx context.Context, t tenant.ID, x rerank.Reranker, query string, docs []string, topN int) (rerank.Result, error) {
	tokens := metering.EstimateTokens(docs...) + len(docs)*metering.EstimateTokens(query)
	var h metering.Hold
	if s.Meter != nil {
		var err error
		if h, err = s.Meter.Begin(ctx, t, tokens); err != nil {
			return rerank.Result{}, err
		}
	}
	rctx, cancel := context.WithTimeout(ctx, s.RerankTimeout)
	defer cancel()
	start := s.Now()
	res, err := x.Rerank(rctx, query, docs, topN)
	if h != nil {
		call := metering.Call{Purpose: metering.PurposeRerank, Operation: metering.OperationRerank, Model: x.Model(),
			PromptTokens: tokens, Estimated: true, Latency: s.Now().Sub(start), Err: err}
		if err == nil && res.Tokens > 0 {
			call.PromptTokens, call.Estimated = res.Tokens, false
		}
		if derr := h.Done(ctx, call); derr != nil {
			s.Log.ErrorContext(ctx, "rerank call not recorded as usage", "tenant", t.String(), "error", derr)
		}
	}
	if err != nil {
		return rerank.Result{}, fmt.Errorf("rerank with %s: %w", x.Model(), err)
	}
	return res, nil
}

// relevantAfter keeps the hits that pass the relevance threshold of how they were ranked: the
// reranker's score against the tenant's minRerankScore when reranked, else the mode's per-half
// thresholds (a list the reranker failed on is judged like one never reranked).
func relevantAfter(hits []search.Hit, st SearchSettings, how rerankOutcome) []search.Hit {
	if how != reranked {
		return relevant(hits, st.Mode)
	}
	minScore := st.MinRerankScore
	if minScore <= 0 {
		minScore = DefaultMinRerankScore
	}
	out := hits[:0:0]
	for _, h := range hits {
		if h.Score >= minScore {
			out = append(out, h)
		}
	}
	return out
}
