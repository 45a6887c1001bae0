package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/crispy-enigma/crispy/modules/retrieval/events"
	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// Failure stages (events.DocumentFailed.Stage).
const (
	StageExtract = "extract"
	StageEmbed   = "embed"
	StageIndex   = "index"
)

// failure is a document's last failed ingest, where it is in the log and when it was recorded.
type failure struct {
	ev  events.DocumentFailed
	pos eventstore.Position
	at  time.Time
}

func failedStream(t tenant.ID, docID string) (tenant.Stream, error) {
	return tenant.NewStream(t, events.FailedCategory, events.DocStreamKey(docID))
}

// recordable reports whether err is a failure of the document's ingest that GET /documents should
// show: the embeddings provider, the index or the key store failing, or an unclassified fault. A
// request the client got wrong (422) or the tenant's budget refused (429) was never accepted: its
// answer says why, and the document keeps the status it had.
func recordable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	switch apperr.KindOf(err) {
	case apperr.KindInvalid, apperr.KindRateLimited, apperr.KindNotFound, apperr.KindTooLarge:
		return false
	}
	return true
}

// reason is what a failure shows: the problem the client was answered (code and message), never
// an unclassified error's text, which may hold a provider's internals.
func reason(err error) string {
	if e, ok := apperr.As(err); ok {
		return e.Code + ": " + e.Message
	}
	return "internal_error: the ingest failed on the server's side; its log has the cause"
}

// RecordFailure records a failed ingest of docID (stage, why) so that GET /documents shows it as
// failed until the document is ingested or deleted again. Best effort: the client is answered the
// failure either way, so a store that refuses this too is logged, not returned.
func (s *Service) RecordFailure(ctx context.Context, t tenant.ID, docID, contentHash, stage, why string) {
	st, err := failedStream(t, docID)
	if err == nil {
		var data eventstore.EventData
		if data, err = eventstore.NewEventData(events.TypeDocumentFailed, events.DocumentFailed{DocID: docID, ContentHash: contentHash, Stage: stage, Reason: why}); err == nil {
			_, err = s.Store.Append(context.WithoutCancel(ctx), st, eventstore.Any, data)
		}
	}
	if err != nil {
		s.Log.ErrorContext(ctx, "retrieval: a failed ingest could not be recorded", "docId", docID, "stage", stage, "error", err)
	}
}

// lastFailure returns docID's last recorded failure (ok false: none).
func (s *Service) lastFailure(ctx context.Context, t tenant.ID, docID string) (failure, bool, error) {
	st, err := failedStream(t, docID)
	if err != nil {
		return failure{}, false, err
	}
	evs, err := s.Store.ReadStream(ctx, st, 0, 0)
	if err != nil {
		return failure{}, false, apperr.Wrap(fmt.Errorf("read %s: %w", st, err), apperr.KindUnavailable, "retrieval.storeUnavailable",
			"the event store is unavailable; try again later")
	}
	if len(evs) == 0 {
		return failure{}, false, nil
	}
	e := evs[len(evs)-1]
	var ev events.DocumentFailed
	if err := e.Decode(&ev); err != nil {
		return failure{}, false, err
	}
	return failure{ev: ev, pos: e.Position, at: e.Time}, true, nil
}
