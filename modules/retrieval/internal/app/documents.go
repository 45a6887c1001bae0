package app

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/crispy-enigma/crispy/modules/retrieval/events"
	"github.com/crispy-enigma/crispy/modules/retrieval/internal/domain"
	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// DocumentInfo is a document as GET /documents shows it.
type DocumentInfo struct {
	DocID  string
	Title  string
	Source string
	Status string // indexed, pending (recorded, not yet in this replica's index), failed
	// Reason is why its last ingest failed (status failed). The fields above are then the last
	// version that was ingested, still searchable (empty when none was).
	Reason         string
	Chunks         int
	ContentHash    string
	EmbeddingModel string
	Updated        time.Time
}

// Document statuses.
const (
	StatusIndexed = "indexed"
	StatusPending = "pending"
	StatusFailed  = "failed"
)

// MaxDocumentsPage bounds a page of GET /documents.
const MaxDocumentsPage = 200

func (s *Service) info(d domain.Document, at time.Time) DocumentInfo {
	ev := d.Ingested
	st := StatusIndexed
	if s.Consumed && eventstore.Position(d.Position) > s.Applied() {
		st = StatusPending
	}
	return DocumentInfo{DocID: d.DocID, Title: ev.Title, Source: ev.Source, Status: st, Chunks: len(ev.Chunks), ContentHash: ev.ContentHash,
		EmbeddingModel: ev.EmbeddingModel, Updated: at}
}

// withFailure is info when the document's last ingest failed after its last recorded version (f
// later in the log than d's last event): failed, with the reason and the time of the failure.
func (s *Service) withFailure(d domain.Document, at time.Time, f failure) DocumentInfo {
	var out DocumentInfo
	if d.Exists {
		out = s.info(d, at)
	} else {
		out = DocumentInfo{DocID: f.ev.DocID, ContentHash: f.ev.ContentHash}
	}
	out.Status, out.Reason, out.Updated = StatusFailed, f.ev.Reason, f.at
	return out
}

// ListDocuments returns t's live documents by docId, up to limit after the cursor (a docId; ""
// from the first), and the cursor of the next page ("" at the end). It folds the tenant's document
// events: it reads the tenant's log, not a read model (fine for thousands of documents; a
// projection is the next step for more).
func (s *Service) ListDocuments(ctx context.Context, t tenant.ID, limit int, after string) ([]DocumentInfo, string, error) {
	if limit <= 0 {
		limit = 50
	}
	if limit > MaxDocumentsPage {
		return nil, "", apperr.Invalid("retrieval.invalidLimit", "query.limit", fmt.Sprintf("limit must be 1 to %d", MaxDocumentsPage))
	}
	prefix := t.StreamPrefix() + events.DocCategory + "-"
	failedPrefix := t.StreamPrefix() + events.FailedCategory + "-"
	type doc struct {
		d  domain.Document
		at time.Time
	}
	docs := map[string]*doc{}
	fails := map[string]failure{} // failures later than the document's last event
	err := s.eachEvent(ctx, t, eventstore.Start, func(e eventstore.Event) error {
		if strings.HasPrefix(e.Stream, failedPrefix) && e.Type == events.TypeDocumentFailed {
			var ev events.DocumentFailed
			if err := e.Decode(&ev); err != nil {
				return err
			}
			fails[ev.DocID] = failure{ev: ev, pos: e.Position, at: e.Time}
			return nil
		}
		if !strings.HasPrefix(e.Stream, prefix) {
			return nil
		}
		var d domain.Document
		if err := foldEvent(&d, e); err != nil {
			return err
		}
		d.Position = uint64(e.Position)
		switch {
		case d.Exists:
			docs[d.DocID] = &doc{d, e.Time}
			delete(fails, d.DocID) // ingested since: a retry that succeeded
		case d.DocID != "":
			delete(docs, d.DocID)
			delete(fails, d.DocID)
		default: // an erased ingest: its stream names it only by a hash; its deletion follows
		}
		return nil
	})
	if err != nil {
		return nil, "", apperr.Wrap(err, apperr.KindUnavailable, "retrieval.storeUnavailable", "the event store is unavailable; try again later")
	}
	ids := make([]string, 0, len(docs)+len(fails))
	for id := range docs {
		if _, failed := fails[id]; id > after && !failed {
			ids = append(ids, id)
		}
	}
	for id := range fails {
		if id > after {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	next := ""
	if len(ids) > limit {
		ids, next = ids[:limit], ids[limit-1]
	}
	out := make([]DocumentInfo, len(ids))
	for i, id := range ids {
		var d domain.Document
		var at time.Time
		if x := docs[id]; x != nil {
			d, at = x.d, x.at
		}
		if f, failed := fails[id]; failed {
			out[i] = s.withFailure(d, at, f)
		} else {
			out[i] = s.info(d, at)
		}
	}
	return out, next, nil
}

// GetDocument returns one of t's documents; 404 when it has none of that id (or it was deleted).
func (s *Service) GetDocument(ctx context.Context, t tenant.ID, docID string) (DocumentInfo, error) {
	st, err := docStream(t, docID)
	if err != nil {
		return DocumentInfo{}, err
	}
	evs, err := s.Store.ReadStream(ctx, st, 0, 0)
	if err != nil {
		return DocumentInfo{}, apperr.Wrap(fmt.Errorf("read %s: %w", st, err), apperr.KindUnavailable, "retrieval.storeUnavailable",
			"the event store is unavailable; try again later")
	}
	d := domain.Document{DocID: docID}
	var at time.Time
	for _, e := range evs {
		if err := foldEvent(&d, e); err != nil {
			return DocumentInfo{}, err
		}
		d.Revision, d.Position, at = e.Revision, uint64(e.Position), e.Time
	}
	f, failed, err := s.lastFailure(ctx, t, docID)
	if err != nil {
		return DocumentInfo{}, err
	}
	if failed && (len(evs) == 0 || f.pos > evs[len(evs)-1].Position) {
		return s.withFailure(d, at, f), nil
	}
	if !d.Exists || d.DocID != docID {
		return DocumentInfo{}, apperr.NotFound("retrieval.documentNotFound", fmt.Sprintf("document %q not found", docID))
	}
	return s.info(d, at), nil
}
