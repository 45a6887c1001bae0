package retrieval_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/modules/retrieval"
	"github.com/crispy-enigma/crispy/modules/retrieval/events"
	"github.com/crispy-enigma/crispy/platform/ai/embeddings"
	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/bus"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/health"
	"github.com/crispy-enigma/crispy/platform/httpapi"
	"github.com/crispy-enigma/crispy/platform/httpapi/httpapitest"
	"github.com/crispy-enigma/crispy/platform/search"
	"github.com/crispy-enigma/crispy/platform/search/embedded"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// ctlEmbedder is the offline embedder with knobs: a delay per call (to stretch a rebuild so live
// writes land in the middle of it), a switch that makes it unavailable, and a dimension.
type ctlEmbedder struct {
	mu    sync.Mutex
	delay time.Duration
	down  bool
	dim   int
	calls atomic.Int64
}

func (e *ctlEmbedder) set(f func(e *ctlEmbedder)) { e.mu.Lock(); f(e); e.mu.Unlock() }

func (e *ctlEmbedder) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	e.calls.Add(1)
	e.mu.Lock()
	delay, down, dim := e.delay, e.down, e.dim
	e.mu.Unlock()
	if delay > 0 {
		time.Sleep(delay)
	}
	if down {
		return nil, fmt.Errorf("test embedder: %w", embeddings.ErrUnavailable)
	}
	if dim == 0 {
		dim = 384
	}
	return embeddings.NewHashed(embeddings.HashedConfig{Dimension: dim}).Embed(ctx, texts)
}
func (e *ctlEmbedder) Model() string { return embeddings.HashedModelID }
func (e *ctlEmbedder) Dimension() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.dim == 0 {
		return 384
	}
	return e.dim
}

// Resolve makes a ctlEmbedder its own retrieval.Embedders: every tenant's model.
func (e *ctlEmbedder) Resolve(string) (embeddings.Embedder, error) { return e, nil }

// node is one "process": a module over a store and an index, with its HTTP handler and its log.
type node struct {
	t      testing.TB
	mod    *retrieval.Module
	bus    *bus.Bus
	h      *httpapi.Server
	logs   *syncBuf
	cancel context.CancelFunc
	done   chan error
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// startNode builds a module as serve does when run is set (a bus with the module's consumers, in a
// fresh folder: its read models start from zero, as after a lost data folder or a crash), or as the
// CLI does (no bus: the request path writes the index). ts is unused (the bus finds every tenant).
func startNode(t testing.TB, store eventstore.Store, ix search.Index, emb retrieval.Embedders, run bool, ts ...tenant.ID) *node {
	t.Helper()
	if !run {
		return startNodeIn(t, "", store, ix, emb)
	}
	return startNodeIn(t, t.TempDir(), store, ix, emb)
}

// startNodeIn is startNode with the bus's checkpoints and read models under busDir ("" : no bus), so
// a node started again on it resumes from them.
func startNodeIn(t testing.TB, busDir string, store eventstore.Store, ix search.Index, emb retrieval.Embedders) *node {
	t.Helper()
	return startNodeCfg(t, busDir, store, ix, emb, retrieval.Config{CacheTTL: -1})
}

// startNodeCfg is startNodeIn with a configuration (IndexWait defaults to a minute).
func startNodeCfg(t testing.TB, busDir string, store eventstore.Store, ix search.Index, emb retrieval.Embedders, cfg retrieval.Config) *node {
	t.Helper()
	logs := &syncBuf{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if cfg.IndexWait == 0 {
		cfg.IndexWait = time.Minute
	}
	mod, err := retrieval.New(retrieval.Deps{Store: store, Index: ix, Embedders: emb, Config: cfg, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := httpapi.New(httpapi.Config{}, httpapi.Deps{Guard: httpapitest.HeaderGuard{},
		Checks: map[string]httpapi.Check{"search": mod.HealthCheck}})
	if err != nil {
		t.Fatal(err)
	}
	n := &node{t: t, mod: mod, h: srv, logs: logs, done: make(chan error, 1)}
	if busDir == "" {
		mod.Routes(srv.API)
		return n
	}
	b, err := bus.New(bus.Config{CheckpointDir: busDir + "/bus", ReadModelDir: busDir + "/readmodels",
		RetryInitial: time.Millisecond, RetryMax: 10 * time.Millisecond, MaxRetries: 2, CheckpointInterval: 20 * time.Millisecond},
		bus.Deps{Store: store, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	mod.Register(srv.API, b)
	n.bus = b
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	busDone := make(chan error, 1)
	go func() { busDone <- b.Run(ctx) }()
	go func() { err := mod.Run(ctx); n.done <- errors.Join(err, <-busDone) }()
	t.Cleanup(n.stop)
	return n
}

// stop stops the node as a clean shutdown does.
func (n *node) stop() {
	if n.cancel != nil {
		n.cancel()
		if err := <-n.done; err != nil && !errors.Is(err, context.Canceled) {
			n.t.Errorf("node stopped with %v", err)
		}
		n.cancel = nil
	}
}

// do sends one request as tenantID: the response and its retry-after.
func (n *node) do(method, path, tenantID string, body any) (resp, string) {
	r, h := serveJSON(n.h.Handler(), method, path, tenantID, body)
	return r, h.Get("Retry-After")
}

// find searches t's document docID for query: the texts of its chunks that came back.
func (n *node) find(tenantID, docID, query string) (resp, string) {
	return n.do("POST", "/search", tenantID, map[string]any{"query": query, "topK": 3, "answer": false, "filter": map[string]any{"docId": docID}})
}

// waitCaughtUp waits (generously, never asserting speed) until the module says its index is
// complete: the health check is ok.
func (n *node) waitCaughtUp(int) {
	n.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	if n.bus != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := n.bus.WaitCaughtUp(ctx); err != nil {
			n.t.Fatal(err)
		}
	}
	for {
		err := n.mod.HealthCheck(context.Background())
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("the index never caught up (health %v)\n%s", err, n.logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func docText(id string, version int) string {
	return fmt.Sprintf("Document %s version %d talks about marker%sv%d and common words like policy and handbook.", id, version, strings.ReplaceAll(id, "-", ""), version)
}

func marker(id string, version int) string {
	return fmt.Sprintf("marker%sv%d", strings.ReplaceAll(id, "-", ""), version)
}

// waitReady waits (generously) until the module serves t: its health check is ok and a search is
// not refused as catching up.
func (n *node) waitReady(tenantID string) {
	n.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		err := n.mod.HealthCheck(context.Background())
		r, _ := n.do("POST", "/search", tenantID, map[string]any{"query": "ready", "answer": false})
		if err == nil && r.status == 200 {
			return
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("the index never caught up (health %v, search %d %s)\n%s", err, r.status, r.raw, n.logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// expect checks that every document of want (docId → version, 0 = deleted) is searchable with that
// version, and that deleted ones are not; it returns how many were lost and how many resurrected.
func (n *node) expect(tenantID string, want map[string]int) (lost, resurrected []string) {
	n.t.Helper()
	for id, v := range want {
		q := "policy handbook"
		if v > 0 {
			q = marker(id, v)
		}
		r, _ := n.find(tenantID, id, q)
		if r.status != 200 {
			n.t.Fatalf("search %s: %d %s", id, r.status, r.raw)
		}
		got := allText(r)
		switch {
		case v == 0 && got != "":
			resurrected = append(resurrected, id)
		case v > 0 && !strings.Contains(got, marker(id, v)):
			lost = append(lost, id)
		}
	}
	return lost, resurrected
}

// crashCopy copies the index folder as it is on disk now, as a SIGKILL would leave it (the live
// index is abandoned without its final snapshot).
func crashCopy(t testing.TB, dir string) string {
	t.Helper()
	out := t.TempDir()
	if err := os.CopyFS(out, os.DirFS(dir)); err != nil { // the tenants' folders and their files
		t.Fatal(err)
	}
	return out
}

// TestRebuildAfterRestartKeepsLiveWrites restarts over an index that must be rebuilt and ingests and
// deletes while the rebuild runs: every acknowledged ingest must be searchable and every acknowledged
// delete must stay deleted, then and after another restart.
func TestRebuildAfterRestartKeepsLiveWrites(t *testing.T) {
	t.Parallel()
	const docs = 500
	store := eventstoretest.NewMemory()
	dir := t.TempDir()
	acme := tenant.MustParse("acme")
	emb := &ctlEmbedder{}
	ix1 := openIndex(t, dir)
	n1 := startNode(t, store, ix1, emb, false, acme)
	want := map[string]int{}
	for i := range docs {
		id := fmt.Sprintf("doc-%d", i)
		if r, _ := n1.do("POST", "/ingest", "acme", map[string]any{"docId": id, "text": docText(id, 1)}); r.status != 200 {
			t.Fatalf("ingest %s: %d %s", id, r.status, r.raw)
		}
		want[id] = 1
	}
	// The process dies before its snapshot: the next one must rebuild the tenant from the log.
	dir2 := crashCopy(t, dir)
	ix2 := openIndex(t, dir2)
	emb.set(func(e *ctlEmbedder) { e.delay = time.Millisecond })
	n2 := startNode(t, store, ix2, emb, true, acme)

	// Writers: new documents, deletions of old ones and new versions of old ones, while the rebuild runs.
	var mu sync.Mutex
	var wg sync.WaitGroup
	var liveIngests, liveDeletes atomic.Int64
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for i := range 40 {
				id := fmt.Sprintf("new-%d-%d", w, i)
				if r, _ := n2.do("POST", "/ingest", "acme", map[string]any{"docId": id, "text": docText(id, 1)}); r.status == 200 {
					mu.Lock()
					want[id] = 1
					mu.Unlock()
					liveIngests.Add(1)
				} else {
					t.Errorf("live ingest %s: %d %s", id, r.status, r.raw)
				}
				old := fmt.Sprintf("doc-%d", w*100+i) // each writer owns doc-{w*100}..doc-{w*100+99}
				if rng.IntN(2) == 0 {
					if r, _ := n2.do("DELETE", "/documents/"+old, "acme", nil); r.status == 200 {
						mu.Lock()
						want[old] = 0
						mu.Unlock()
						liveDeletes.Add(1)
					} else {
						t.Errorf("live delete %s: %d %s", old, r.status, r.raw)
					}
				} else {
					if r, _ := n2.do("POST", "/ingest", "acme", map[string]any{"docId": old, "text": docText(old, 2)}); r.status == 200 {
						mu.Lock()
						want[old] = 2
						mu.Unlock()
						liveIngests.Add(1)
					} else {
						t.Errorf("live re-ingest %s: %d %s", old, r.status, r.raw)
					}
				}
			}
		}()
	}
	wg.Wait()
	emb.set(func(e *ctlEmbedder) { e.delay = 0 })
	n2.waitCaughtUp(1)
	lost, res := n2.expect("acme", want)
	t.Logf("after the rebuild: %d of %d live ingests lost, %d of %d live deletes resurrected (%d documents)",
		len(lost), liveIngests.Load(), len(res), liveDeletes.Load(), len(want))
	if len(lost)+len(res) > 0 {
		t.Errorf("after the rebuild: lost %v; resurrected %v", lost, res)
	}

	// A clean restart keeps it so.
	n2.stop()
	if err := ix2.Close(); err != nil {
		t.Fatal(err)
	}
	ix3 := openIndex(t, dir2)
	defer ix3.Close()
	n3 := startNode(t, store, ix3, emb, true, acme)
	n3.waitReady("acme")
	lost, res = n3.expect("acme", want)
	if len(lost)+len(res) > 0 {
		t.Errorf("after another restart: lost %v; resurrected %v", lost, res)
	}
}

// gate makes the embedder wait, for texts that contain word, until the gate is opened: a rebuild that
// reaches such a document stops there, deterministically.
type gate struct {
	word string
	open chan struct{}
}

// gatedEmbedders wraps a ctlEmbedder with a gate.
type gatedEmbedders struct {
	e *ctlEmbedder
	g *gate
}

func (g gatedEmbedders) Resolve(string) (embeddings.Embedder, error) { return gatedEmbedder(g), nil }

type gatedEmbedder gatedEmbedders

func (g gatedEmbedder) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	for _, s := range texts {
		if strings.Contains(s, g.g.word) {
			select {
			case <-g.g.open:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
	}
	return g.e.Embed(ctx, texts)
}
func (g gatedEmbedder) Model() string  { return g.e.Model() }
func (g gatedEmbedder) Dimension() int { return g.e.Dimension() }

// TestSearchWhileCatchingUpIsRefusedNeverPartial restarts over an index that must be rebuilt and
// holds the rebuild of one tenant in the middle: that tenant's searches and RAG retrievals are 503
// catching_up with retry-after (never a 200 with part of its documents), its /health check says
// catching_up, and the other tenant, whose index is complete, is served.
func TestSearchWhileCatchingUpIsRefusedNeverPartial(t *testing.T) {
	t.Parallel()
	store := eventstoretest.NewMemory()
	dir := t.TempDir()
	acme, beta := tenant.MustParse("acme"), tenant.MustParse("beta")
	emb := &ctlEmbedder{}
	ix1 := openIndex(t, dir)
	n1 := startNode(t, store, ix1, emb, false, acme, beta)
	const docs = 60
	for i := range docs {
		id := fmt.Sprintf("doc-%d", i)
		text := docText(id, 1)
		if i == docs/2 {
			text += " GATEWORD"
		}
		if r, _ := n1.do("POST", "/ingest", "acme", map[string]any{"docId": id, "text": text}); r.status != 200 {
			t.Fatalf("ingest: %d %s", r.status, r.raw)
		}
	}
	if r, _ := n1.do("POST", "/ingest", "beta", map[string]any{"docId": "b", "text": docText("b", 1)}); r.status != 200 {
		t.Fatalf("ingest: %d %s", r.status, r.raw)
	}

	// Restart without the snapshots (a crash before the first flush), holding acme's rebuild.
	ix2 := openIndex(t, crashCopy(t, dir))
	defer ix2.Close()
	g := &gate{word: "GATEWORD", open: make(chan struct{})}
	n2 := startNode(t, store, ix2, gatedEmbedders{emb, g}, true, acme, beta)
	defer n2.stop() // before ix2 closes
	mod := n2.mod
	opened := false
	defer func() {
		if !opened {
			close(g.open)
		}
	}()

	acmeCtx, betaCtx := tenant.WithID(context.Background(), acme), tenant.WithID(context.Background(), beta)
	var searches, partial, refused int
	check := func() {
		id := fmt.Sprintf("doc-%d", rand.IntN(docs))
		r, retryAfter := n2.find("acme", id, marker(id, 1))
		searches++
		switch r.status {
		case 200:
			if !strings.Contains(allText(r), marker(id, 1)) {
				partial++
			}
		case 503:
			refused++
			if r.body["code"] != "catching_up" || retryAfter == "" || r.body["requestId"] == nil {
				t.Fatalf("refusal while catching up: retry-after %q, %s", retryAfter, r.raw)
			}
		default:
			t.Fatalf("search while catching up: %d %s", r.status, r.raw)
		}
		if _, err := mod.Retrieve(acmeCtx, acme, "policy handbook", 5); err != nil {
			if e, ok := apperr.As(err); !ok || e.Code != "catching_up" {
				t.Fatalf("RAG retrieval while catching up: %v", err)
			}
		}
	}
	// The replica's index projection is held at the gate: every search of every tenant is refused
	// (catching_up), never answered with part of the documents. (Per replica, not per tenant: beta
	// waits with acme.)
	deadline := time.Now().Add(20 * time.Second)
	for refused < 50 {
		check()
		if time.Now().After(deadline) {
			t.Fatalf("acme: %d of %d searches partial 200s, %d refused", partial, searches, refused)
		}
		time.Sleep(time.Millisecond)
	}
	if r, _ := n2.find("beta", "b", marker("b", 1)); r.status != 503 || r.body["code"] != "catching_up" {
		t.Fatalf("beta while the replica's index catches up: %d %s", r.status, r.raw)
	}
	st, state := health.Classify(mod.HealthCheck(acmeCtx))
	t.Logf("while acme catches up: %d searches, %d partial 200s, %d refused; acme health %s %+v", searches, partial, refused, st, state)
	if partial > 0 || refused == 0 {
		t.Fatalf("acme answered %d of %d searches with part of its documents (%d refused)", partial, searches, refused)
	}
	if st != health.CatchingUp {
		t.Fatalf("acme's search health while catching up: %s %+v", st, state)
	}
	if h, _ := n2.do("GET", "/health", "acme", nil); !strings.Contains(h.raw, "catching_up") {
		t.Fatalf("/health while acme catches up: %s", h.raw)
	}
	_ = betaCtx

	close(g.open)
	opened = true
	n2.waitReady("acme")
	for i := range docs {
		id := fmt.Sprintf("doc-%d", i)
		if r, _ := n2.find("acme", id, marker(id, 1)); r.status != 200 || !strings.Contains(allText(r), marker(id, 1)) {
			t.Fatalf("after the rebuild %s: %d %s", id, r.status, r.raw)
		}
	}
	if st, _ := health.Classify(mod.HealthCheck(acmeCtx)); st != health.OK {
		t.Fatalf("acme's search health after the rebuild: %s", st)
	}
}

// TestLostCorruptOrStaleSnapshotIsRebuilt: whatever happened to a tenant's snapshot while the
// server was down, the index it serves after a start matches the event log.
func TestLostCorruptOrStaleSnapshotIsRebuilt(t *testing.T) {
	t.Parallel()
	acme := tenant.MustParse("acme")
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, dir string, older string)
	}{
		{"deleted", func(t *testing.T, dir string, _ string) {
			if err := os.RemoveAll(filepath.Join(dir, "acme.ix")); err != nil {
				t.Fatal(err)
			}
		}},
		{"corrupt", func(t *testing.T, dir string, _ string) {
			p := filepath.Join(dir, "acme.ix", "chunks.1")
			b, _ := os.ReadFile(p)
			b[len(b)/2] ^= 0xff
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{"truncated", func(t *testing.T, dir string, _ string) {
			p := filepath.Join(dir, "acme.ix", "text.1")
			b, _ := os.ReadFile(p)
			if err := os.WriteFile(p, b[:len(b)/3], 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{"of another log", func(t *testing.T, dir string, _ string) {
			// An index folder that belongs to another (longer) log: its checkpoint is beyond this
			// log's end, and it holds a document this log never had.
			ix := openIndex(t, dir)
			vs, _ := embeddings.NewHashed(embeddings.HashedConfig{}).Embed(context.Background(), []string{docText("ghost", 1)})
			if err := ix.Upsert(context.Background(), acme, []search.Chunk{{DocID: "ghost", ChunkID: "ghost#0", Text: docText("ghost", 1), Vector: vs[0]}}); err != nil {
				t.Fatal(err)
			}
			if err := ix.SetCheckpoint(context.Background(), acme, 1<<40); err != nil {
				t.Fatal(err)
			}
			if err := ix.Close(); err != nil {
				t.Fatal(err)
			}
		}},
		{"stale", func(t *testing.T, dir string, older string) {
			// An older copy of the index folder put back (a restored backup): it predates the log's
			// last document events.
			if err := os.RemoveAll(filepath.Join(dir, "acme.ix")); err != nil {
				t.Fatal(err)
			}
			if err := os.CopyFS(filepath.Join(dir, "acme.ix"), os.DirFS(older)); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			store := eventstoretest.NewMemory()
			dir := t.TempDir()
			emb := &ctlEmbedder{}
			ix := openIndex(t, dir)
			n := startNode(t, store, ix, emb, false, acme)
			for _, id := range []string{"old", "keep"} {
				if r, _ := n.do("POST", "/ingest", "acme", map[string]any{"docId": id, "text": docText(id, 1)}); r.status != 200 {
					t.Fatalf("ingest: %d %s", r.status, r.raw)
				}
			}
			if err := ix.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
			older := filepath.Join(t.TempDir(), "acme.ix")
			if err := os.CopyFS(older, os.DirFS(filepath.Join(dir, "acme.ix"))); err != nil {
				t.Fatal(err)
			}
			if r, _ := n.do("DELETE", "/documents/old", "acme", nil); r.status != 200 {
				t.Fatalf("delete: %d %s", r.status, r.raw)
			}
			if r, _ := n.do("POST", "/ingest", "acme", map[string]any{"docId": "new", "text": docText("new", 1)}); r.status != 200 {
				t.Fatalf("ingest: %d %s", r.status, r.raw)
			}
			if err := ix.Close(); err != nil { // a clean stop: the snapshot is current
				t.Fatal(err)
			}
			tc.damage(t, dir, older)

			ix2 := openIndex(t, dir)
			defer ix2.Close()
			n2 := startNode(t, store, ix2, emb, true, acme)
			n2.waitReady("acme")
			lost, res := n2.expect("acme", map[string]int{"old": 0, "keep": 1, "new": 1, "ghost": 0})
			if len(lost)+len(res) > 0 {
				t.Fatalf("after a %s snapshot: lost %v, resurrected %v\n%s", tc.name, lost, res, n2.logs)
			}
		})
	}
}

// TestAcknowledgedIngestSurvivesCrashBeforeFlush: the process dies after acknowledging an ingest and
// before the index's next snapshot (which already holds earlier documents): after the restart the
// document is searchable.
func TestAcknowledgedIngestSurvivesCrashBeforeFlush(t *testing.T) {
	t.Parallel()
	store := eventstoretest.NewMemory()
	dir := t.TempDir()
	acme := tenant.MustParse("acme")
	emb := &ctlEmbedder{}
	ix := openIndex(t, dir)
	n := startNode(t, store, ix, emb, true, acme)
	n.waitReady("acme")
	if r, _ := n.do("POST", "/ingest", "acme", map[string]any{"docId": "first", "text": docText("first", 1)}); r.status != 200 {
		t.Fatalf("ingest: %d %s", r.status, r.raw)
	}
	if err := ix.Flush(context.Background()); err != nil { // the periodic snapshot
		t.Fatal(err)
	}
	if r, _ := n.do("POST", "/ingest", "acme", map[string]any{"docId": "second", "text": docText("second", 1)}); r.status != 200 {
		t.Fatalf("ingest: %d %s", r.status, r.raw)
	}
	// SIGKILL now: what is on disk is all the next process gets.
	crashed := crashCopy(t, dir)
	ix2 := openIndex(t, crashed)
	defer ix2.Close()
	n2 := startNode(t, store, ix2, emb, true, acme)
	n2.waitReady("acme")
	if lost, _ := n2.expect("acme", map[string]int{"first": 1, "second": 1}); len(lost) > 0 {
		t.Fatalf("lost after a crash before the snapshot: %v", lost)
	}
}

// docEvents returns the events of t's document docID.
func docEvents(t *testing.T, store eventstore.Store, tenantID, docID string) []eventstore.Event {
	t.Helper()
	st := tenant.MustStream(tenant.MustParse(tenantID), events.DocCategory, events.DocStreamKey(docID))
	evs, err := store.ReadStream(context.Background(), st, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// TestRefusedIngestRecordsNothing: an ingest the embedder or the index refuses answers 409/503 and
// appends nothing, so no later reindex can resurrect it.
func TestRefusedIngestRecordsNothing(t *testing.T) {
	t.Parallel()
	store := eventstoretest.NewMemory()
	acme := tenant.MustParse("acme")
	emb := &ctlEmbedder{}
	ix, _ := embedded.Open(embedded.Config{})
	fi := &flakyIndex{Index: ix}
	n := startNode(t, store, fi, emb, true, acme)
	n.waitReady("acme")
	if r, _ := n.do("POST", "/ingest", "acme", map[string]any{"docId": "kept", "text": docText("kept", 1)}); r.status != 200 {
		t.Fatalf("ingest: %d %s", r.status, r.raw)
	}
	refused := 0
	try := func(what, docID string, status int) {
		t.Helper()
		r, _ := n.do("POST", "/ingest", "acme", map[string]any{"docId": docID, "text": docText(docID, 1)})
		if r.status != status {
			t.Errorf("%s: %d %s, want %d", what, r.status, r.raw, status)
		}
		if evs := docEvents(t, store, "acme", docID); len(evs) != 0 {
			refused++
			t.Errorf("%s: the refused ingest appended %d events", what, len(evs))
		}
	}
	emb.set(func(e *ctlEmbedder) { e.down = true })
	try("embedder unavailable", "emb-down", 503)
	emb.set(func(e *ctlEmbedder) { e.down = false })

	fi.setDown(true)
	try("index unavailable", "index-down", 503)
	fi.setDown(false)

	emb.set(func(e *ctlEmbedder) { e.dim = 256 }) // the tenant switched models without a reindex
	try("dimension mismatch", "other-dim", 409)
	emb.set(func(e *ctlEmbedder) { e.dim = 0 })
	t.Logf("refused ingests that appended an event: %d of 3", refused)

	// A reindex rebuilds from the log: nothing refused comes back.
	if _, err := n.mod.Reindex(context.Background(), acme, nil); err != nil {
		t.Fatal(err)
	}
	if lost, res := n.expect("acme", map[string]int{"kept": 1, "emb-down": 0, "index-down": 0, "other-dim": 0}); len(lost)+len(res) > 0 {
		t.Fatalf("after a reindex: lost %v, resurrected %v", lost, res)
	}
}

// failingUpsert accepts the pre-write check and then fails the index update, as an index that goes
// down between the two would.
type failingUpsert struct {
	search.Index
	fail atomic.Bool
}

func (f *failingUpsert) Upsert(ctx context.Context, t tenant.ID, cs []search.Chunk) error {
	if f.fail.Load() {
		return search.ErrUnavailable
	}
	return f.Index.Upsert(ctx, t, cs)
}

// TestRecordedIngestTheIndexMissedReachesItAfterRestart: the append succeeds, the index update
// fails, the process restarts (its in-memory retries are gone): the document is still indexed.
func TestRecordedIngestTheIndexMissedReachesItAfterRestart(t *testing.T) {
	t.Parallel()
	store := eventstoretest.NewMemory()
	dir := t.TempDir()
	acme := tenant.MustParse("acme")
	emb := &ctlEmbedder{}
	ix := openIndex(t, dir)
	fu := &failingUpsert{Index: ix}
	n := startNode(t, store, fu, emb, false, acme)
	if r, _ := n.do("POST", "/ingest", "acme", map[string]any{"docId": "a", "text": docText("a", 1)}); r.status != 200 {
		t.Fatalf("ingest: %d %s", r.status, r.raw)
	}
	fu.fail.Store(true)
	r, _ := n.do("POST", "/ingest", "acme", map[string]any{"docId": "b", "text": docText("b", 1)})
	if r.status != 503 || !strings.Contains(r.raw, "recorded") {
		t.Fatalf("ingest with the index failing after the append: %d %s", r.status, r.raw)
	}
	if err := ix.Close(); err != nil { // a clean stop, even
		t.Fatal(err)
	}
	ix2 := openIndex(t, dir)
	defer ix2.Close()
	n2 := startNode(t, store, ix2, emb, true, acme)
	n2.waitReady("acme")
	if lost, _ := n2.expect("acme", map[string]int{"a": 1, "b": 1}); len(lost) > 0 {
		t.Fatalf("recorded but never indexed after a restart: %v", lost)
	}
}

// TestCleanRestartReplaysNothing: live writes move the checkpoint, so after a clean stop the next
// start has nothing to reapply, and once WaitStarted returns (serve waits for it before listening)
// every search is answered, completely.
func TestCleanRestartReplaysNothing(t *testing.T) {
	t.Parallel()
	store := eventstoretest.NewMemory()
	dir := t.TempDir()
	acme := tenant.MustParse("acme")
	emb := &ctlEmbedder{}
	ix := openIndex(t, dir)
	n := startNode(t, store, ix, emb, true, acme)
	n.waitReady("acme")
	want := map[string]int{}
	for i := range 20 {
		id := fmt.Sprintf("doc-%d", i)
		if r, _ := n.do("POST", "/ingest", "acme", map[string]any{"docId": id, "text": docText(id, 1)}); r.status != 200 {
			t.Fatalf("ingest: %d %s", r.status, r.raw)
		}
		want[id] = 1
	}
	if r, _ := n.do("DELETE", "/documents/doc-3", "acme", nil); r.status != 200 {
		t.Fatalf("delete: %d %s", r.status, r.raw)
	}
	want["doc-3"] = 0
	n.stop() // Run's exit records the checkpoint and writes the snapshot
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}

	ix2 := openIndex(t, dir)
	defer ix2.Close()
	calls := emb.calls.Load()
	n2 := startNode(t, store, ix2, emb, true, acme)
	n2.waitCaughtUp(1)
	if lost, res := n2.expect("acme", want); len(lost)+len(res) > 0 {
		t.Fatalf("after a clean restart: lost %v, resurrected %v", lost, res)
	}
	if strings.Contains(n2.logs.String(), "index rebuilt") {
		t.Fatalf("a clean restart reapplied documents:\n%s", n2.logs)
	}
	// The searches above embedded their queries; nothing else was embedded.
	if got := emb.calls.Load() - calls; got != int64(len(want)) {
		t.Fatalf("%d embedding calls after a clean restart, want %d (one per search)", got, len(want))
	}
}

// holdIndex holds the index update (Upsert) of one document until released, as a slow index would.
type holdIndex struct {
	*embedded.Index
	doc     string
	held    chan struct{} // closed once the held update has begun (its event is appended by then)
	release chan struct{}
}

func (h *holdIndex) Upsert(ctx context.Context, t tenant.ID, cs []search.Chunk) error {
	if len(cs) > 0 && cs[0].DocID == h.doc {
		close(h.held)
		<-h.release
	}
	return h.Index.Upsert(ctx, t, cs)
}

// ambiguousAppend records the appends of one document and then reports them failed, as an engine
// whose answer is lost (a deadline, a dropped connection) after it took the events does.
type ambiguousAppend struct {
	eventstore.Store
	doc string
}

func (a *ambiguousAppend) Append(ctx context.Context, st tenant.Stream, exp eventstore.ExpectedRevision, data ...eventstore.EventData) (eventstore.AppendResult, error) {
	r, err := a.Store.Append(ctx, st, exp, data...)
	if err == nil && strings.Contains(string(data[0].Data), `"docId":"`+a.doc+`"`) {
		return eventstore.AppendResult{}, fmt.Errorf("append: %w", context.DeadlineExceeded)
	}
	return r, err
}

// TestAppendWithALostAnswerIsNotSkipped: an ingest whose append fails without saying that nothing was
// recorded may be in the log; the checkpoint must not pass it, so the index reflects whatever the log
// holds after a crash.
func TestAppendWithALostAnswerIsNotSkipped(t *testing.T) {
	t.Parallel()
	mem := eventstoretest.NewMemory()
	store := &ambiguousAppend{Store: mem, doc: "lost-answer"}
	dir := t.TempDir()
	acme := tenant.MustParse("acme")
	emb := &ctlEmbedder{}
	ix := openIndex(t, dir)
	defer ix.Close()
	n := startNode(t, store, ix, emb, true, acme)
	n.waitReady("acme")
	if r, _ := n.do("POST", "/ingest", "acme", map[string]any{"docId": "lost-answer", "text": docText("lost-answer", 1)}); r.status < 500 {
		t.Fatalf("ingest whose append answer was lost: %d %s", r.status, r.raw)
	}
	evs := docEvents(t, mem, "acme", "lost-answer")
	if len(evs) != 1 {
		t.Fatalf("the store holds %d events of the document, want 1", len(evs))
	}
	if r, _ := n.do("POST", "/ingest", "acme", map[string]any{"docId": "after", "text": docText("after", 1)}); r.status != 200 {
		t.Fatalf("ingest: %d %s", r.status, r.raw)
	}
	// The event is in the store: the bus brings it to the index, answer lost or not.
	if err := n.bus.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if lost, _ := n.expect("acme", map[string]int{"lost-answer": 1, "after": 1}); len(lost) > 0 {
		t.Fatalf("in the log and not in the index: %v", lost)
	}
	n.stop()
	ix2 := openIndex(t, crashCopy(t, dir))
	defer ix2.Close()
	n2 := startNode(t, mem, ix2, emb, true, acme)
	defer n2.stop()
	n2.waitReady("acme")
	if lost, _ := n2.expect("acme", map[string]int{"lost-answer": 1, "after": 1}); len(lost) > 0 {
		t.Fatalf("in the log and not in the index after a restart: %v", lost)
	}
}

// TestSearchDuringAnIngestDoesNotCacheTheOldIndex: a search that reads the index while an ingest is
// between its append and its index update must not leave its answer in the cache: once the ingest is
// acknowledged, the same search finds the document.
func TestSearchDuringAnIngestDoesNotCacheTheOldIndex(t *testing.T) {
	t.Parallel()
	hold := &holdIndex{Index: openIndex(t, ""), doc: "late", held: make(chan struct{}), release: make(chan struct{})}
	e := newEnv(t, opts{index: hold}) // the cache is on (5 min)
	e.mustIngest("acme", "other", parking)
	done := make(chan resp, 1)
	go func() { done <- e.ingest("acme", "late", vacation, nil) }()
	<-hold.held // recorded, not yet in the index
	q := map[string]any{"query": "vacation days", "answer": false}
	if r := e.search("acme", q); r.status != 200 {
		t.Fatalf("search during the ingest: %d %s", r.status, r.raw)
	}
	close(hold.release)
	if r := <-done; r.status != 200 {
		t.Fatalf("ingest: %d %s", r.status, r.raw)
	}
	r := e.search("acme", q)
	if r.status != 200 || !strings.Contains(allText(r), "vacation") {
		t.Fatalf("search after the acknowledged ingest (cached %v) misses it: %s", r.body["cached"], r.raw)
	}
}

// hungCheckpoints is an index whose checkpoint writes, once hung, never answer (an Elasticsearch that
// accepts connections and stalls) until their context ends.
type hungCheckpoints struct {
	search.Index
	hung    atomic.Bool
	release chan struct{} // ends the hang (when the test has failed)
}

func (h *hungCheckpoints) SetCheckpoint(ctx context.Context, t tenant.ID, pos uint64) error {
	if h.hung.Load() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-h.release:
			return search.ErrUnavailable
		}
	}
	return h.Index.SetCheckpoint(ctx, t, pos)
}

// TestShutdownWithAHungIndexEnds: Run records the checkpoints when it stops; an index that never
// answers cannot hold the shutdown (the next start just catches up from the older checkpoint).
func TestShutdownWithAHungIndexEnds(t *testing.T) {
	t.Parallel()
	acme := tenant.MustParse("acme")
	ix := &hungCheckpoints{Index: openIndex(t, ""), release: make(chan struct{})}
	n := startNode(t, eventstoretest.NewMemory(), ix, &ctlEmbedder{}, true, acme)
	n.waitReady("acme")
	if r, _ := n.do("POST", "/ingest", "acme", map[string]any{"docId": "a", "text": docText("a", 1)}); r.status != 200 {
		t.Fatalf("ingest: %d %s", r.status, r.raw)
	}
	ix.hung.Store(true)
	stopped := make(chan struct{})
	go func() { n.stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(2 * time.Minute):
		close(ix.release)
		<-stopped
		t.Fatal("Run did not return in 2 minutes: the final checkpoint write to a hung index held the shutdown")
	}
}
