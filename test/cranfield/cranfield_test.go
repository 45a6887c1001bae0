package cranfield_test

import (
	"bufio"
	"context"
	"encoding/json"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/crispy-enigma/crispy/modules/retrieval"
	"github.com/crispy-enigma/crispy/platform/ai/embeddings"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/search/embedded"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

type doc struct {
	ID    string `json:"id"`
	Title string `json:"title"`
	Text  string `json:"text"`
}

type query struct {
	ID   string `json:"id"`
	Text string `json:"text"`
}

func readJSONL[T any](t testing.TB, path string) []T {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []T
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<22)
	for sc.Scan() {
		var v T
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, v)
	}
	return out
}

// qrels maps query id -> doc id -> gain.
func readQrels(t testing.TB) map[string]map[string]float64 {
	b, err := os.ReadFile("testdata/qrels-dev.tsv")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]float64{}
	for i, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		if i == 0 || len(f) != 3 {
			continue
		}
		g, _ := strconv.ParseFloat(f[2], 64)
		if g <= 0 {
			continue
		}
		if out[f[0]] == nil {
			out[f[0]] = map[string]float64{}
		}
		out[f[0]][f[1]] = g
	}
	return out
}

// ndcgRecall scores one ranking at 10.
func ndcgRecall(ranked []string, rel map[string]float64) (float64, float64) {
	var dcg, found float64
	for i, d := range ranked[:min(10, len(ranked))] {
		if g := rel[d]; g > 0 {
			dcg += g / math.Log2(float64(i+2))
			found++
		}
	}
	gains := make([]float64, 0, len(rel))
	for _, g := range rel {
		gains = append(gains, g)
	}
	sort.Sort(sort.Reverse(sort.Float64Slice(gains)))
	var idcg float64
	for i, g := range gains[:min(10, len(gains))] {
		idcg += g / math.Log2(float64(i+2))
	}
	return dcg / idcg, found / float64(len(rel))
}

// bm25 is the plain baseline (k1 1.2, b 0.75) over the same analysis (embeddings.Terms).
type bm25 struct {
	tf    []map[string]int
	len   []float64
	avg   float64
	df    map[string]int
	ids   []string
	k1, b float64
}

func newBM25(docs []doc) *bm25 {
	m := &bm25{df: map[string]int{}, k1: 1.2, b: 0.75}
	var total float64
	for _, d := range docs {
		terms := embeddings.Terms(d.Title + " " + d.Text)
		tf := map[string]int{}
		for _, w := range terms {
			tf[w]++
		}
		for w := range tf {
			m.df[w]++
		}
		m.tf = append(m.tf, tf)
		m.len = append(m.len, float64(len(terms)))
		m.ids = append(m.ids, d.ID)
		total += float64(len(terms))
	}
	m.avg = total / float64(len(docs))
	return m
}

func (m *bm25) rank(q string, k int) []string {
	n := float64(len(m.ids))
	type sc struct {
		id string
		s  float64
	}
	var out []sc
	qt := embeddings.Terms(q)
	for i, tf := range m.tf {
		var s float64
		for _, w := range qt {
			f := float64(tf[w])
			if f == 0 {
				continue
			}
			idf := math.Log(1 + (n-float64(m.df[w])+0.5)/(float64(m.df[w])+0.5))
			s += idf * f * (m.k1 + 1) / (f + m.k1*(1-m.b+m.b*m.len[i]/m.avg))
		}
		if s > 0 {
			out = append(out, sc{m.ids[i], s})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].s > out[j].s })
	ids := make([]string, 0, k)
	for _, x := range out[:min(k, len(out))] {
		ids = append(ids, x.id)
	}
	return ids
}

// ingest loads the collection into a fresh retrieval module and returns it.
func ingest(t testing.TB, docs []doc, cfg embedded.Config) *retrieval.Module {
	ix, err := embedded.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	res, err := embeddings.NewResolver(embeddings.Config{})
	if err != nil {
		t.Fatal(err)
	}
	mod, err := retrieval.New(retrieval.Deps{Store: eventstoretest.NewMemory(), Index: ix, Embedders: res})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, d := range docs {
		text := d.Text
		if strings.TrimSpace(text) == "" {
			text = d.Title
		}
		if strings.TrimSpace(text) == "" {
			continue
		}
		if _, err := mod.Ingest(ctx, tenant.MustParse("cranfield"), retrieval.Document{DocID: d.ID, Title: d.Title, Text: text}); err != nil {
			t.Fatalf("ingest %s: %v", d.ID, err)
		}
	}
	return mod
}

// rankDocs retrieves chunks in mode and keeps each document's best chunk, in order.
func rankDocs(t testing.TB, mod *retrieval.Module, q string, k int, mode string) []string {
	ps, err := mod.RetrieveMode(context.Background(), tenant.MustParse("cranfield"), q, 50, mode)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	var out []string
	for _, p := range ps {
		if !seen[p.DocID] {
			seen[p.DocID] = true
			out = append(out, p.DocID)
		}
	}
	return out[:min(k, len(out))]
}

func TestCranfieldQuality(t *testing.T) {
	if testing.Short() {
		t.Skip("ingests 1,400 documents: skipped with -short")
	}
	docs := readJSONL[doc](t, "testdata/docs.jsonl")
	queries := readJSONL[query](t, "testdata/queries-dev.jsonl")
	qrels := readQrels(t)
	if len(docs) != 1400 || len(queries) != 113 {
		t.Fatalf("%d docs, %d queries: test data incomplete", len(docs), len(queries))
	}
	exact := ingest(t, docs, embedded.Config{})               // 1,400 docs: exact scan
	graph := ingest(t, docs, embedded.Config{ExactBelow: -1}) // forced through the HNSW graph
	bm := newBM25(docs)

	type score struct{ ndcg, recall float64 }
	// The product's three modes (hybrid is the default), the vector mode through the HNSW graph,
	// and the plain BM25 baseline this file computes itself over the offline embedder's analysis.
	systems := []string{"hybrid (default)", "vector (exact)", "lexical", "vector (HNSW)", "BM25 baseline"}
	sums := make([]score, len(systems))
	n := 0
	for _, q := range queries {
		rel := qrels[q.ID]
		if len(rel) == 0 {
			continue
		}
		n++
		runs := [][]string{rankDocs(t, exact, q.Text, 10, "hybrid"), rankDocs(t, exact, q.Text, 10, "vector"), rankDocs(t, exact, q.Text, 10, "lexical"),
			rankDocs(t, graph, q.Text, 10, "vector"), bm.rank(q.Text, 10)}
		for i, r := range runs {
			nd, rc := ndcgRecall(r, rel)
			sums[i].ndcg += nd
			sums[i].recall += rc
		}
	}
	t.Logf("Cranfield dev: %d queries with judgements, 1,400 documents", n)
	for i, s := range systems {
		t.Logf("%-28s nDCG@10 %.4f  recall@10 %.4f", s, sums[i].ndcg/float64(n), sums[i].recall/float64(n))
	}
	// Floors only: a broken or random embedder or lexical index scores near zero here.
	for i := range 3 {
		if nd := sums[i].ndcg / float64(n); nd < 0.2 {
			t.Errorf("%s nDCG@10 %.3f is below the 0.2 floor", systems[i], nd)
		}
		if rc := sums[i].recall / float64(n); rc < 0.2 {
			t.Errorf("%s recall@10 %.3f is below the 0.2 floor", systems[i], rc)
		}
	}
}
