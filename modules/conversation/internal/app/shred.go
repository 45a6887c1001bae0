package app

import (
	"context"
	"fmt"

	"github.com/crispy-enigma/crispy/modules/conversation/events"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// FinishEnd completes the erasure that the session's SessionDeleted or SessionExpired at revision
// endRev asked for: the data key of the life that event ended is destroyed (idempotent) and, when
// the session is still ended in that life, its snapshot segments' drop is recorded. The request
// path (Delete, the retention sweep) does the same right after the append; this is for when it
// could not — the key store was down, or the process stopped between the append and the
// destruction — since nothing else would ever come back to an ended session (it leaves the idle
// list, and a DELETE of it answers 404). Called by the conversation.key-shredder processor.
func (s *Service) FinishEnd(ctx context.Context, t tenant.ID, id string, endRev uint64) error {
	if s.Keys == nil || endRev == 0 {
		return nil
	}
	st, err := sessionStream(t, id)
	if err != nil {
		return err
	}
	evs, err := s.Store.ReadStream(ctx, st, 0, int(endRev))
	if err != nil {
		return fmt.Errorf("read %s: %w", st, err)
	}
	// The ended life began at the last SessionStarted before the end (a session id started anew
	// after a deletion has several lives, each under its own key).
	life, found := uint64(0), false
	for _, e := range evs {
		if e.Revision < endRev && e.Type == events.TypeSessionStarted {
			life, found = e.Revision, true
		}
	}
	if !found {
		return nil // nothing was sealed before this end
	}
	cur, err := s.load(ctx, t, id)
	if err != nil {
		return err
	}
	if !cur.Live() && (cur.Deleted || cur.Expired) && cur.Life == life {
		return s.finishEnd(ctx, t, id, cur)
	}
	// A later life began since: only the ended life's key is this event's business.
	return s.erase(ctx, t, id, life)
}
