// Package retrieval is ingestion, chunking, embeddings, search, RAG answers and the search cache
// (SPEC §2 /ingest, /documents/{docId}, /search, /metrics/search-cache; §4).
//
// Documents are events in t-{tenant}.doc-{key} streams (events package); the vector index is a
// projection of them with a checkpoint per tenant (its place in the log). The module updates the
// index right after each append (and records nothing the embedder or the index refuses); Run catches
// every tenant up from its checkpoint at start (a missing, corrupt or stale snapshot included),
// refusing the tenant's searches as catching_up until its index is complete, and retries documents
// the index missed; Reindex (crispy reindex) rebuilds a tenant from the beginning of its log. Writes
// during a catch-up or a rebuild are kept (internal/app/catchup.go says how).
package retrieval

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/danielgtaylor/huma/v2"

	"github.com/crispy-enigma/crispy/modules/retrieval/internal/app"
	retrievalhttp "github.com/crispy-enigma/crispy/modules/retrieval/internal/httpapi"
	"github.com/crispy-enigma/crispy/platform/bus"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/search"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// Config configures the module.
type Config struct {
	// CacheTTL is how long a search answer is served from the cache (default 5 min; negative disables
	// the cache).
	CacheTTL time.Duration
	// CacheMaxEntries bounds the cache (default 10,000 across tenants).
	CacheMaxEntries int
	// RewriteTimeout bounds the model's query rewrite (default 1.5 s; negative disables rewriting).
	RewriteTimeout time.Duration
	// AnswerTimeout bounds the model's answer (default 60 s); on timeout the answer is extractive.
	AnswerTimeout time.Duration
	// RetryInterval is how often documents the index missed, and catch-ups that failed, are retried
	// (default 30 s).
	RetryInterval time.Duration
	// FlushInterval is how often an index that persists in the background (embedded) writes its
	// snapshots (default 10 s).
	FlushInterval time.Duration
	// MaxTextChars is the largest document (default 500,000 characters, SPEC §2).
	MaxTextChars int
}

func (c *Config) defaults() {
	if c.CacheTTL == 0 {
		c.CacheTTL = 5 * time.Minute
	}
	if c.CacheMaxEntries == 0 {
		c.CacheMaxEntries = 10_000
	}
	if c.RewriteTimeout == 0 {
		c.RewriteTimeout = 1500 * time.Millisecond
	}
	if c.AnswerTimeout == 0 {
		c.AnswerTimeout = 60 * time.Second
	}
	if c.RetryInterval == 0 {
		c.RetryInterval = 30 * time.Second
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = 10 * time.Second
	}
	if c.MaxTextChars == 0 {
		c.MaxTextChars = 500_000
	}
}

// Validate checks the configuration.
func (c Config) Validate() error {
	if c.AnswerTimeout < 0 || c.RetryInterval < 0 || c.FlushInterval < 0 || c.MaxTextChars < 0 || c.CacheMaxEntries < 0 {
		return fmt.Errorf("retrieval: negative limits in %+v", c)
	}
	return nil
}

// Deps are the module's collaborators.
type Deps struct {
	Config    Config
	Store     eventstore.Store
	Index     search.Index // embedded.Open or elastic.New
	Embedders Embedders    // *embeddings.Resolver
	Policy    TenantPolicy // nil: every tenant uses the default embeddings model
	Completer Completer    // nil: offline (extractive answers, no rewrite)
	// Tenants lists every tenant, so Run can catch their indexes up with the log at start; until it
	// has, searches answer catching_up. Nil: no catch-up at start (tests).
	Tenants func(ctx context.Context) ([]tenant.ID, error)
	Log     *slog.Logger
	Metrics *metrics.Set // nil-safe
	Now     func() time.Time
}

// Module is the retrieval module.
type Module struct {
	cfg     Config
	svc     *app.Service
	index   search.Index
	tenants func(ctx context.Context) ([]tenant.ID, error)
	log     *slog.Logger
}

// New builds the module.
func New(d Deps) (*Module, error) {
	d.Config.defaults()
	if err := d.Config.Validate(); err != nil {
		return nil, err
	}
	if d.Store == nil || d.Index == nil || d.Embedders == nil {
		return nil, errors.New("retrieval: Store, Index and Embedders are required")
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	log := d.Log.With("module", "retrieval")
	svc := &app.Service{Store: d.Store, Index: d.Index, Embedders: d.Embedders, Cache: app.NewCache(d.Config.CacheTTL, d.Config.CacheMaxEntries, d.Now),
		Stats: app.NewStats(), Metrics: d.Metrics, Log: log, Now: d.Now, RewriteTimeout: d.Config.RewriteTimeout,
		AnswerTimeout: d.Config.AnswerTimeout, MaxTextChars: d.Config.MaxTextChars}
	if d.Policy != nil {
		svc.Policy = policyAdapter{d.Policy}
	}
	if d.Completer != nil {
		svc.Completer = completerAdapter{d.Completer}
	}
	if d.Tenants != nil {
		svc.WaitForStartUp()
	}
	return &Module{cfg: d.Config, svc: svc, index: d.Index, tenants: d.Tenants, log: log}, nil
}

// Register mounts POST /ingest, DELETE /documents/{docId}, POST /search and GET /metrics/search-cache.
// The module registers no bus handlers: it updates its index itself after each append.
func (m *Module) Register(api huma.API, _ bus.Registry) {
	retrievalhttp.Register(api, m.svc)
}

// finalCheckpointTimeout bounds the checkpoint writes of Run's exit, for every tenant together.
const finalCheckpointTimeout = 5 * time.Second

// Run catches every tenant's index up with the event log (when Deps.Tenants is set), then retries
// what failed and writes the index's checkpoints and snapshots until ctx ends.
func (m *Module) Run(ctx context.Context) error {
	if m.tenants != nil {
		ts, err := m.tenants(ctx)
		if err != nil {
			return fmt.Errorf("retrieval: list tenants: %w", err)
		}
		m.svc.CatchUpAll(ctx, ts)
	}
	retry := time.NewTicker(m.cfg.RetryInterval)
	defer retry.Stop()
	flush := time.NewTicker(m.cfg.FlushInterval)
	defer flush.Stop()
	fl, canFlush := m.index.(search.Flusher)
	for {
		select {
		case <-ctx.Done():
			// Bounded: an index that accepts and never answers (a stalled Elasticsearch) must not
			// hold the shutdown; a checkpoint not written only means a longer catch-up next start.
			pctx, cancel := context.WithTimeout(context.Background(), finalCheckpointTimeout)
			m.svc.PushCheckpoints(pctx)
			cancel()
			if canFlush {
				if err := fl.Flush(context.Background()); err != nil {
					m.log.Error("retrieval: final index snapshot failed", "error", err)
				}
			}
			return nil
		case <-retry.C:
			m.svc.Retry(ctx)
		case <-flush.C:
			// Checkpoints first: a snapshot holds content at least as new as the checkpoint it carries.
			m.svc.PushCheckpoints(ctx)
			if canFlush {
				if err := fl.Flush(ctx); err != nil {
					m.log.Error("retrieval: index snapshot failed", "error", err)
				}
			}
		}
	}
}

// WaitStarted returns once Run's start-up catch-up knows what every tenant has to catch up: tenants
// whose index is complete are served from then on, the others answer catching_up until theirs is.
// serve waits for it before it listens, so a quiet start answers at once. It returns at once when
// Deps.Tenants is nil; it fails when ctx ends first.
func (m *Module) WaitStarted(ctx context.Context) error { return m.svc.WaitScanned(ctx) }

// Document is what Ingest takes. Its fields match tooling.Document, so cmd/crispy converts one into
// the other with a plain conversion.
type Document struct {
	DocID     string
	Text      string
	Title     string
	Source    string
	URL       string
	Metadata  map[string]any
	ChunkSize int // 0: 1000
	UserID    string
	RequestID string
}

// IngestResult reports an ingestion (fields match tooling.IngestResult).
type IngestResult struct {
	DocID          string
	Chunks         int
	EmbeddingModel string
}

// Ingest ingests one document for t (the tooling module's Host.Ingest, and the CLI). Errors are
// *apperr.Error.
func (m *Module) Ingest(ctx context.Context, t tenant.ID, doc Document) (IngestResult, error) {
	res, err := m.svc.Ingest(ctx, app.Ingest{Tenant: t, DocID: doc.DocID, Text: doc.Text, Title: doc.Title, Source: doc.Source,
		URL: doc.URL, Metadata: doc.Metadata, MaxChunkSize: doc.ChunkSize})
	return IngestResult{DocID: res.DocID, Chunks: res.Chunks, EmbeddingModel: res.EmbeddingModel}, err
}

// Embed embeds texts with t's embeddings model and returns the model id (tooling's Host.Embed).
func (m *Module) Embed(ctx context.Context, t tenant.ID, texts []string) ([][]float32, string, error) {
	return m.svc.Embed(ctx, t, texts)
}

// Passage is a retrieved chunk, for chat RAG (numbered citations in the model's context).
type Passage struct {
	DocID   string
	ChunkID string
	Title   string
	Source  string
	URL     string
	Text    string
	Score   float64
}

// Retrieve returns t's k best passages for query (k <= 0: 5; at most 50).
func (m *Module) Retrieve(ctx context.Context, t tenant.ID, query string, k int) ([]Passage, error) {
	srcs, err := m.svc.Retrieve(ctx, t, query, k)
	if err != nil {
		return nil, err
	}
	out := make([]Passage, len(srcs))
	for i, s := range srcs {
		out[i] = Passage{DocID: s.DocID, ChunkID: s.ChunkID, Title: s.Title, Source: s.Source, URL: s.URL, Text: s.Text, Score: s.Score}
	}
	return out, nil
}

// ReindexResult reports a reindex.
type ReindexResult struct {
	Documents int
	Chunks    int
}

// Reindex rebuilds t's index from its document events (crispy reindex --tenant T); t's searches
// answer catching_up meanwhile, and writes during it are kept. progress may be nil.
func (m *Module) Reindex(ctx context.Context, t tenant.ID, progress func(done, total int, docID string)) (ReindexResult, error) {
	r, err := m.svc.Reindex(ctx, t, progress)
	return ReindexResult(r), err
}

// FilesResult reports IngestPaths.
type FilesResult struct {
	Ingested int
	Skipped  int              // unchanged since their last ingest (same content hash)
	Failed   map[string]error // by path
}

// IngestPaths ingests .txt/.md/.markdown files and folders for t (crispy ingest PATH… --tenant T). The
// docId is the path as given (cleaned, '/'-separated); files whose content hash matches their
// document's last ingest are skipped, so an interrupted run resumes. progress is called after every
// file (done of total).
func (m *Module) IngestPaths(ctx context.Context, t tenant.ID, paths []string, progress func(done, total int, path string)) (FilesResult, error) {
	r, err := m.svc.IngestPaths(ctx, t, paths, progress)
	return FilesResult(r), err
}

type policyAdapter struct{ p TenantPolicy }

func (a policyAdapter) EmbeddingsModel(ctx context.Context, t tenant.ID) (string, error) {
	c, err := a.p.Config(ctx, t)
	if err != nil {
		return "", err
	}
	return c.Models.Embeddings, nil
}

type completerAdapter struct{ c Completer }

func (a completerAdapter) Complete(ctx context.Context, t tenant.ID, msgs []app.Message, maxTokens int) (string, string, error) {
	req := CompletionRequest{MaxTokens: maxTokens, Messages: make([]Message, len(msgs))}
	for i, m := range msgs {
		req.Messages[i] = Message{Role: m.Role, Content: m.Content}
	}
	r, err := a.c.Complete(ctx, t, req)
	return r.Text, r.Model, err
}

// CacheStats are a tenant's search cache numbers for a window (the numbers of GET
// /metrics/search-cache), for the observability module's SLIs. They live in memory and restart from
// zero with the process.
type CacheStats struct {
	Hits, Misses, TotalChecks int64
	HitRate, AvgLatencyMs     float64
}

// CacheStats sums t's search cache checks between since and until.
func (m *Module) CacheStats(_ context.Context, t tenant.ID, since, until time.Time) (CacheStats, error) {
	return CacheStats(m.svc.Stats.Window(t, since, until)), nil
}

// HealthCheck reports the search index for GET /health's "search" backend: down when it does not
// answer (indexes that can be pinged: Elasticsearch), catching_up with progress (health.State) while
// the tenant in ctx (every tenant, when ctx has none) catches up with the event log, else nil.
func (m *Module) HealthCheck(ctx context.Context) error {
	if p, ok := m.index.(interface{ Ping(context.Context) error }); ok {
		if err := p.Ping(ctx); err != nil {
			return err
		}
	}
	return m.svc.Health(ctx)
}
