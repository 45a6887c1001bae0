// Package app holds retrieval's use cases: ingest, delete, search, reindex, and the file ingestion of
// the CLI. One Service carries the collaborators.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/crispy-enigma/crispy/modules/retrieval/events"
	"github.com/crispy-enigma/crispy/modules/retrieval/internal/domain"
	"github.com/crispy-enigma/crispy/modules/retrieval/internal/sealedindex"
	"github.com/crispy-enigma/crispy/platform/ai/embeddings"
	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/metering"
	"github.com/crispy-enigma/crispy/platform/search"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// Ports the module consumes, as the app sees them.
type (
	Message struct{ Role, Content string }

	Completer interface {
		Complete(ctx context.Context, t tenant.ID, purpose string, msgs []Message, maxTokens int) (text, model string, err error)
	}
	ModelPolicy interface {
		EmbeddingsModel(ctx context.Context, t tenant.ID) (string, error)
	}
	Embedders interface {
		Resolve(spec string) (embeddings.Embedder, error)
	}
	// Keys destroys data keys (platform/keystore): deleting a document destroys its keys.
	Keys interface {
		Destroy(ctx context.Context, t tenant.ID, keyID string) error
	}
)

// ErrNoModel marks a Completer without a real model.
var ErrNoModel = domain.ErrNoModel

// Service is retrieval's application layer.
type Service struct {
	Store     eventstore.Store
	Index     search.Index
	Embedders Embedders
	Policy    ModelPolicy // nil: the default model
	Completer Completer   // nil: offline
	// Rerankers resolves the tenant's reranker (rerank.go); nil: no reranking.
	Rerankers Rerankers
	// Meter books and records the embeddings calls of the request path (Embed with a purpose);
	// nil: not metered.
	Meter metering.Meter
	Cache *Cache
	Stats *Stats
	// Sealed, when set, seals document events (through the store's policy: Ingest names the key)
	// and the index's chunk text under a data key per ingest, which Delete destroys (Keys). Nil:
	// documents are stored in plain text (tests, and stores written before sealing).
	Sealed  *sealedindex.Codec
	Keys    Keys
	Metrics *metrics.Set
	Log     *slog.Logger
	Now     func() time.Time

	RewriteTimeout time.Duration
	RerankTimeout  time.Duration
	AnswerTimeout  time.Duration
	MaxTextChars   int
	// MaxUploadBytes bounds POST /documents' file (0: httpapi's DefaultMaxUploadBytes, 20 MiB).
	MaxUploadBytes int64

	// Consumed is set when the index is fed by the bus (serve): the request path records events and
	// waits, up to IndexWait, for this replica to have applied them (consume.go). Unset (the CLI),
	// the request path writes the index itself.
	Consumed  bool
	IndexWait time.Duration
	// Ready, when set, refuses searches until this replica's consumer has caught up (503
	// catching_up).
	Ready func() error
	// RepairNeeded: the index is this replica's own (embedded) and searches wait for the start-up
	// repair (consume.go).
	RepairNeeded bool

	locks sync.Map // tenant/docId -> *sync.Mutex

	applied    watermark
	prepared   sync.Map // preparedKey -> []search.Chunk
	repaired   sync.Map // docKey -> revision the start-up repair applied
	verified   sync.Map // tenant.ID -> true: its index checkpoint is not beyond the store
	ahead      aheadSet // documents the index projection wrote ahead of their turn (consume.go)
	repairMu   sync.Mutex
	repairDone atomic.Bool
}

// docLock serialises writes of one document of one tenant.
func (s *Service) docLock(t tenant.ID, docID string) func() {
	v, _ := s.locks.LoadOrStore(t.String()+"\x00"+docID, &sync.Mutex{})
	m := v.(*sync.Mutex)
	m.Lock()
	return m.Unlock
}

// Embedder returns t's embedder.
func (s *Service) Embedder(ctx context.Context, t tenant.ID) (embeddings.Embedder, error) {
	spec := ""
	if s.Policy != nil {
		m, err := s.Policy.EmbeddingsModel(ctx, t)
		if err != nil {
			return nil, err
		}
		spec = m
	}
	e, err := s.Embedders.Resolve(spec)
	if err != nil {
		return nil, apperr.Wrap(err, apperr.KindUnavailable, "retrieval.embeddingsModelUnavailable",
			fmt.Sprintf("the tenant's embeddings model %q is not configured on this server", spec))
	}
	return e, nil
}

// Embed embeds texts with t's model, metered with purpose (platform/metering).
func (s *Service) Embed(ctx context.Context, t tenant.ID, purpose string, texts []string) ([][]float32, string, error) {
	e, err := s.Embedder(ctx, t)
	if err != nil {
		return nil, "", err
	}
	vs, err := s.embedMetered(ctx, t, e, purpose, texts)
	if err != nil {
		return nil, "", embedErr(err)
	}
	return vs, e.Model(), nil
}

// embedMetered runs e.Embed as one metered call of t: booked against the tenant's token budget
// (a 429 budget_exceeded refuses it before the provider is called) and recorded as usage with the
// estimated tokens (the embeddings port reports none). The built-in hashed embedder calls no model
// and is not metered.
func (s *Service) embedMetered(ctx context.Context, t tenant.ID, e embeddings.Embedder, purpose string, texts []string) ([][]float32, error) {
	if s.Meter == nil || metering.Local(e.Model()) {
		return e.Embed(ctx, texts)
	}
	tokens := metering.EstimateTokens(texts...)
	h, err := s.Meter.Begin(ctx, t, tokens)
	if err != nil {
		return nil, err
	}
	start := s.Now()
	vs, err := e.Embed(ctx, texts)
	call := metering.Call{Purpose: purpose, Operation: metering.OperationEmbeddings, Model: e.Model(), PromptTokens: tokens,
		Estimated: true, Latency: s.Now().Sub(start), Err: err}
	if err != nil {
		call.PromptTokens = 0
	}
	if derr := h.Done(ctx, call); derr != nil {
		s.Log.ErrorContext(ctx, "embeddings call not recorded as usage", "tenant", t.String(), "purpose", purpose, "error", derr)
	}
	return vs, err
}

func embedErr(err error) error {
	if _, ok := apperr.As(err); ok {
		return err // the meter's refusal (429 budget_exceeded) or its read model catching up (503)
	}
	if errors.Is(err, embeddings.ErrUnavailable) {
		return apperr.Wrap(err, apperr.KindUnavailable, "retrieval.embeddingsUnavailable", "the embeddings provider is unavailable; try again later")
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return apperr.Wrap(err, apperr.KindTimeout, "retrieval.embeddingsTimeout", "the embeddings provider took too long")
	}
	return apperr.Wrap(err, apperr.KindBadGateway, "retrieval.embeddingsFailed", "the embeddings provider failed")
}

// indexErr classifies an index failure for the client.
func indexErr(err error, recorded bool) error {
	if errors.Is(err, search.ErrDimension) {
		return apperr.Wrap(err, apperr.KindConflict, "retrieval.reindexNeeded",
			"the tenant's index was built with another embeddings model; run `crispy reindex` for this tenant")
	}
	if errors.Is(err, search.ErrUnavailable) || errors.Is(err, search.ErrClosed) {
		msg := "the search index is unavailable; try again later"
		if recorded {
			msg = "the search index is unavailable; the change was recorded and will reach the index when it is back (or run `crispy reindex`)"
		}
		return apperr.Wrap(err, apperr.KindUnavailable, "retrieval.indexUnavailable", msg)
	}
	if _, ok := apperr.As(err); ok {
		return err
	}
	return fmt.Errorf("search index: %w", err)
}

func docStream(t tenant.ID, docID string) (tenant.Stream, error) {
	return tenant.NewStream(t, events.DocCategory, events.DocStreamKey(docID))
}

// loadDoc folds one document's stream from revision from (0: all of it).
func (s *Service) loadDoc(ctx context.Context, t tenant.ID, docID string, from uint64) (domain.Document, error) {
	st, err := docStream(t, docID)
	if err != nil {
		return domain.Document{}, err
	}
	evs, err := s.Store.ReadStream(ctx, st, from, 0)
	if err != nil {
		return domain.Document{}, apperr.Wrap(fmt.Errorf("read %s: %w", st, err), apperr.KindUnavailable, "retrieval.storeUnavailable",
			"the event store is unavailable; try again later")
	}
	d := domain.Document{DocID: docID}
	for _, e := range evs {
		if err := foldEvent(&d, e); err != nil {
			return d, err
		}
		d.Revision, d.Position = e.Revision, uint64(e.Position)
	}
	return d, nil
}

// eachEvent calls fn with each of t's events after position after, in order, reading a page at a
// time: never the tenant's whole log in memory.
func (s *Service) eachEvent(ctx context.Context, t tenant.ID, after eventstore.Position, fn func(eventstore.Event) error) error {
	// A page is held whole, and a document event carries its text (up to MaxTextChars): 256 events
	// keep a catch-up's scan of 4,000 documents of 50 KB at a 31 MB peak (pages of 2,000: 184 MB), for
	// about 15% more time on a log of small events.
	const page = 256
	for next := after + 1; ; {
		evs, err := s.Store.ReadTenant(ctx, t, next, page)
		if err != nil {
			return fmt.Errorf("read %s events: %w", t, err)
		}
		for _, e := range evs {
			if err := fn(e); err != nil {
				return err
			}
		}
		if len(evs) < page {
			return nil
		}
		next = evs[len(evs)-1].Position + 1
	}
}

func foldEvent(d *domain.Document, e eventstore.Event) error {
	switch e.Type {
	case events.TypeDocumentIngested:
		if e.Erased {
			d.Erased()
			return nil
		}
		var ev events.DocumentIngested
		if err := e.Decode(&ev); err != nil {
			return err
		}
		d.Apply(ev)
	case events.TypeDocumentDeleted:
		var ev events.DocumentDeleted
		if err := e.Decode(&ev); err != nil {
			return err
		}
		d.Apply(ev)
	}
	return nil
}

// applyToIndex makes the index show d: its chunks, or nothing when it is deleted. It returns how
// many chunks it indexed.
func (s *Service) applyToIndex(ctx context.Context, t tenant.ID, d domain.Document, docID string) (int, error) {
	var chunks []search.Chunk
	if d.Exists {
		var err error
		if chunks, err = s.indexChunks(ctx, t, d.Ingested); err != nil {
			return 0, err
		}
	}
	return len(chunks), s.replaceChunks(ctx, t, docID, d.Ingested.Key, chunks)
}

// replaceChunks makes chunks the document's only chunks in the index, sealed under keyID (the
// key of the ingest they come from; "" for an ingest recorded before sealing: as they are).
func (s *Service) replaceChunks(ctx context.Context, t tenant.ID, docID, keyID string, chunks []search.Chunk) error {
	chunks, err := s.clearForChunks(ctx, t, docID, keyID, chunks)
	if err != nil || len(chunks) == 0 {
		return err
	}
	if err := s.Index.Upsert(ctx, t, chunks); err != nil {
		return indexErr(err, true)
	}
	return nil
}

// clearForChunks is replaceChunks but for the Upsert, which the caller makes (writeDocs makes one
// for several documents): it removes the document's chunks from the index and returns chunks
// sealed under keyID, as they are to be written.
func (s *Service) clearForChunks(ctx context.Context, t tenant.ID, docID, keyID string, chunks []search.Chunk) ([]search.Chunk, error) {
	s.ahead.forget(t, docID) // replaced: whatever the projection wrote ahead of its turn (consume.go)
	if err := s.Index.DeleteDoc(ctx, t, docID); err != nil {
		return nil, indexErr(err, true)
	}
	if s.Sealed != nil && keyID != "" && len(chunks) > 0 {
		var err error
		if chunks, err = s.Sealed.Seal(ctx, t, keyID, chunks); err != nil {
			return nil, apperr.Wrap(err, apperr.KindUnavailable, "retrieval.keysUnavailable", "the key store is unavailable; try again later")
		}
	}
	return chunks, nil
}

// indexChunks embeds a recorded document's chunks with t's embeddings model.
func (s *Service) indexChunks(ctx context.Context, t tenant.ID, ev events.DocumentIngested) ([]search.Chunk, error) {
	e, err := s.Embedder(ctx, t)
	if apperr.KindOf(err) == apperr.KindNotFound && ev.EmbeddingModel != "" {
		// A tenant this server does not serve (removed from the tenants file) still has its
		// documents in the log: index them with the model they were recorded with, so that the
		// index neither stalls on them nor lacks them if the tenant comes back.
		e, err = s.Embedders.Resolve(ev.EmbeddingModel)
	}
	if err != nil {
		return nil, err
	}
	return s.embedChunks(ctx, t, e, ev, "")
}

// embedChunks embeds a document's chunks with e; metered with purpose unless it is "" (a replica
// indexing a recorded document embeds it again: the ingest that recorded it was metered).
func (s *Service) embedChunks(ctx context.Context, t tenant.ID, e embeddings.Embedder, ev events.DocumentIngested, purpose string) ([]search.Chunk, error) {
	cs, ok := domain.FromEvent(ev.Text, ev.Chunks)
	if !ok {
		return nil, fmt.Errorf("document %q: recorded chunk offsets do not fit its text", ev.DocID)
	}
	if len(cs) == 0 {
		return nil, nil
	}
	texts := make([]string, len(cs))
	for i, c := range cs {
		texts[i] = embedText(ev.Title, c.Text)
	}
	keys := embedKeys(e, ev, texts) // index: embedded once per (model, text), vectors.go
	vs, err := s.embedReusing(ctx, t, e, ev.DocID, texts, keys, purpose)
	if err != nil {
		return nil, embedErr(err)
	}
	if len(vs) != len(texts) {
		return nil, apperr.Wrap(fmt.Errorf("%d vectors for %d texts", len(vs), len(texts)), apperr.KindBadGateway,
			"retrieval.embeddingsFailed", "the embeddings provider failed")
	}
	md := stringMetadata(ev.Metadata)
	out := make([]search.Chunk, len(cs))
	for i, c := range cs {
		// Words analysed here, from the plain text, before sealedindex seals it for the index.
		out[i] = search.Chunk{DocID: ev.DocID, ChunkID: c.ID, Text: c.Text, Title: ev.Title, Source: ev.Source, URL: ev.URL, Metadata: md, Vector: vs[i],
			Terms: ChunkTerms(ev.Title, c.Text)}
		if keys != nil {
			out[i].EmbedKey = keys[i]
		}
	}
	return out, nil
}
