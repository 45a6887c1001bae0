package app

import (
	"context"

	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// ReindexResult reports a reindex.
type ReindexResult struct {
	Documents int
	Chunks    int
}

// Reindex rebuilds t's index from its document events (crispy reindex): it empties the tenant's
// index and its checkpoint, then catches the tenant up from the beginning of the log (catchup.go),
// refusing its reads meanwhile. Writes during the rebuild are kept: each document is reapplied under
// its lock from its latest events. progress, when set, is called after each document.
func (s *Service) Reindex(ctx context.Context, t tenant.ID, progress func(done, total int, docID string)) (ReindexResult, error) {
	ti := s.tenantIndex(t)
	ti.mu.Lock()
	if ti.running {
		ti.mu.Unlock()
		return ReindexResult{}, apperr.CatchingUp("this tenant's search index", catchingUpRetryAfter)
	}
	ti.running = true
	ti.mu.Unlock()
	p := catchUpPlan{t: t, ti: ti}
	if err := s.reset(ctx, t, ti); err != nil {
		s.fail(p, err)
		p.release()
		return ReindexResult{}, err
	}
	p, err := s.scan(ctx, t, ti, eventstore.Start)
	if err != nil {
		s.fail(p, err)
		p.release()
		return ReindexResult{}, err
	}
	return s.runPlan(ctx, p, progress)
}

// reset empties t's index and checkpoint and marks the tenant catching up (from the beginning of the
// log). It happens under cpMu, so no checkpoint computed before it can be set after it. Caller has
// marked the tenant running.
func (s *Service) reset(ctx context.Context, t tenant.ID, ti *tenantIndex) error {
	ti.cpMu.Lock()
	defer ti.cpMu.Unlock()
	ti.mu.Lock()
	ti.phase, ti.safe, ti.seen = phaseCatchingUp, 0, 0
	ti.mu.Unlock()
	if err := s.Index.DeleteTenant(ctx, t); err != nil {
		return indexErr(err, false)
	}
	s.Cache.Invalidate(t)
	return nil
}
