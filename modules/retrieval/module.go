// Package retrieval is ingestion, chunking, embeddings, search, RAG answers and the search cache
// (SPEC §2 /ingest, /documents/{docId}, /search, /metrics/search-cache; §4).
//
// Documents are events in t-{tenant}.doc-{key} streams (events package). The search index consumes
// them from the bus (Register): the embedded index, each replica's own, through a projection whose
// state (document revisions and its position) lives beside the index's own snapshot and
// checkpoint; a shared Elasticsearch through a processor (once per deployment). Both are idempotent
// by document revision, and wait out an index or embedder that is down instead of dropping the
// write (internal/app/consume.go says how). An ingest records its event and waits, bounded, until
// its replica's index has applied it; every replica drops its search cache on every document event.
// The search cache statistics are per-minute events and a checkpointed projection of them. Without
// Register (the CLI's ingest and reindex) the module writes the index in the request path; Reindex
// (crispy reindex) rebuilds a tenant from the beginning of its log.
package retrieval

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/danielgtaylor/huma/v2"

	bolt "go.etcd.io/bbolt"

	"github.com/crispy-enigma/crispy/modules/retrieval/events"
	"github.com/crispy-enigma/crispy/modules/retrieval/internal/app"
	retrievalhttp "github.com/crispy-enigma/crispy/modules/retrieval/internal/httpapi"
	"github.com/crispy-enigma/crispy/modules/retrieval/internal/sealedindex"
	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/bus"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/health"
	"github.com/crispy-enigma/crispy/platform/metering"
	"github.com/crispy-enigma/crispy/platform/readmodel"
	"github.com/crispy-enigma/crispy/platform/sealing"
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
	// RerankTimeout bounds a call to the tenant's reranker (default 2 s); past it, or when the
	// reranker fails, the search keeps the fused order (logged, counted).
	RerankTimeout time.Duration
	// AnswerTimeout bounds the model's answer (default 60 s); on timeout the answer is extractive.
	AnswerTimeout time.Duration
	// IndexWait bounds how long an ingest or delete waits for this replica's index to apply it
	// (default 10 s); past it the answer is 503 saying the change was recorded (it is applied when
	// the index is back, without a reindex).
	IndexWait time.Duration
	// StatsInterval is how often the search cache statistics of this replica are recorded as
	// events (default 1 min): a crash loses at most this much of them.
	StatsInterval time.Duration
	// FlushInterval is how often an index that persists in the background (embedded) writes its
	// snapshots (default 10 s).
	FlushInterval time.Duration
	// MaxTextChars is the largest document (default 500,000 characters, SPEC §2).
	MaxTextChars int
	// MaxUploadBytes bounds a POST /documents request (default 20 MiB). The HTTP server must let
	// that route's body through (BodyLimits); the upload is streamed to a temporary file.
	MaxUploadBytes int64
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
	if c.RerankTimeout == 0 {
		c.RerankTimeout = 2 * time.Second
	}
	if c.IndexWait == 0 {
		c.IndexWait = 10 * time.Second
	}
	if c.StatsInterval == 0 {
		c.StatsInterval = time.Minute
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = 10 * time.Second
	}
	if c.MaxTextChars == 0 {
		c.MaxTextChars = 500_000
	}
	if c.MaxUploadBytes == 0 {
		c.MaxUploadBytes = retrievalhttp.DefaultMaxUploadBytes
	}
}

// Validate checks the configuration.
func (c Config) Validate() error {
	if c.AnswerTimeout < 0 || c.RerankTimeout < 0 || c.IndexWait < 0 || c.StatsInterval < 0 || c.FlushInterval < 0 || c.MaxTextChars < 0 || c.CacheMaxEntries < 0 || c.MaxUploadBytes < 0 {
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
	Meter     Meter        // nil: embeddings are not metered (CLI)
	// Rerankers resolves the tenants' models.rerank (*rerank.Resolver, whose default is the
	// server's reranker); nil: searches are never reranked.
	Rerankers Rerankers
	// Sealer, when set, seals each ingest's text under a data key of its own (issue 12 §4): in the
	// log (Store must then be the sealing store with SealingPolicy among its policies) and in the
	// index; deleting a document destroys its keys. Nil: documents are kept in plain text.
	Sealer *sealing.Sealer
	// SharedIndex says that Index is shared by every replica (Elasticsearch): a processor writes it
	// once per deployment. Unset: Index is this replica's own (embedded), a projection.
	SharedIndex bool
	Log         *slog.Logger
	Metrics     *metrics.Set // nil-safe
	Now         func() time.Time
}

// Module is the retrieval module.
type Module struct {
	cfg    Config
	svc    *app.Service
	index  search.Index
	store  eventstore.Store
	shared bool
	log    *slog.Logger

	indexProj *bus.Projection // the embedded index's projection (Register)
	docsProj  *bus.Projection // the shared index's per-replica projection (Register)
	statsProj *bus.Projection
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
		Stats: app.NewStats(), Metrics: d.Metrics, Log: log, Now: d.Now, RewriteTimeout: d.Config.RewriteTimeout, RerankTimeout: d.Config.RerankTimeout,
		AnswerTimeout: d.Config.AnswerTimeout, MaxTextChars: d.Config.MaxTextChars, MaxUploadBytes: d.Config.MaxUploadBytes, IndexWait: d.Config.IndexWait}
	if d.Policy != nil {
		svc.Policy = policyAdapter{d.Policy}
	}
	if d.Completer != nil {
		svc.Completer = completerAdapter{d.Completer}
	}
	if d.Meter != nil {
		svc.Meter = d.Meter
	}
	if d.Rerankers != nil {
		svc.Rerankers = d.Rerankers
	}
	if d.Sealer != nil {
		svc.Sealed = sealedindex.New(d.Sealer, func(err error) bool { return errors.Is(err, sealing.ErrErased) })
		svc.Keys = d.Sealer.Keys()
	}
	return &Module{cfg: d.Config, svc: svc, index: d.Index, store: d.Store, shared: d.SharedIndex, log: log}, nil
}

// Durable names of the module's consumers: never rename them (a projection's name is its file, a
// processor's its consumer group).
const (
	indexProjection = "retrieval.index"        // embedded index: document revisions and position
	docsProjection  = "retrieval.documents"    // shared index: drops this replica's search cache
	indexProcessor  = "retrieval.index-writer" // shared index: writes it once per deployment
	keysProcessor   = "retrieval.key-shredder" // destroys a deleted document's keys (sealing on)
	statsProjection = "retrieval.search-stats" // search cache statistics
)

// Register mounts POST /ingest, DELETE /documents/{docId}, POST /search and GET /metrics/search-cache,
// and the module's consumers: the index's (a projection for the embedded index, a processor and a
// cache projection for a shared one) and the search statistics' projection. From then on the
// request path records events and the index follows the bus.
func (m *Module) Register(api huma.API, c bus.Consumers) {
	events.Register(c.Codec().Add)
	svc := m.svc
	if m.shared {
		p := c.Projection(docsProjection, bus.ProjectionOptions{What: "search index", Version: 1})
		bus.Apply(p, func(_ context.Context, _ *readmodel.Tx, env bus.Envelope, ev events.DocumentIndexed) error {
			svc.SeenIndexed(env.Tenant, ev)
			return nil
		})
		q := c.Processor(indexProcessor)
		bus.Handle(q, func(ctx context.Context, env bus.Envelope, ev events.DocumentIngested) error {
			if erased(env, ev) {
				return nil // its deletion, which follows, removes whatever the index has of it
			}
			return svc.WriteShared(ctx, docEvent(env, ev.DocID, &ev))
		})
		bus.Handle(q, func(ctx context.Context, env bus.Envelope, ev events.DocumentDeleted) error {
			return svc.WriteShared(ctx, docEvent(env, ev.DocID, nil))
		})
		m.docsProj = p
	} else {
		// Its own cursor: re-embedding every document, it would pace every other read model
		// through a first start or a rebuild (and through a burst of ingests).
		p := c.Projection(indexProjection, bus.ProjectionOptions{What: "search index", Version: 1, OwnCursor: true})
		bus.Apply(p, func(ctx context.Context, tx *readmodel.Tx, env bus.Envelope, ev events.DocumentIngested) error {
			if erased(env, ev) {
				svc.SkipErased(env.Tenant, env.Position)
				return nil // as above
			}
			slot, _ := bus.Prepared[*app.BatchSlot](ctx)
			return svc.ApplyToIndex(ctx, tx.Bucket(), docEvent(env, ev.DocID, &ev), slot)
		})
		bus.Apply(p, func(ctx context.Context, tx *readmodel.Tx, env bus.Envelope, ev events.DocumentDeleted) error {
			return svc.ApplyToIndex(ctx, tx.Bucket(), docEvent(env, ev.DocID, nil), nil)
		})
		// Each ingest learns its batch's others: the handler writes several to the index at once
		// (consume.go).
		bus.Prepare(p, func(_ context.Context, envs []bus.Envelope, evs []events.DocumentIngested) ([]any, error) {
			des := make([]app.DocEvent, len(evs))
			for i := range evs {
				des[i] = docEvent(envs[i], evs[i].DocID, &evs[i])
				if erased(envs[i], evs[i]) {
					des[i].Ingested = nil // skipped: never written with the others
				}
			}
			slots := app.PrepareBatch(des)
			out := make([]any, len(slots))
			for i, sl := range slots {
				out[i] = sl
			}
			return out, nil
		})
		m.indexProj = p
		svc.RepairNeeded = true
	}
	if svc.Keys != nil {
		k := c.Processor(keysProcessor)
		bus.Handle(k, func(ctx context.Context, env bus.Envelope, ev events.DocumentDeleted) error {
			if err := svc.DestroyKeys(ctx, env.Tenant, ev.Keys); err != nil {
				// Waited out, never passed: a key left alive is content left readable.
				return apperr.Wrap(err, apperr.KindUnavailable, "retrieval.keysUnavailable", "the key store is unavailable")
			}
			return nil
		})
	}
	ready := m.docsProj
	if ready == nil {
		ready = m.indexProj
	}
	svc.Ready = ready.Ready
	svc.Consumed = true

	sp := c.Projection(statsProjection, bus.ProjectionOptions{What: "search cache statistics", Version: 1})
	bus.Apply(sp, func(_ context.Context, tx *readmodel.Tx, env bus.Envelope, ev events.SearchStatsRecorded) error {
		return app.RecordStats(tx.Bucket(), env.Tenant, ev)
	})
	m.statsProj = sp
	svc.Stats.Durable = func(t tenant.ID, from, to int64) (hits, misses int64, lat float64, at eventstore.Position, err error) {
		err = sp.View(context.Background(), func(tx *readmodel.Tx) error {
			hits, misses, lat = app.SumStats(tx.Bucket(), t, from, to)
			at = tx.Position()
			return nil
		})
		return hits, misses, lat, at, err
	}
	retrievalhttp.Register(api, svc)
}

// BodyLimits are the routes whose request bodies may exceed the API's JSON limit, and by how much
// (httpapi.Config.BodyLimits): POST /documents up to MaxUploadBytes.
func (m *Module) BodyLimits() map[string]int64 {
	return map[string]int64{"POST /documents": m.cfg.MaxUploadBytes}
}

// Routes mounts the HTTP routes only, without the consumers: the request path then writes the index
// itself, as the CLI does. For tests of that path; serve calls Register.
func (m *Module) Routes(api huma.API) { retrievalhttp.Register(api, m.svc) }

// erased reports a DocumentIngested whose content was erased (its key destroyed): the bus says so,
// and its data decodes to the zero value (no recorded ingest has an empty docId, so that alone
// would tell it too).
func erased(env bus.Envelope, ev events.DocumentIngested) bool { return env.Erased || ev.DocID == "" }

func docEvent(env bus.Envelope, docID string, ing *events.DocumentIngested) app.DocEvent {
	return app.DocEvent{Tenant: env.Tenant, DocID: docID, Revision: env.Revision, Position: env.Position, Ingested: ing}
}

// finalFlushTimeout bounds the statistics' last append at Run's exit.
const finalFlushTimeout = 5 * time.Second

// Run repairs the embedded index once its projection has caught up (consume.go), then records the
// search statistics every StatsInterval and writes the index's snapshots every FlushInterval until
// ctx ends, and once more on the way out.
func (m *Module) Run(ctx context.Context) error {
	if m.indexProj != nil {
		go m.repair(ctx)
	}
	flush := time.NewTicker(m.cfg.FlushInterval)
	defer flush.Stop()
	stats := time.NewTicker(m.cfg.StatsInterval)
	defer stats.Stop()
	fl, canFlush := m.index.(search.Flusher)
	for {
		select {
		case <-ctx.Done():
			if m.statsProj != nil {
				// Bounded: a store that does not answer must not hold the shutdown.
				sctx, cancel := context.WithTimeout(context.Background(), finalFlushTimeout)
				if err := m.svc.Stats.Flush(sctx, m.store); err != nil {
					m.log.Error("retrieval: the last search statistics were not recorded", "error", err)
				}
				cancel()
			}
			if canFlush {
				if err := fl.Flush(context.Background()); err != nil {
					m.log.Error("retrieval: final index snapshot failed", "error", err)
				}
			}
			return nil
		case <-stats.C:
			if m.statsProj != nil {
				if err := m.svc.Stats.Flush(ctx, m.store); err != nil {
					m.log.Warn("retrieval: recording search statistics failed; kept for the next try", "error", err)
				}
			}
		case <-flush.C:
			if canFlush {
				if err := fl.Flush(ctx); err != nil {
					m.log.Error("retrieval: index snapshot failed", "error", err)
				}
			}
		}
	}
}

// repair runs the start-up repair once the index projection has caught up, unless its first event
// did, retrying while the index or the store fail.
func (m *Module) repair(ctx context.Context) {
	if err := m.indexProj.WaitCaughtUp(ctx); err != nil {
		return
	}
	wait := 100 * time.Millisecond
	for !m.svc.Repaired() {
		err := m.svc.RepairWith(ctx, func(fn func(b *bolt.Bucket) error) error {
			return m.indexProj.View(ctx, func(tx *readmodel.Tx) error { return fn(tx.Bucket()) })
		})
		if err == nil {
			return
		}
		m.log.Warn("retrieval: repairing the index after the last stop failed; retrying", "in", wait, "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

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

// Embed embeds texts with t's embeddings model and returns the model id (tooling's Host.Embed),
// metered as a tool's call (platform/metering.PurposeToolEmbed).
func (m *Module) Embed(ctx context.Context, t tenant.ID, texts []string) ([][]float32, string, error) {
	return m.svc.Embed(ctx, t, metering.PurposeToolEmbed, texts)
}

// EmbedFor is Embed metered under another purpose (POST /v1/embeddings: metering.PurposeEmbeddings).
// Over the tenant's token budget it refuses with an *apperr.Error 429 budget_exceeded.
func (m *Module) EmbedFor(ctx context.Context, t tenant.ID, purpose string, texts []string) ([][]float32, string, error) {
	return m.svc.Embed(ctx, t, purpose, texts)
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

// ForgetTenant drops what this replica keeps of t's documents outside the log: its chunks in the
// index (DeleteTenant) and its cached search answers. It is retrieval's part of erasing a tenant
// (issue 12 §4), run after the tenant's keys were destroyed (keystore DestroyTenant), which is what
// makes the documents unreadable in the log, the index files and every copy: from then on their
// ingests read back as erased, and a search would drop their hits anyway. With an embedded index
// every replica runs it (each has its own index and cache). Later ingests of t are indexed again.
func (m *Module) ForgetTenant(ctx context.Context, t tenant.ID) error {
	return m.svc.ForgetTenant(ctx, t)
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
	Deleted  int              // documents whose files are gone (Prune)
	Failed   map[string]error // by path
}

// FilesOptions tune IngestPaths.
type FilesOptions struct {
	// Prune deletes the tenant's documents ingested from files whose ids no file given has any
	// more (a folder synced again loses what was removed from it).
	Prune bool
}

// IngestPaths ingests .txt/.md/.markdown files and folders for t (crispy ingest PATH… --tenant T).
// A file's docId is its path relative to the folder given ('/'-separated; a file given by name:
// its name), never to the working directory; hidden files and folders are skipped; files whose
// content hash matches their document's last ingest are skipped, so an interrupted run resumes.
// progress is called after every file (and every deletion when pruning).
func (m *Module) IngestPaths(ctx context.Context, t tenant.ID, paths []string, opts FilesOptions, progress func(done, total int, path string)) (FilesResult, error) {
	r, err := m.svc.IngestPaths(ctx, t, paths, app.FilesOptions(opts), progress)
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

func (a completerAdapter) Complete(ctx context.Context, t tenant.ID, purpose string, msgs []app.Message, maxTokens int) (string, string, error) {
	req := CompletionRequest{MaxTokens: maxTokens, Purpose: purpose, Messages: make([]Message, len(msgs))}
	for i, m := range msgs {
		req.Messages[i] = Message{Role: m.Role, Content: m.Content}
	}
	r, err := a.c.Complete(ctx, t, req)
	return r.Text, r.Model, err
}

// CacheStats are a tenant's search cache numbers for a window (the numbers of GET
// /metrics/search-cache), for the observability module's SLIs. Once Register ran they are a
// checkpointed read model summed over the replicas (they survive restarts).
type CacheStats struct {
	Hits, Misses, TotalChecks int64
	HitRate, AvgLatencyMs     float64
}

// CacheStats sums t's search cache checks between since and until.
func (m *Module) CacheStats(_ context.Context, t tenant.ID, since, until time.Time) (CacheStats, error) {
	st, err := m.svc.Stats.Window(t, since, until)
	return CacheStats(st), err
}

// HealthCheck reports the search index for GET /health's "search" backend: down when it does not
// answer (indexes that can be pinged: Elasticsearch), catching_up while this replica's index
// consumer catches up with the store or repairs what the last stop left, else nil. (A write the
// index cannot take shows on the "bus" backend: degraded while the bus waits for the index.)
func (m *Module) HealthCheck(ctx context.Context) error {
	if p, ok := m.index.(interface{ Ping(context.Context) error }); ok {
		if err := p.Ping(ctx); err != nil {
			return err
		}
	}
	if m.svc.Ready != nil {
		if err := m.svc.Ready(); err != nil {
			return health.CatchingUpState("the search index is catching up with the event store", 0, 0)
		}
	}
	if m.indexProj != nil && !m.svc.Repaired() {
		return health.CatchingUpState("the search index is repairing what the last stop left unsaved", 0, 0)
	}
	return nil
}
