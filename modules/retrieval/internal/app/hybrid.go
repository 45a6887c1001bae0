package app

import (
	"cmp"
	"context"
	"slices"

	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/search"
	"github.com/crispy-enigma/crispy/platform/search/lexical"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// SearchSettings are a tenant's search defaults (tenants file `search:`).
type SearchSettings struct {
	Mode   search.Mode   // "": hybrid
	Fusion search.Fusion // zero fields: k 60, weights 1
	// NoFeedback turns off pseudo-relevance feedback (search.Query.Feedback), which is on by
	// default: on the Cranfield dev queries it lifts the lexical and hybrid modes' nDCG@10 more than
	// anything else that is not fitted to the collection (README, Measured).
	NoFeedback bool
	// Rerank is the tenant's models.rerank ("": the server's default reranker, if any; "none":
	// off), MinRerankScore its search.minRerankScore (0: DefaultMinRerankScore).
	Rerank         string
	MinRerankScore float64
}

// SearchPolicy gives a tenant's search settings; the module's tenant policy implements it. Nil,
// or a policy without it: every tenant has the defaults.
type SearchPolicy interface {
	SearchSettings(ctx context.Context, t tenant.ID) (SearchSettings, error)
}

// DefaultMode is the mode of a request that names none, for a tenant whose settings name none.
const DefaultMode = search.ModeHybrid

// parseMode checks a request's mode: one of search.Modes, or "" for the tenant's.
func parseMode(m string) (search.Mode, error) {
	if m == "" {
		return "", nil
	}
	for _, x := range search.Modes {
		if string(x) == m {
			return x, nil
		}
	}
	return "", apperr.Invalid("retrieval.invalidMode", "body.mode", "mode must be hybrid, vector or lexical")
}

// settings are t's search settings with the request's mode over them.
func (s *Service) settings(ctx context.Context, t tenant.ID, mode search.Mode) SearchSettings {
	var st SearchSettings
	if p, ok := s.Policy.(SearchPolicy); ok && p != nil {
		if got, err := p.SearchSettings(ctx, t); err == nil {
			st = got
		}
	}
	if mode != "" {
		st.Mode = mode
	}
	if st.Mode == "" {
		st.Mode = DefaultMode
	}
	st.Fusion = st.Fusion.WithDefaults()
	return st
}

// searchQueries runs each query in st's mode and, when there are several (the user's and the
// model's rewrite), fuses their rankings by reciprocal rank with equal weights: a rewrite adds
// candidates, it never replaces what the user typed. A query's vector is embedded only when the
// mode needs one (purpose meters it).
func (s *Service) searchQueries(ctx context.Context, t tenant.ID, queries []string, k int, f search.Filter, ms float64, st SearchSettings, purpose string) ([]search.Hit, error) {
	depth := k
	if len(queries) > 1 {
		depth = search.Depth(k)
	}
	var vecs [][]float32
	if st.Mode != search.ModeLexical {
		var err error
		if vecs, _, err = s.Embed(ctx, t, purpose, queries); err != nil {
			return nil, err
		}
	}
	lists := make([][]search.Hit, 0, len(queries))
	for i, q := range queries {
		sq := search.Query{Mode: st.Mode, Terms: lexical.Analyze(q), Text: q, Fusion: st.Fusion, Feedback: !st.NoFeedback, K: depth, Filter: f, MinScore: ms}
		if vecs != nil {
			sq.Vector = vecs[i]
		}
		hits, err := s.Index.Search(ctx, t, sq)
		if err != nil {
			return nil, indexErr(err, false)
		}
		lists = append(lists, hits)
	}
	if len(lists) == 1 {
		return lists[0], nil
	}
	return fuseQueries(lists, st.Fusion.K, k), nil
}

// fuseQueries fuses the rankings of several queries by reciprocal rank (constant k), keeping for
// each chunk the best of its scores, and its place in the first list on ties.
func fuseQueries(lists [][]search.Hit, rrfK, k int) []search.Hit {
	type acc struct {
		hit   search.Hit
		rrf   float64
		first int
	}
	by := map[string]*acc{}
	n := 0
	for _, l := range lists {
		for i, h := range l {
			a := by[h.ChunkID]
			if a == nil {
				a = &acc{hit: h, first: n}
				n++
				by[h.ChunkID] = a
			} else {
				a.hit.Score = max(a.hit.Score, h.Score)
				a.hit.VectorScore = max(a.hit.VectorScore, h.VectorScore)
				a.hit.LexicalScore = max(a.hit.LexicalScore, h.LexicalScore)
			}
			a.rrf += 1 / float64(rrfK+i+1)
		}
	}
	all := make([]*acc, 0, len(by))
	for _, a := range by {
		all = append(all, a)
	}
	slices.SortFunc(all, func(a, b *acc) int {
		if c := cmp.Compare(b.rrf, a.rrf); c != 0 {
			return c
		}
		return cmp.Compare(a.first, b.first)
	})
	out := make([]search.Hit, 0, min(k, len(all)))
	for _, a := range all[:min(k, len(all))] {
		out = append(out, a.hit)
	}
	return out
}

// NoRelevantSource is the answer when no passage passes the relevance threshold: it cites nothing.
const NoRelevantSource = "No relevant source was found for this question in the indexed documents."

// relevant keeps the hits that pass mode's relevance threshold (search.Relevant).
func relevant(hits []search.Hit, mode search.Mode) []search.Hit {
	out := hits[:0:0]
	for _, h := range hits {
		if search.Relevant(h, mode) {
			out = append(out, h)
		}
	}
	return out
}

// embedText is what a chunk's vector is computed from: the document's title, then the chunk. A
// chunk cut from the middle of a document rarely names its subject; its title does (the lexical
// half indexes the title's words with every chunk for the same reason).
func embedText(title, text string) string {
	if title == "" {
		return text
	}
	return title + "\n\n" + text
}

// TitleWeight is how many times a chunk's lexical terms count its document's title: a title is
// the author's summary of what every passage of the document is about, so its words are better
// evidence than the same words met once in the body. Both engines index these terms (the embedded
// index's BM25, Elasticsearch's match on them), so the boost is the same in both. 2 is the usual
// title boost of field-weighted BM25 (BM25F; Elasticsearch's multi_match examples' title^2),
// not a value fitted to any collection.
const TitleWeight = 2

// ChunkTerms are the analysed words a chunk is found by: its title's TitleWeight times, then its
// text's.
func ChunkTerms(title, text string) []string {
	tt := lexical.Analyze(title)
	out := make([]string, 0, TitleWeight*len(tt)+len(text)/6)
	for range TitleWeight {
		out = append(out, tt...)
	}
	return append(out, lexical.Analyze(text)...)
}
