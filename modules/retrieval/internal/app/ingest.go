package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/crispy-enigma/crispy/modules/retrieval/events"
	"github.com/crispy-enigma/crispy/modules/retrieval/internal/domain"
	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/metering"
	"github.com/crispy-enigma/crispy/platform/search"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// Ingest is the command of POST /ingest.
type Ingest struct {
	Tenant       tenant.ID
	DocID        string
	Text         string
	Title        string
	Source       string
	URL          string
	Metadata     map[string]any
	MaxChunkSize int // 0: default
	Overlap      *int
}

// IngestResult reports an ingestion.
type IngestResult struct {
	DocID          string
	Chunks         int
	EmbeddingModel string
}

// ContentHash is how documents are compared for the resumable CLI ingest.
func ContentHash(text string) string {
	h := sha256.Sum256([]byte(text))
	return "sha256:" + hex.EncodeToString(h[:])
}

func (s *Service) validateIngest(c *Ingest) error {
	if n := utf8.RuneCountInString(c.DocID); n < 1 || n > 256 {
		return apperr.Invalid("retrieval.invalidDocId", "body.docId", "docId must be 1 to 256 characters")
	}
	if !utf8.ValidString(c.DocID) || !utf8.ValidString(c.Text) {
		return apperr.Invalid("retrieval.invalidText", "body.text", "text must be valid UTF-8")
	}
	if n := utf8.RuneCountInString(c.Text); n > s.MaxTextChars {
		return apperr.Invalid("retrieval.textTooLong", "body.text", fmt.Sprintf("text is %d characters; the limit is %d", n, s.MaxTextChars))
	}
	if c.MaxChunkSize == 0 {
		c.MaxChunkSize = domain.DefaultChunkSize
	}
	if c.MaxChunkSize < domain.MinChunkSize || c.MaxChunkSize > domain.MaxChunkSize {
		return apperr.Invalid("retrieval.invalidChunking", "body.chunking.maxChunkSize",
			fmt.Sprintf("maxChunkSize must be %d to %d", domain.MinChunkSize, domain.MaxChunkSize))
	}
	overlap := min(domain.DefaultOverlap, c.MaxChunkSize/2)
	if c.Overlap != nil {
		overlap = *c.Overlap
	}
	if overlap < 0 || overlap >= c.MaxChunkSize {
		return apperr.Invalid("retrieval.invalidChunking", "body.chunking.overlap", "overlap must be at least 0 and less than maxChunkSize")
	}
	c.Overlap = &overlap
	return nil
}

// Ingest records the document and, in the request path (the CLI) or through the bus (serve), indexes it.
// A re-ingest replaces the document's chunks.
//
// Everything that can refuse the document runs before it is recorded: validation, chunking,
// embedding, and the index's CheckWrite (409 when the tenant's index holds vectors of another
// dimension, 503 when it is unavailable). A refused ingest appends nothing, so no later rebuild can
// bring it back. Once recorded, the document reaches the index through the bus (consume.go): the
// answer waits, up to IndexWait, until this replica has applied it, so a search on this replica
// finds it as soon as the ingest is acknowledged. If the index cannot take it in that time (it went
// down after CheckWrite), the answer is 503 saying the document was recorded: it is indexed when
// the index is back, without a reindex (the bus retries the write until it succeeds).
func (s *Service) Ingest(ctx context.Context, c Ingest) (IngestResult, error) {
	if err := s.validateIngest(&c); err != nil {
		return IngestResult{}, err
	}
	// From here the document was accepted: a failure to embed or index it is recorded, so that GET
	// /documents shows it failed (with the problem answered) until an ingest of it succeeds.
	fail := func(stage string, err error) (IngestResult, error) {
		if recordable(err) {
			s.RecordFailure(ctx, c.Tenant, c.DocID, ContentHash(c.Text), stage, reason(err))
		}
		return IngestResult{}, err
	}
	emb, err := s.Embedder(ctx, c.Tenant)
	if err != nil {
		return fail(StageEmbed, err)
	}
	chunks := domain.ChunkText(c.DocID, c.Text, c.MaxChunkSize, *c.Overlap)
	ids := make([]string, len(chunks))
	for i, ch := range chunks {
		ids[i] = ch.ID
	}
	ev := events.DocumentIngested{DocID: c.DocID, Title: c.Title, Source: c.Source, URL: c.URL, Metadata: c.Metadata,
		ContentHash: ContentHash(c.Text), Text: c.Text, MaxChunkSize: c.MaxChunkSize, Overlap: *c.Overlap,
		Chunks: domain.ToEvent(chunks), ChunkIDs: ids, EmbeddingModel: emb.Model()}
	if s.Sealed != nil {
		ev.Key = events.NewDocumentKey(c.DocID)
	}
	indexed, err := s.embedChunks(ctx, c.Tenant, emb, ev, metering.PurposeEmbedIngest)
	if err != nil {
		return fail(StageEmbed, err)
	}
	dim := 0
	if len(indexed) > 0 {
		dim = len(indexed[0].Vector)
	}
	if err := s.Index.CheckWrite(ctx, c.Tenant, dim); err != nil {
		return fail(StageIndex, indexErr(err, false))
	}
	st, err := docStream(c.Tenant, c.DocID)
	if err != nil {
		return IngestResult{}, err
	}
	data, err := eventstore.NewEventData(events.TypeDocumentIngested, ev)
	if err != nil {
		return IngestResult{}, err
	}

	unlock := s.docLock(c.Tenant, c.DocID)
	defer unlock()
	if s.Consumed {
		// This replica's consumer takes the vectors instead of embedding the document again.
		defer s.putPrepared(c.Tenant, ev, indexed)()
	}
	ar, err := s.Store.Append(ctx, st, eventstore.Any, data)
	if err != nil {
		return IngestResult{}, fmt.Errorf("append to %s: %w", st, err)
	}
	res := IngestResult{DocID: c.DocID, Chunks: len(chunks), EmbeddingModel: emb.Model()}
	if s.Consumed {
		return res, s.awaitApplied(ctx, ar.Position)
	}
	// Invalidated once the index update is over, not right after the append: a search that read
	// the index in between would cache the old answer under the new generation.
	defer s.Cache.Invalidate(c.Tenant)
	return res, s.replaceChunks(ctx, c.Tenant, c.DocID, ev.Key, indexed)
}

// awaitApplied waits, up to IndexWait, until this replica has applied the document event at pos.
func (s *Service) awaitApplied(ctx context.Context, pos eventstore.Position) error {
	wait := s.IndexWait
	if wait <= 0 {
		wait = 10 * time.Second
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	if s.applied.wait(wctx, pos) {
		return nil
	}
	e := apperr.Wrap(fmt.Errorf("position %d not applied by this replica after %s: %w", pos, wait, search.ErrUnavailable),
		apperr.KindUnavailable, "retrieval.indexUnavailable",
		"the change was recorded, but the search index has not taken it yet (it is unavailable or busy); it will, without a reindex")
	e.RetryAfterSec = 5
	return e
}

// Delete records the document's deletion, which the index applies like an ingest, and destroys
// the data keys of its ingests since its last deletion (issue 12 §4): from then on its text cannot
// be read back from the log, the index or any copy of them. A document that does not exist (for
// this tenant) is 404. Like Ingest, it records nothing when the index cannot take the change now.
// If a key cannot be destroyed now, the answer is 503 saying the deletion was recorded: the
// deletion's processor (DestroyKeys) destroys it once the key store answers.
func (s *Service) Delete(ctx context.Context, t tenant.ID, docID string) error {
	if n := utf8.RuneCountInString(docID); n < 1 || n > 256 {
		return apperr.Invalid("retrieval.invalidDocId", "path.docId", "docId must be 1 to 256 characters")
	}
	unlock := s.docLock(t, docID)
	defer unlock()
	d, err := s.loadDoc(ctx, t, docID, 0)
	if err != nil {
		return err
	}
	if !d.Exists {
		// A document whose only ingests failed is listed (status failed): deleting it drops it.
		f, failed, err := s.lastFailure(ctx, t, docID)
		if err != nil {
			return err
		}
		if !failed || eventstore.Position(d.Position) > f.pos {
			return apperr.NotFound("retrieval.documentNotFound", fmt.Sprintf("document %q not found", docID))
		}
	}
	if err := s.Index.CheckWrite(ctx, t, 0); err != nil {
		return indexErr(err, false)
	}
	st, err := docStream(t, docID)
	if err != nil {
		return err
	}
	data, err := eventstore.NewEventData(events.TypeDocumentDeleted, events.DocumentDeleted{DocID: docID, Keys: d.Keys})
	if err != nil {
		return err
	}
	ar, err := s.Store.Append(ctx, st, eventstore.After(d.Revision, d.Position > 0), data)
	if err != nil {
		return fmt.Errorf("append to %s: %w", st, err)
	}
	keysErr := s.DestroyKeys(ctx, t, d.Keys)
	var indexed error
	if s.Consumed {
		indexed = s.awaitApplied(ctx, ar.Position)
	} else {
		if err := s.Index.DeleteDoc(ctx, t, docID); err != nil {
			indexed = indexErr(err, true)
		}
		s.Cache.Invalidate(t) // after the index update, as in Ingest
	}
	// Whatever the key store says, the index is brought up to date first: a search after the answer
	// does not find the document either way.
	if keysErr != nil {
		e := apperr.Wrap(keysErr, apperr.KindUnavailable, "retrieval.keysUnavailable",
			"the deletion was recorded, but the document's keys could not be destroyed yet (the key store is unavailable); they will be, without another request")
		e.RetryAfterSec = 5
		return e
	}
	return indexed
}

// DestroyKeys destroys data keys of t (idempotent: a destroyed key stays destroyed). It is the
// request path's step of Delete, and the handler of DocumentDeleted's processor, which finishes a
// destruction a crash or a key store outage interrupted.
func (s *Service) DestroyKeys(ctx context.Context, t tenant.ID, keys []string) error {
	if s.Keys == nil {
		return nil
	}
	for _, k := range keys {
		if err := s.Keys.Destroy(ctx, t, k); err != nil {
			return fmt.Errorf("destroy key %s of %s: %w", k, t, err)
		}
	}
	return nil
}

// stringMetadata flattens request metadata for the index: strings stay, other values become their
// JSON text (numbers "3", booleans "true").
func stringMetadata(md map[string]any) map[string]string {
	if len(md) == 0 {
		return nil
	}
	out := make(map[string]string, len(md))
	for k, v := range md {
		out[k] = metaString(v)
	}
	return out
}

func metaString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	case nil:
		return ""
	default:
		b, _ := json.Marshal(x)
		return string(b)
	}
}
