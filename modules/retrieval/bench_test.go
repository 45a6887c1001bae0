package retrieval_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/crispy-enigma/crispy/modules/retrieval"
	"github.com/crispy-enigma/crispy/platform/ai/embeddings"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/search/embedded"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// BenchmarkSearchPipeline measures POST /search's work without HTTP: embed the query with the offline
// embedder and search 5,000 chunks of one tenant (cache disabled), sources only and with the
// extractive answer.
func BenchmarkSearchPipeline(b *testing.B) {
	ctx := context.Background()
	ix, _ := embedded.Open(embedded.Config{})
	res, _ := embeddings.NewResolver(embeddings.Config{})
	mod, err := retrieval.New(retrieval.Deps{Store: eventstoretest.NewMemory(), Index: ix, Embedders: res, Config: retrieval.Config{CacheTTL: -1}})
	if err != nil {
		b.Fatal(err)
	}
	acme := tenant.MustParse("acme")
	words := strings.Fields(vacation + " " + parking + " " + secretA + " " + notesB)
	for i := range 500 {
		var sb strings.Builder
		for j := range 1500 {
			sb.WriteString(words[(i*7+j*13)%len(words)])
			sb.WriteString(fmt.Sprintf(" w%d ", (i+j)%97))
			if j%15 == 14 {
				sb.WriteString(". ")
			}
		}
		if _, err := mod.Ingest(ctx, acme, retrieval.Document{DocID: fmt.Sprintf("doc-%d", i), Text: sb.String()}); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	b.Run("retrieve-top5", func(b *testing.B) {
		for i := range b.N {
			if _, err := mod.Retrieve(ctx, acme, fmt.Sprintf("vacation days garage w%d", i%97), 5); err != nil {
				b.Fatal(err)
			}
		}
	})
}
