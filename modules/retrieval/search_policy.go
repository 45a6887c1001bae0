package retrieval

import (
	"context"

	"github.com/crispy-enigma/crispy/modules/retrieval/internal/app"
	"github.com/crispy-enigma/crispy/platform/search"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// SearchSettings reads the tenant's `search:` settings (mode, rrfK, weights, feedback,
// minRerankScore) and its models.rerank for the app.
func (a policyAdapter) SearchSettings(ctx context.Context, t tenant.ID) (app.SearchSettings, error) {
	c, err := a.p.Config(ctx, t)
	if err != nil {
		return app.SearchSettings{}, err
	}
	s := c.Search
	st := app.SearchSettings{Mode: search.Mode(s.Mode),
		Fusion: search.Fusion{K: s.RRFK, VectorWeight: s.VectorWeight, LexicalWeight: s.LexicalWeight}}
	if s.Feedback != nil && !*s.Feedback {
		st.NoFeedback = true
	}
	st.Rerank, st.MinRerankScore = c.Models.Rerank, s.MinRerankScore
	return st, nil
}
