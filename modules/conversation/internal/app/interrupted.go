package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/crispy-enigma/crispy/modules/conversation/events"
	"github.com/crispy-enigma/crispy/modules/conversation/internal/domain"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/request"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// CloseInterrupted closes, as interrupted, every turn that a previous run of the server left with a
// user message and no outcome (it crashed or was killed mid-turn), so that history and the audit
// trail say what happened and the session takes its next turn. The sessions to look at come from
// the session list read model (caught up before this runs), not from reading every stream. It
// returns how many turns it closed.
func (s *Service) CloseInterrupted(ctx context.Context) (int, error) {
	ctx = request.With(ctx, request.Info{ID: "recovery-" + newID(), Actor: "system:conversation-recovery"})
	closed := 0
	var errs []error
	for _, ref := range s.Index.WithOpenTurns() {
		t, err := tenant.Parse(ref.Tenant)
		if err != nil {
			continue
		}
		_, res, err := s.update(ctx, t, ref.SessionID, func(cur *domain.Session) ([]eventstore.EventData, error) {
			evs, err := s.closeInterrupted(cur, "")
			if err != nil || len(evs) == 0 {
				return nil, errNothing // nothing left behind (or a turn that still runs)
			}
			return evs, nil
		})
		switch {
		case err == nil:
			closed += len(res.Events)
		case errors.Is(err, errNothing):
		default:
			errs = append(errs, fmt.Errorf("close interrupted turns of session %s of %s: %w", ref.SessionID, ref.Tenant, err))
		}
	}
	if closed > 0 {
		s.Metrics.interrupted(closed)
	}
	return closed, errors.Join(errs...)
}

// closeInterrupted decides, for a session about to take turn self ("" for none), what to do with
// its open turns: one left behind (recorded before this process started, or long past any turn's
// deadline, or known here to have ended without its outcome) gets an AssistantMessageFailed
// "interrupted", returned to be appended before anything else; one that may still run elsewhere
// refuses the new turn with 409 turn_in_progress.
func (s *Service) closeInterrupted(cur *domain.Session, self string) ([]eventstore.EventData, error) {
	if !cur.Live() || len(cur.Open) == 0 {
		return nil, nil
	}
	// No turn runs longer than its deadline plus the resume window, and its outcome is recorded
	// within the record timeout after that.
	stale := time.Now().Add(-(s.Settings.TurnTimeout + s.Settings.ResumeWindow + time.Minute))
	var out []eventstore.EventData
	for _, o := range cur.Open {
		if o.TurnID == self {
			continue
		}
		if !o.Since.Before(s.Started) && !o.Since.Before(stale) && !s.Running.ended(o.TurnID) {
			return nil, turnInProgress()
		}
		ev, err := eventstore.NewEventData(events.TypeAssistantMessageFailed, events.AssistantMessageFailed{SessionID: cur.ID, TurnID: o.TurnID,
			Code: events.CodeInterrupted, Message: "the server stopped before the turn ended; the message is saved in the history, send it again",
			Usage: events.Usage{Estimated: true}})
		if err != nil {
			return nil, err
		}
		out = append(out, ev)
	}
	return out, nil
}
