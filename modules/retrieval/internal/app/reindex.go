package app

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/crispy-enigma/crispy/modules/retrieval/events"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// ReindexResult reports a reindex.
type ReindexResult struct {
	Documents int
	Chunks    int
}

// Reindex rebuilds t's index from its document events (crispy reindex): it empties the tenant's
// index and its checkpoint, reads the tenant's events and reapplies every document from its latest
// events, then sets the tenant's checkpoint to the last position read. progress, when set, is
// called after each document.
func (s *Service) Reindex(ctx context.Context, t tenant.ID, progress func(done, total int, docID string)) (ReindexResult, error) {
	var res ReindexResult
	if err := s.Index.DeleteTenant(ctx, t); err != nil {
		return res, indexErr(err, false)
	}
	s.ahead.forgetTenant(t)
	s.Cache.Invalidate(t)
	docs, hi, err := s.scanDocs(ctx, t)
	if err != nil {
		return res, err
	}
	for i, id := range docs {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		unlock := s.docLock(t, id)
		d, err := s.loadDoc(ctx, t, id, 0)
		var chunks int
		if err == nil {
			chunks, err = s.applyToIndex(ctx, t, d, id)
		}
		unlock()
		if err != nil {
			return res, fmt.Errorf("reindex %q: %w", id, err)
		}
		if d.Exists {
			res.Documents++
			res.Chunks += chunks
		}
		if progress != nil {
			progress(i+1, len(docs), id)
		}
	}
	if err := s.Index.SetCheckpoint(ctx, t, uint64(hi)); err != nil {
		return res, indexErr(err, true)
	}
	s.Cache.Invalidate(t)
	return res, nil
}

// ForgetTenant empties t's index and drops its cached answers (see retrieval.Module.ForgetTenant).
func (s *Service) ForgetTenant(ctx context.Context, t tenant.ID) error {
	defer s.Cache.Invalidate(t) // after the index, as in Ingest: an answer read before must not stay
	if err := s.Index.DeleteTenant(ctx, t); err != nil {
		return indexErr(err, false)
	}
	s.ahead.forgetTenant(t)
	return nil
}

// scanDocs reads t's events and lists the documents they touch, and the highest position read.
func (s *Service) scanDocs(ctx context.Context, t tenant.ID) ([]string, eventstore.Position, error) {
	prefix := t.StreamPrefix() + events.DocCategory + "-"
	seen := map[string]string{} // stream -> docId
	var hi eventstore.Position
	err := s.eachEvent(ctx, t, eventstore.Start, func(e eventstore.Event) error {
		hi = max(hi, e.Position)
		if !strings.HasPrefix(e.Stream, prefix) || (e.Type != events.TypeDocumentIngested && e.Type != events.TypeDocumentDeleted) {
			return nil
		}
		if _, ok := seen[e.Stream]; ok || e.Erased {
			return nil // an erased ingest has no docId left: the stream's deletion that follows has
		}
		var id struct {
			DocID string `json:"docId"`
		}
		if err := json.Unmarshal(e.Data, &id); err != nil || id.DocID == "" {
			return fmt.Errorf("read %s: %s@%d has no docId: %v", t, e.Stream, e.Revision, err)
		}
		seen[e.Stream] = id.DocID
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	docs := make([]string, 0, len(seen))
	for _, id := range seen {
		docs = append(docs, id)
	}
	slices.Sort(docs)
	return docs, hi, nil
}
