package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/crispy-enigma/crispy/modules/retrieval/internal/domain"
	"github.com/crispy-enigma/crispy/platform/ai/rerank"
	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/exposition"
	"github.com/crispy-enigma/crispy/platform/metering"
	"github.com/crispy-enigma/crispy/platform/sealing"
	"github.com/crispy-enigma/crispy/platform/search"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// Search is the query of POST /search.
type Search struct {
	Tenant   tenant.ID
	Query    string
	TopK     int // 0: 5
	Filter   map[string]any
	MinScore *float64
	Answer   bool
	// Mode is hybrid, vector or lexical; "": the tenant's (default hybrid).
	Mode string
	// Rewrite asks the model for a rewrite of the query, searched beside it. Nil: only when an
	// answer is asked for (answer false then calls no model at all).
	Rewrite *bool
	// Rerank false skips the tenant's reranker (models.rerank) for this request; nil: the tenant's.
	Rerank *bool
}

// Source is one passage of a search result.
type Source struct {
	ID      string
	DocID   string
	ChunkID string
	Title   string
	Source  string
	URL     string
	Text    string
	Score   float64
}

// SearchResult is the answer of POST /search.
type SearchResult struct {
	Answer     string
	Sources    []Source
	Confidence float64
	FollowUps  []string
	Cached     bool
	Model      string
	Reranked   bool // Sources are the reranker's order and scores
}

// Limits of a query (SPEC §2).
const (
	MaxQueryChars = 2000
	MaxTopK       = 50
	DefaultTopK   = 5
)

func parseFilter(f map[string]any) (search.Filter, error) {
	var out search.Filter
	for k, v := range f {
		if k == "docId" || k == "docIds" {
			switch x := v.(type) {
			case string:
				out.DocIDs = append(out.DocIDs, x)
			case []any:
				for _, e := range x {
					s, ok := e.(string)
					if !ok {
						return out, apperr.Invalid("retrieval.invalidFilter", "body.filter."+k, "docId filters are strings")
					}
					out.DocIDs = append(out.DocIDs, s)
				}
			default:
				return out, apperr.Invalid("retrieval.invalidFilter", "body.filter."+k, "docId filters are a string or a list of strings")
			}
			continue
		}
		switch v.(type) {
		case map[string]any, []any:
			return out, apperr.Invalid("retrieval.invalidFilter", "body.filter."+k, "metadata filters compare one key with one value (string, number or boolean)")
		}
		if out.Metadata == nil {
			out.Metadata = map[string]string{}
		}
		out.Metadata[k] = metaString(v)
	}
	return out, nil
}

func (s *Service) validateSearch(q *Search) (search.Filter, error) {
	q.Query = strings.TrimSpace(q.Query)
	if q.Query == "" {
		return search.Filter{}, apperr.Invalid("retrieval.invalidQuery", "body.query", "query must not be empty")
	}
	if utf8.RuneCountInString(q.Query) > MaxQueryChars {
		return search.Filter{}, apperr.Invalid("retrieval.invalidQuery", "body.query", fmt.Sprintf("query must be at most %d characters", MaxQueryChars))
	}
	if q.TopK == 0 {
		q.TopK = DefaultTopK
	}
	if q.TopK < 1 || q.TopK > MaxTopK {
		return search.Filter{}, apperr.Invalid("retrieval.invalidTopK", "body.topK", fmt.Sprintf("topK must be 1 to %d", MaxTopK))
	}
	if q.MinScore != nil && (*q.MinScore < -1 || *q.MinScore > 1) {
		return search.Filter{}, apperr.Invalid("retrieval.invalidMinScore", "body.minScore", "minScore must be between -1 and 1")
	}
	if _, err := parseMode(q.Mode); err != nil {
		return search.Filter{}, err
	}
	return parseFilter(q.Filter)
}

func searchKey(q Search) string {
	f, _ := json.Marshal(q.Filter) // maps marshal with sorted keys
	ms := "none"
	if q.MinScore != nil {
		ms = fmt.Sprint(*q.MinScore)
	}
	rw := "default"
	if q.Rewrite != nil {
		rw = fmt.Sprint(*q.Rewrite)
	}
	rr := q.Rerank == nil || *q.Rerank
	return fmt.Sprintf("%s\x00%d\x00%s\x00%s\x00%t\x00%s\x00%s\x00%t", domain.NormalizeQuery(q.Query), q.TopK, f, ms, q.Answer, q.Mode, rw, rr)
}

// Search runs the RAG pipeline: safety filter, cache, optional query rewrite, embed, kNN within the
// tenant, then (when asked) an answer citing the numbered sources. While the tenant's index catches
// up with the event log it answers catching_up: never from a partial index.
func (s *Service) Search(ctx context.Context, q Search) (SearchResult, error) {
	start := s.Now()
	filter, err := s.validateSearch(&q)
	if err != nil {
		return SearchResult{}, err
	}
	if domain.IsSelfHarm(q.Query) {
		return SearchResult{Answer: domain.SafetyAnswer, Sources: []Source{}, FollowUps: domain.SafetyFollowUps}, nil
	}
	if err := s.requireReady(q.Tenant); err != nil {
		return SearchResult{}, err
	}
	key := searchKey(q)
	gen := s.Cache.Generation(q.Tenant)
	if r, ok := s.Cache.Get(q.Tenant, key); ok {
		s.record(q.Tenant, true, s.Now().Sub(start))
		r.Cached = true
		return r, nil
	}
	queries := []string{q.Query}
	if q.Rewrite != nil && *q.Rewrite || q.Rewrite == nil && q.Answer {
		rw, err := s.rewrite(ctx, q.Tenant, q.Query)
		if err != nil {
			return SearchResult{}, err
		}
		if domain.NormalizeQuery(rw) != domain.NormalizeQuery(q.Query) {
			queries = append(queries, rw) // searched beside the user's words, never instead of them
		}
	}
	mode, _ := parseMode(q.Mode)
	st := s.settings(ctx, q.Tenant, mode)
	hits, how, err := s.retrieve(ctx, q.Tenant, queries, q.TopK, filter, q.MinScore, st, q.Rerank == nil || *q.Rerank)
	if err != nil {
		return SearchResult{}, err
	}
	if q.Answer {
		// Only what passes the relevance threshold is cited (the reranker's when it ranked them,
		// else the mode's); the answer is written from it.
		hits = relevantAfter(hits, st, how)
	}
	res := SearchResult{Sources: make([]Source, len(hits)), FollowUps: []string{}, Reranked: how == reranked}
	scores := make([]float64, len(hits))
	numbered := make([]domain.Source, len(hits))
	for i, h := range hits {
		res.Sources[i] = Source{ID: h.ChunkID, DocID: h.DocID, ChunkID: h.ChunkID, Title: h.Title, Source: h.Source, URL: h.URL, Text: h.Text, Score: h.Score}
		scores[i] = h.Score
		numbered[i] = domain.Source{N: i + 1, Title: h.Title, Text: h.Text, Score: h.Score}
	}
	res.Confidence = domain.Confidence(scores)
	if q.Answer && len(numbered) == 0 {
		res.Answer, res.Model = NoRelevantSource, "builtin:offline"
	} else if q.Answer {
		if res.Answer, res.FollowUps, res.Model, err = s.answer(ctx, q.Tenant, q.Query, numbered); err != nil {
			return SearchResult{}, err
		}
	}
	if how != fellBack {
		// A reranker's passing failure is not kept for the cache's lifetime.
		s.Cache.Put(q.Tenant, gen, key, res)
	}
	s.record(q.Tenant, false, s.Now().Sub(start))
	return res, nil
}

// Retrieve is the chat integration's view: the k best passages for query in the tenant's mode
// that pass the mode's relevance threshold, which the chat cites (catching_up while the tenant's
// index catches up, like Search).
func (s *Service) Retrieve(ctx context.Context, t tenant.ID, query string, k int) ([]Source, error) {
	return s.RetrieveMode(ctx, t, query, k, "", true)
}

// RetrieveMode is Retrieve in mode ("": the tenant's), every hit when onlyRelevant is false
// (quality measurements rank all of them).
func (s *Service) RetrieveMode(ctx context.Context, t tenant.ID, query string, k int, mode string, onlyRelevant bool) ([]Source, error) {
	if err := s.requireReady(t); err != nil {
		return nil, err
	}
	if k <= 0 {
		k = DefaultTopK
	}
	m, err := parseMode(mode)
	if err != nil {
		return nil, err
	}
	st := s.settings(ctx, t, m)
	hits, how, err := s.retrieve(ctx, t, []string{query}, min(k, MaxTopK), search.Filter{}, nil, st, true)
	if err != nil {
		return nil, err
	}
	if onlyRelevant {
		hits = relevantAfter(hits, st, how)
	}
	out := make([]Source, len(hits))
	for i, h := range hits {
		out[i] = Source{ID: h.ChunkID, DocID: h.DocID, ChunkID: h.ChunkID, Title: h.Title, Source: h.Source, URL: h.URL, Text: h.Text, Score: h.Score}
	}
	return out, nil
}

// retrieve returns the k best hits of queries in st's mode. With a reranker (the tenant's, unless
// useRerank is false) the index is asked for RerankCandidates fused candidates, which the
// reranker reorders by its reading of the user's query (queries[0], never the model's rewrite).
func (s *Service) retrieve(ctx context.Context, t tenant.ID, queries []string, k int, f search.Filter, minScore *float64, st SearchSettings, useRerank bool) ([]search.Hit, rerankOutcome, error) {
	ms := -1.0
	if minScore != nil {
		ms = *minScore
	}
	var x rerank.Reranker
	if useRerank {
		var err error
		if x, err = s.reranker(st); err != nil {
			// A tenant naming a model this server does not serve: searched without it, told in
			// the log and the fallback counter.
			s.Log.WarnContext(ctx, "retrieval: the tenant's rerank model is not configured; the fused order is kept", "model", st.Rerank, "error", err)
			if s.Metrics != nil {
				s.Metrics.GetOrCreateCounter(fmt.Sprintf(`crispy_retrieval_rerank_fallbacks_total{tenant=%q,reason="unconfigured"}`, t.String())).Inc()
			}
			x = nil
		}
	}
	depth := k
	if x != nil {
		depth = max(k, RerankCandidates)
	}
	hits, err := s.searchQueries(ctx, t, queries, depth, f, ms, st, metering.PurposeEmbedSearch)
	if err != nil {
		return nil, notReranked, err
	}
	if s.Sealed != nil {
		if hits, err = s.Sealed.Open(ctx, t, hits); err != nil {
			if errors.Is(err, sealing.ErrCorrupt) {
				return nil, notReranked, fmt.Errorf("search index: %w", err) // altered or moved: a fault, not an outage
			}
			return nil, notReranked, apperr.Wrap(err, apperr.KindUnavailable, "retrieval.keysUnavailable", "the key store is unavailable; try again later")
		}
	}
	if x == nil {
		return hits[:min(k, len(hits))], notReranked, nil
	}
	return s.rerankHits(ctx, t, x, queries[0], hits, k)
}

func (s *Service) record(t tenant.ID, hit bool, d time.Duration) {
	s.Stats.Record(t, s.Now(), hit, d)
	if s.Metrics != nil {
		name := "crispy_retrieval_cache_misses_total"
		if hit {
			name = "crispy_retrieval_cache_hits_total"
		}
		s.Metrics.GetOrCreateCounter(fmt.Sprintf(`%s{tenant=%q}`, name, t.String())).Inc()
		// No tenant label on the latency (16 buckets per tenant); the cache counters keep it.
		s.Metrics.GetOrCreatePrometheusHistogramExt(`crispy_retrieval_search_duration_seconds`, exposition.LatencyBuckets).Update(d.Seconds())
	}
}

// overBudget is a model call the tenant's token budget refused (429 budget_exceeded): the search is
// refused with it rather than answered without the model, which would spend nothing but hide that
// the tenant is out of budget.
func overBudget(err error) bool { return apperr.KindOf(err) == apperr.KindRateLimited }

// rewrite asks the model for a search-friendly form of the query, bounded by RewriteTimeout; any
// failure (or the offline model) keeps the original, but for the budget's refusal, which is returned.
func (s *Service) rewrite(ctx context.Context, t tenant.ID, query string) (string, error) {
	if s.Completer == nil || s.RewriteTimeout <= 0 {
		return query, nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.RewriteTimeout)
	defer cancel()
	text, _, err := s.Completer.Complete(ctx, t, metering.PurposeRewrite, []Message{
		{Role: "system", Content: "Rewrite the user's question as a short search query for a document index. Keep every named " +
			"entity and technical term. Answer with the query only, on one line."},
		{Role: "user", Content: query},
	}, 64)
	if err != nil {
		if overBudget(err) {
			return "", err
		}
		if !errors.Is(err, ErrNoModel) {
			s.Log.WarnContext(ctx, "retrieval: query rewrite failed; searching the original only", "error", err)
		}
		return query, nil
	}
	text = strings.TrimSpace(strings.SplitN(strings.TrimSpace(text), "\n", 2)[0])
	if text == "" || utf8.RuneCountInString(text) > MaxQueryChars {
		return query, nil
	}
	return text, nil
}

// answer writes the cited answer and its follow-ups (one model call) with the model, or the
// extractive one offline (or when the model fails: the client still gets its sources and an honest
// answer). The budget's refusal is returned.
func (s *Service) answer(ctx context.Context, t tenant.ID, query string, sources []domain.Source) (string, []string, string, error) {
	offline := func() (string, []string, string, error) {
		fu := domain.OfflineFollowUps(query, sources)
		if fu == nil {
			fu = []string{}
		}
		return domain.ExtractiveAnswer(query, sources), fu, "builtin:offline", nil
	}
	if s.Completer == nil || len(sources) == 0 {
		return offline()
	}
	sys, user := domain.Prompt(query, sources)
	actx, cancel := context.WithTimeout(ctx, s.AnswerTimeout)
	defer cancel()
	text, model, err := s.Completer.Complete(actx, t, metering.PurposeAnswer, []Message{{Role: "system", Content: sys}, {Role: "user", Content: user}}, 700)
	if err != nil {
		if overBudget(err) {
			return "", nil, "", err
		}
		if !errors.Is(err, ErrNoModel) {
			s.Log.WarnContext(ctx, "retrieval: answer model failed; answering extractively", "error", err)
		}
		return offline()
	}
	ans, fu := domain.SplitFollowUps(text)
	if fu == nil {
		fu = []string{}
	}
	return ans, fu, model, nil
}
