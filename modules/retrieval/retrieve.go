package retrieval

import (
	"context"

	"github.com/crispy-enigma/crispy/modules/retrieval/internal/app"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// RetrieveMode returns t's k best passages for query in mode (hybrid, vector or lexical; "": the
// tenant's), without the relevance threshold Retrieve applies: every hit, in rank order (quality
// measurements such as test/cranfield rank them all).
func (m *Module) RetrieveMode(ctx context.Context, t tenant.ID, query string, k int, mode string) ([]Passage, error) {
	srcs, err := m.svc.RetrieveMode(ctx, t, query, k, mode, false)
	if err != nil {
		return nil, err
	}
	out := make([]Passage, len(srcs))
	for i, s := range srcs {
		out[i] = Passage{DocID: s.DocID, ChunkID: s.ChunkID, Title: s.Title, Source: s.Source, URL: s.URL, Text: s.Text, Score: s.Score}
	}
	return out, nil
}

// ChunkTerms are the analysed words retrieval indexes a chunk by (its title weighted above its
// text), for measurements that build an index the way the module does (test/cranfield).
func ChunkTerms(title, text string) []string { return app.ChunkTerms(title, text) }
