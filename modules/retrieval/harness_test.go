package retrieval_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/crispy-enigma/crispy/modules/retrieval"
	"github.com/crispy-enigma/crispy/platform/ai/embeddings"
	"github.com/crispy-enigma/crispy/platform/bus"
	"github.com/crispy-enigma/crispy/platform/bus/bustest"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/httpapi"
	"github.com/crispy-enigma/crispy/platform/httpapi/httpapitest"
	"github.com/crispy-enigma/crispy/platform/sealing"
	"github.com/crispy-enigma/crispy/platform/search"
	"github.com/crispy-enigma/crispy/platform/search/embedded"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// flakyIndex wraps an index and fails every call while down is set, as an unreachable cluster does.
type flakyIndex struct {
	search.Index
	mu   sync.Mutex
	down bool
}

func (f *flakyIndex) setDown(v bool) { f.mu.Lock(); f.down = v; f.mu.Unlock() }
func (f *flakyIndex) err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return search.ErrUnavailable
	}
	return nil
}
func (f *flakyIndex) Upsert(ctx context.Context, t tenant.ID, cs []search.Chunk) error {
	if err := f.err(); err != nil {
		return err
	}
	return f.Index.Upsert(ctx, t, cs)
}
func (f *flakyIndex) DeleteDoc(ctx context.Context, t tenant.ID, id string) error {
	if err := f.err(); err != nil {
		return err
	}
	return f.Index.DeleteDoc(ctx, t, id)
}
func (f *flakyIndex) Search(ctx context.Context, t tenant.ID, q search.Query) ([]search.Hit, error) {
	if err := f.err(); err != nil {
		return nil, err
	}
	return f.Index.Search(ctx, t, q)
}

type env struct {
	t     testing.TB
	h     http.Handler
	mod   *retrieval.Module
	store eventstore.Store
	index *flakyIndex
	bus   *bus.Bus
}

type opts struct {
	completer retrieval.Completer
	config    retrieval.Config
	store     eventstore.Store
	index     search.Index
	shared    bool // the index is shared (Elasticsearch): a processor writes it
	sealer    *sealing.Sealer
	busDir    string // the bus's checkpoints and read models (default: a temporary folder)
	policy    retrieval.TenantPolicy
	rerankers retrieval.Rerankers
	meter     retrieval.Meter
	metrics   *metrics.Set
	embedders retrieval.Embedders // default: the offline embedder
}

func newEnv(t testing.TB, o opts) *env {
	t.Helper()
	store := o.store
	if store == nil {
		store = eventstoretest.NewMemory()
	}
	ix := o.index
	if ix == nil {
		var err error
		ix, err = embedded.Open(embedded.Config{})
		if err != nil {
			t.Fatal(err)
		}
	}
	fi := &flakyIndex{Index: ix}
	var res retrieval.Embedders = o.embedders
	if res == nil {
		var err error
		if res, err = embeddings.NewResolver(embeddings.Config{}); err != nil {
			t.Fatal(err)
		}
	}
	mod, err := retrieval.New(retrieval.Deps{Config: o.config, Store: store, Index: fi, Embedders: res, Completer: o.completer, SharedIndex: o.shared,
		Sealer: o.sealer, Policy: o.policy, Rerankers: o.rerankers, Meter: o.meter, Metrics: o.metrics})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := httpapi.New(httpapi.Config{BodyLimits: mod.BodyLimits()}, httpapi.Deps{Guard: httpapitest.HeaderGuard{}})
	if err != nil {
		t.Fatal(err)
	}
	if o.busDir == "" {
		o.busDir = t.TempDir()
	}
	b := bustest.NewBusIn(t, store, o.busDir)
	mod.Register(srv.API, b)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mod.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	bustest.Start(t, b)
	for i := 0; mod.HealthCheck(context.Background()) != nil; i++ { // the start-up repair
		if i > 10000 {
			t.Fatalf("the module never got ready: %v", mod.HealthCheck(context.Background()))
		}
		time.Sleep(time.Millisecond)
	}
	return &env{t: t, h: srv.Handler(), mod: mod, store: store, index: fi, bus: b}
}

type resp struct {
	status int
	body   map[string]any
	raw    string
}

func (e *env) do(method, path, tenantID string, body any) resp {
	r, _ := serveJSON(e.h, method, path, tenantID, body)
	return r
}

// serveJSON sends h one request with body as JSON, as tenantID (none when empty): the response
// and its headers.
func serveJSON(h http.Handler, method, path, tenantID string, body any) (resp, http.Header) {
	var b []byte
	if body != nil {
		b, _ = json.Marshal(body)
	}
	req := httptest.NewRequest(method, path, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	if tenantID != "" {
		req.Header.Set("x-tenant-id", tenantID)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	r := resp{status: rec.Code, raw: rec.Body.String()}
	_ = json.Unmarshal(rec.Body.Bytes(), &r.body)
	return r, rec.Header()
}

// openIndex opens an embedded index persisted in dir.
func openIndex(t testing.TB, dir string) *embedded.Index {
	t.Helper()
	ix, err := embedded.Open(embedded.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	return ix
}

func (e *env) ingest(tenantID, docID, text string, extra map[string]any) resp {
	e.t.Helper()
	b := map[string]any{"docId": docID, "text": text, "title": "Title of " + docID}
	for k, v := range extra {
		b[k] = v
	}
	r := e.do("POST", "/ingest", tenantID, b)
	return r
}

func (e *env) mustIngest(tenantID, docID, text string) {
	e.t.Helper()
	if r := e.ingest(tenantID, docID, text, nil); r.status != 200 {
		e.t.Fatalf("ingest %s/%s: %d %s", tenantID, docID, r.status, r.raw)
	}
}

func (e *env) search(tenantID string, body map[string]any) resp {
	e.t.Helper()
	return e.do("POST", "/search", tenantID, body)
}

func sources(r resp) []map[string]any {
	ss, _ := r.body["sources"].([]any)
	out := make([]map[string]any, len(ss))
	for i, s := range ss {
		out[i], _ = s.(map[string]any)
	}
	return out
}

// allText joins the texts of a search's sources.
func allText(r resp) string {
	var b strings.Builder
	for _, s := range sources(r) {
		b.WriteString(s["text"].(string))
		b.WriteString(" | ")
	}
	return b.String()
}

// CheckWrite fails while the index is down, as a ping of an unreachable cluster does.
func (f *flakyIndex) CheckWrite(ctx context.Context, t tenant.ID, dim int) error {
	if err := f.err(); err != nil {
		return err
	}
	return f.Index.CheckWrite(ctx, t, dim)
}
