package app

import (
	"context"
	"fmt"
	"strings"

	"github.com/crispy-enigma/crispy/modules/retrieval/events"
	"github.com/crispy-enigma/crispy/modules/retrieval/internal/domain"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/search"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// Documents folds every document stream of t (live and deleted), keyed by docId.
func (s *Service) Documents(ctx context.Context, t tenant.ID) (map[string]*domain.Document, error) {
	prefix := t.StreamPrefix() + events.DocCategory + "-"
	docs := map[string]*domain.Document{}
	byStream := map[string]*domain.Document{}
	from := eventstore.Start
	for {
		evs, err := s.Store.ReadTenant(ctx, t, from, 2000)
		if err != nil {
			return nil, fmt.Errorf("read %s events: %w", t, err)
		}
		for _, e := range evs {
			if !strings.HasPrefix(e.Stream, prefix) {
				continue
			}
			d := byStream[e.Stream]
			if d == nil {
				d = &domain.Document{}
				byStream[e.Stream] = d
			}
			if err := foldEvent(d, e); err != nil {
				return nil, err
			}
			d.Revision = e.Revision
		}
		if len(evs) < 2000 {
			break
		}
		from = evs[len(evs)-1].Position + 1
	}
	for _, d := range byStream {
		if d.DocID != "" {
			docs[d.DocID] = d
		}
	}
	return docs, nil
}

// ReindexResult reports a reindex.
type ReindexResult struct {
	Documents int
	Chunks    int
}

// Reindex rebuilds t's index from its document events: it empties the tenant's index, then embeds and
// upserts every live document. progress, when set, is called after each document.
func (s *Service) Reindex(ctx context.Context, t tenant.ID, progress func(done, total int, docID string)) (ReindexResult, error) {
	docs, err := s.Documents(ctx, t)
	if err != nil {
		return ReindexResult{}, err
	}
	if err := s.Index.DeleteTenant(ctx, t); err != nil {
		return ReindexResult{}, indexErr(err, false)
	}
	s.Cache.Invalidate(t)
	var live []*domain.Document
	for _, d := range docs {
		if d.Exists {
			live = append(live, d)
		}
	}
	var res ReindexResult
	batch := make([]search.Chunk, 0, 512)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := s.Index.Upsert(ctx, t, batch); err != nil {
			return indexErr(err, false)
		}
		batch = batch[:0]
		return nil
	}
	for i, d := range live {
		cs, err := s.indexChunks(ctx, t, d.Ingested)
		if err != nil {
			return res, fmt.Errorf("reindex %q: %w", d.DocID, err)
		}
		batch = append(batch, cs...)
		res.Documents++
		res.Chunks += len(cs)
		if len(batch) >= 512 {
			if err := flush(); err != nil {
				return res, err
			}
		}
		s.pending.done(t, d.DocID)
		if progress != nil {
			progress(i+1, len(live), d.DocID)
		}
	}
	if err := flush(); err != nil {
		return res, err
	}
	s.Cache.Invalidate(t)
	return res, nil
}
