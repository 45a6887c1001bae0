package cranfield_test

import (
	"context"
	"sort"
	"testing"

	"github.com/crispy-enigma/crispy/modules/retrieval"
	"github.com/crispy-enigma/crispy/platform/ai/embeddings"
	"github.com/crispy-enigma/crispy/platform/search"
	"github.com/crispy-enigma/crispy/platform/search/embedded"
	"github.com/crispy-enigma/crispy/platform/search/lexical"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// offTopic are questions nobody would ask of an aeronautics collection: their best hits are what
// "unrelated" scores, which the relevance thresholds must stay above.
var offTopic = []string{"How many vacation days do employees get?", "What is the capital of France?",
	"recipe for sourdough bread with a long cold fermentation", "how do I reset my password",
	"quarterly sales report for the marketing team", "who won the football world cup", "parking garage opening hours for visitors",
	"symptoms of the flu in children", "best programming language for web servers", "how to file a tax return", "wedding dress shopping",
	"the history of the roman empire", "train schedule from london to paris", "how do plants grow in the shade",
	"stock market crash of 1929", "cheap flights to new york"}

// TestCalibrateRelevanceThresholds prints where search.MinVectorScore and MinLexicalScore come
// from: the two halves' scores of judged-relevant passages in the dev queries' hybrid top 10, and of
// the best hit of off-topic questions. It fails when the thresholds stop separating them: fewer than
// 85% of the relevant passages kept, or more than 2 of the 16 off-topic questions answered.
//
//	go test -v -count=1 -run CalibrateRelevance ./test/cranfield/
func TestCalibrateRelevanceThresholds(t *testing.T) {
	docs := readJSONL[doc](t, "testdata/docs.jsonl")
	queries := readJSONL[query](t, "testdata/queries-dev.jsonl")
	qrels := readQrels(t)
	h := embeddings.NewHashed(embeddings.HashedConfig{})
	ix, err := embedded.Open(embedded.Config{})
	if err != nil {
		t.Fatal(err)
	}
	tn := tenant.MustParse("cranfield")
	cs := make([]search.Chunk, 0, len(docs))
	for _, d := range docs { // one chunk per document, embedded and analysed as retrieval does
		cs = append(cs, search.Chunk{DocID: d.ID, ChunkID: d.ID, Text: d.Text, Vector: h.Vector(d.Title + "\n\n" + d.Text),
			Terms: retrieval.ChunkTerms(d.Title, d.Text)})
	}
	ctx := context.Background()
	if err := ix.Upsert(ctx, tn, cs); err != nil {
		t.Fatal(err)
	}
	ask := func(q string, k int) []search.Hit {
		hits, err := ix.Search(ctx, tn, search.Query{Mode: search.ModeHybrid, Vector: h.Vector(q), Terms: lexical.Analyze(q), Text: q,
			Feedback: true, K: k, MinScore: -1})
		if err != nil {
			t.Fatal(err)
		}
		return hits
	}
	var relV, relL []float64
	kept, total := 0, 0
	for _, q := range queries {
		rel := qrels[q.ID]
		for _, x := range ask(q.Text, 10) {
			if rel[x.DocID] > 0 {
				relV, relL = append(relV, x.VectorScore), append(relL, x.LexicalScore)
				total++
				if search.Relevant(x, search.ModeHybrid) {
					kept++
				}
			}
		}
	}
	var offV, offL []float64
	answered := 0
	for _, q := range offTopic {
		for _, x := range ask(q, 1) {
			offV, offL = append(offV, x.VectorScore), append(offL, x.LexicalScore)
			if search.Relevant(x, search.ModeHybrid) {
				answered++
				t.Logf("off-topic %q passes: cosine %.3f, BM25 %.3f", q, x.VectorScore, x.LexicalScore)
			}
		}
	}
	pct := func(xs []float64, p float64) float64 {
		s := append([]float64(nil), xs...)
		sort.Float64s(s)
		return s[int(p*float64(len(s)-1))]
	}
	t.Logf("judged relevant in the top 10 (%d): cosine p10 %.3f p50 %.3f; normalised BM25 p10 %.3f p50 %.3f", total, pct(relV, .1), pct(relV, .5), pct(relL, .1), pct(relL, .5))
	t.Logf("off-topic best hits (%d): cosine max %.3f p50 %.3f; normalised BM25 max %.3f p50 %.3f", len(offV), pct(offV, 1), pct(offV, .5), pct(offL, 1), pct(offL, .5))
	t.Logf("thresholds cosine %.2f or BM25 %.2f: relevant kept %d/%d (%.0f%%), off-topic answered %d/%d", search.MinVectorScore, search.MinLexicalScore,
		kept, total, 100*float64(kept)/float64(total), answered, len(offTopic))
	if float64(kept) < 0.85*float64(total) {
		t.Errorf("the thresholds drop %d of %d relevant passages", total-kept, total)
	}
	if answered > 2 {
		t.Errorf("%d off-topic questions pass the thresholds", answered)
	}
}
