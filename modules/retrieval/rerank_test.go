package retrieval_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/crispy-enigma/crispy/modules/retrieval"
	tenancyevents "github.com/crispy-enigma/crispy/modules/tenancy/events"
	"github.com/crispy-enigma/crispy/platform/ai/rerank"
	"github.com/crispy-enigma/crispy/platform/metering"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// rerankServer is a Cohere-style /rerank endpoint that scores a document high when it contains a
// word the test chose for the request's model, low otherwise, and records every request.
type rerankServer struct {
	*httptest.Server
	mu    sync.Mutex
	reqs  []map[string]any
	delay time.Duration // answer this late
	fail  bool          // answer 500
	words map[string]string
}

func newRerankServer(t *testing.T, words map[string]string) *rerankServer {
	rs := &rerankServer{words: words}
	rs.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var req struct {
			Model     string   `json:"model"`
			Query     string   `json:"query"`
			Documents []string `json:"documents"`
			TopN      int      `json:"top_n"`
		}
		_ = json.Unmarshal(b, &req)
		var raw map[string]any
		_ = json.Unmarshal(b, &raw)
		rs.mu.Lock()
		rs.reqs = append(rs.reqs, raw)
		delay, fail := rs.delay, rs.fail
		rs.mu.Unlock()
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		if fail {
			http.Error(w, `{"message":"internal error"}`, 500)
			return
		}
		type res struct {
			Index int     `json:"index"`
			Score float64 `json:"relevance_score"`
		}
		var out []res
		for i, d := range req.Documents {
			s := 0.02
			if strings.Contains(d, rs.words[req.Model]) {
				s = 0.93
			}
			out = append(out, res{i, s})
		}
		// Cohere answers best first and only top_n of them.
		for i := range out {
			for j := i + 1; j < len(out); j++ {
				if out[j].Score > out[i].Score {
					out[i], out[j] = out[j], out[i]
				}
			}
		}
		out = out[:min(req.TopN, len(out))]
		_ = json.NewEncoder(w).Encode(map[string]any{"id": "x", "results": out, "meta": map[string]any{"billed_units": map[string]any{"search_units": 1}}})
	}))
	t.Cleanup(rs.Close)
	return rs
}

func (rs *rerankServer) requests() []map[string]any {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return append([]map[string]any(nil), rs.reqs...)
}

func (rs *rerankServer) set(delay time.Duration, fail bool) {
	rs.mu.Lock()
	rs.delay, rs.fail = delay, fail
	rs.mu.Unlock()
}

// modelsPolicy gives each tenant its models.rerank and search settings.
type modelsPolicy map[string]tenancyevents.TenantConfig

func (p modelsPolicy) Config(_ context.Context, t tenant.ID) (tenancyevents.TenantConfig, error) {
	c := p[t.String()]
	c.ID = t.String()
	return c, nil
}

func rerankResolver(t *testing.T, url string) *rerank.Resolver {
	r, err := rerank.NewResolver(rerank.Config{Cohere: rerank.HTTPConfig{BaseURL: url + "/v2", APIKey: "k"}})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

const refunds = "Refunds are issued within fourteen days of a returned parcel, to the card that paid."

// A tenant's reranker reorders the fused candidates through POST /search (issue 16 item 3): the
// sources come in its order with its scores, the answer cites only what passes its threshold,
// rerank false skips it, and each call is a usage record (purpose search.rerank) of the tenant.
func TestRerankReordersSearchThroughHTTP(t *testing.T) {
	t.Parallel()
	rs := newRerankServer(t, map[string]string{"rerank-a": "garage"})
	meter := &recMeter{}
	e := newEnv(t, opts{rerankers: rerankResolver(t, rs.URL), meter: meter,
		policy: modelsPolicy{"acme": {Models: tenancyevents.Models{Rerank: "cohere:rerank-a"}}}})
	e.mustIngest("acme", "refunds", refunds)
	e.mustIngest("acme", "park", parking)
	e.mustIngest("acme", "vac", vacation)

	// Without the reranker the refunds passage comes first (it shares the query's words).
	q := map[string]any{"query": "when are refunds issued for a parcel", "answer": false, "topK": 3}
	plain := e.search("acme", map[string]any{"query": q["query"], "answer": false, "topK": 3, "rerank": false})
	if ss := sources(plain); plain.status != 200 || len(ss) == 0 || ss[0]["docId"] != "refunds" || plain.body["reranked"] != false {
		t.Fatalf("rerank false: %s", plain.raw)
	}
	if n := len(rs.requests()); n != 0 {
		t.Fatalf("rerank false called the reranker %d times", n)
	}

	r := e.search("acme", q)
	ss := sources(r)
	if r.status != 200 || r.body["reranked"] != true || len(ss) != 3 || ss[0]["docId"] != "park" || ss[0]["score"] != 0.93 || ss[1]["score"] != 0.02 {
		t.Fatalf("reranked search: %s", r.raw)
	}
	reqs := rs.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d rerank calls, want 1", len(reqs))
	}
	docs, _ := reqs[0]["documents"].([]any)
	if reqs[0]["model"] != "rerank-a" || reqs[0]["query"] != q["query"] || reqs[0]["top_n"] != 3.0 || len(docs) != 3 {
		t.Fatalf("rerank request %v", reqs[0])
	}
	if d, _ := docs[0].(string); !strings.HasPrefix(d, "Title of refunds\n\n") {
		t.Fatalf("the candidates are sent with their titles, in the fused order: %q", docs[0])
	}

	// With an answer, only what passes the reranker's threshold (0.1 by default) is cited.
	a := e.search("acme", map[string]any{"query": "when are refunds issued for a parcel", "topK": 3})
	if ss := sources(a); a.status != 200 || len(ss) != 1 || ss[0]["docId"] != "park" {
		t.Fatalf("answer cites %s", a.raw)
	}

	calls := meter.done["acme"]
	var rr []metering.Call
	for _, c := range calls {
		if c.Purpose == metering.PurposeRerank {
			rr = append(rr, c)
		}
	}
	if len(rr) != 2 || rr[0].Operation != metering.OperationRerank || rr[0].Model != "cohere:rerank-a" || rr[0].PromptTokens <= 0 || !rr[0].Estimated || rr[0].Err != nil {
		t.Fatalf("rerank usage records %+v", rr)
	}
}

// A tenant's reranker is never used for another (issue 16 item 3): acme's searches reach the
// reranker with acme's model and acme's passages only, a tenant without models.rerank (and no
// server default) is never reranked, and "none" turns a server default off.
func TestRerankConfigIsPerTenant(t *testing.T) {
	t.Parallel()
	rs := newRerankServer(t, map[string]string{"rerank-a": "garage", "rerank-b": "sourdough"})
	e := newEnv(t, opts{rerankers: rerankResolver(t, rs.URL),
		policy: modelsPolicy{"acme": {Models: tenancyevents.Models{Rerank: "cohere:rerank-a"}}, "beta": {Models: tenancyevents.Models{Rerank: "cohere:rerank-b"}}}})
	e.mustIngest("acme", "park", parking)
	e.mustIngest("acme", "secret", secretA)
	e.mustIngest("beta", "notes", notesB)
	e.mustIngest("gamma", "vac", vacation)

	if r := e.search("gamma", map[string]any{"query": "vacation days", "answer": false}); r.status != 200 || r.body["reranked"] != false {
		t.Fatalf("gamma: %s", r.raw)
	}
	if n := len(rs.requests()); n != 0 {
		t.Fatalf("a tenant without a reranker called one %d times", n)
	}
	if r := e.search("acme", map[string]any{"query": "where do visitors park", "answer": false}); r.status != 200 || r.body["reranked"] != true {
		t.Fatalf("acme: %s", r.raw)
	}
	if r := e.search("beta", map[string]any{"query": "sourdough oven", "answer": false}); r.status != 200 || r.body["reranked"] != true {
		t.Fatalf("beta: %s", r.raw)
	}
	reqs := rs.requests()
	if len(reqs) != 2 {
		t.Fatalf("%d rerank calls, want 2", len(reqs))
	}
	a, b := fmt.Sprint(reqs[0]), fmt.Sprint(reqs[1])
	if reqs[0]["model"] != "rerank-a" || strings.Contains(a, "sourdough") || !strings.Contains(a, "garage") {
		t.Fatalf("acme's rerank request: %v", reqs[0])
	}
	if reqs[1]["model"] != "rerank-b" || strings.Contains(b, "Zephyr") || strings.Contains(b, "garage") {
		t.Fatalf("beta's rerank request: %v", reqs[1])
	}

	// A server default applies to tenants that name none; "none" turns it off for one.
	def, err := rerank.NewResolver(rerank.Config{Default: "cohere:rerank-b", Cohere: rerank.HTTPConfig{BaseURL: rs.URL + "/v2"}})
	if err != nil {
		t.Fatal(err)
	}
	e2 := newEnv(t, opts{rerankers: def, policy: modelsPolicy{"off": {Models: tenancyevents.Models{Rerank: "none"}}}})
	e2.mustIngest("off", "vac", vacation)
	e2.mustIngest("dflt", "vac", vacation)
	if r := e2.search("off", map[string]any{"query": "vacation days", "answer": false}); r.body["reranked"] != false {
		t.Fatalf("models.rerank none: %s", r.raw)
	}
	if r := e2.search("dflt", map[string]any{"query": "vacation days", "answer": false}); r.body["reranked"] != true {
		t.Fatalf("server default: %s", r.raw)
	}
}

// A reranker that times out or fails leaves the fused order (issue 16 item 3): the search answers
// 200 in the order it has without a reranker, the fallback is counted by reason, and the answer is
// not cached, so the next search is reranked once the reranker is back.
func TestRerankFallsBackToTheFusedOrder(t *testing.T) {
	t.Parallel()
	rs := newRerankServer(t, map[string]string{"rerank-a": "garage"})
	set := metrics.NewSet()
	e := newEnv(t, opts{rerankers: rerankResolver(t, rs.URL), metrics: set, config: retrieval.Config{RerankTimeout: 100 * time.Millisecond},
		policy: modelsPolicy{"acme": {Models: tenancyevents.Models{Rerank: "cohere:rerank-a"}}}})
	e.mustIngest("acme", "refunds", refunds)
	e.mustIngest("acme", "park", parking)
	q := map[string]any{"query": "when are refunds issued for a parcel", "answer": false, "topK": 2}
	want := sources(e.search("acme", map[string]any{"query": q["query"], "answer": false, "topK": 2, "rerank": false}))

	counter := func(reason string) uint64 {
		return set.GetOrCreateCounter(fmt.Sprintf(`crispy_retrieval_rerank_fallbacks_total{tenant="acme",reason=%q}`, reason)).Get()
	}
	for _, c := range []struct {
		reason string
		delay  time.Duration
		fail   bool
	}{{"timeout", 2 * time.Second, false}, {"error", 0, true}} {
		rs.set(c.delay, c.fail)
		r := e.search("acme", q)
		ss := sources(r)
		if r.status != 200 || r.body["reranked"] != false || len(ss) != len(want) || ss[0]["docId"] != want[0]["docId"] || ss[0]["score"] != want[0]["score"] {
			t.Fatalf("%s: %s, want the fused order %v", c.reason, r.raw, want)
		}
		if n := counter(c.reason); n != 1 {
			t.Fatalf("fallbacks{reason=%s} = %d, want 1", c.reason, n)
		}
	}
	rs.set(0, false)
	r := e.search("acme", q)
	if r.body["reranked"] != true || r.body["cached"] != false || sources(r)[0]["docId"] != "park" {
		t.Fatalf("after the reranker came back: %s", r.raw)
	}
}

// The tenant's token budget refusing the rerank call refuses the search (429 budget_exceeded), as
// for the rewrite, without calling the reranker; rerank false still searches.
func TestRerankIsBudgeted(t *testing.T) {
	t.Parallel()
	rs := newRerankServer(t, map[string]string{"rerank-a": "garage"})
	meter := &recMeter{refuse: true}
	e := newEnv(t, opts{rerankers: rerankResolver(t, rs.URL), meter: meter,
		policy: modelsPolicy{"acme": {Models: tenancyevents.Models{Rerank: "cohere:rerank-a"}}}})
	e.mustIngest("acme", "park", parking) // the offline embedder is not metered: the ingest passes
	if r := e.search("acme", map[string]any{"query": "where do visitors park", "answer": false}); r.status != 429 || r.body["code"] != "budget_exceeded" {
		t.Fatalf("search over budget: %d %s", r.status, r.raw)
	}
	if n := len(rs.requests()); n != 0 {
		t.Fatalf("the reranker was called %d times over budget", n)
	}
	if r := e.search("acme", map[string]any{"query": "where do visitors park", "answer": false, "rerank": false}); r.status != 200 || len(sources(r)) != 1 {
		t.Fatalf("rerank false over budget: %d %s", r.status, r.raw)
	}
}
