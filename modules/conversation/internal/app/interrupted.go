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

// CloseInterrupted closes, as interrupted, every turn that an earlier run of this replica left with
// a user message and no outcome (it crashed or was killed mid-turn), and every turn of any replica
// past the longest a turn can run, so that history and the audit trail say what happened and the
// session takes its next turn. A recent turn of another replica is left alone: it may be streaming
// there now. The sessions to look at come from the session list read model (caught up before this
// runs), not from reading every stream. It returns how many turns it closed.
func (s *Service) CloseInterrupted(ctx context.Context) (int, error) {
	ctx = request.With(ctx, request.Info{ID: "recovery-" + newID(), Actor: "system:conversation-recovery"})
	refs, err := s.Sessions.WithOpenTurns(ctx)
	if err != nil {
		return 0, err
	}
	closed := 0
	var errs []error
	for _, ref := range refs {
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
// its open turns: one left behind (see leftBehind) gets an AssistantMessageFailed "interrupted",
// returned to be appended before anything else; one that may still run, here or on another
// replica, refuses the new turn with 409 turn_in_progress.
func (s *Service) closeInterrupted(cur *domain.Session, self string) ([]eventstore.EventData, error) {
	if !cur.Live() || len(cur.Open) == 0 {
		return nil, nil
	}
	var out []eventstore.EventData
	for _, o := range cur.Open {
		if o.TurnID == self {
			continue
		}
		if !s.leftBehind(o) {
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

// leftBehind tells an open turn that nothing runs any more:
//   - one past the longest a turn can run (its deadline plus the resume window, its outcome recorded
//     within a minute after that), whichever replica took it;
//   - one an earlier run of this replica took: a replica is one process at a time (its data folder's
//     read models are locked by the process that runs);
//   - one of this process known to have ended without its outcome (the store refused it);
//   - one recorded before turns named their replica, and before this process started (the
//     behaviour of the single-process deployments that recorded it).
//
// Another replica's recent turn may be streaming there now: it is not left behind until stale.
func (s *Service) leftBehind(o domain.OpenTurn) bool {
	stale := time.Now().Add(-(s.Settings.TurnTimeout + s.Settings.ResumeWindow + time.Minute))
	switch {
	case o.Since.Before(stale):
		return true
	case o.Instance == "":
		return o.Since.Before(s.Started) || s.Running.ended(o.TurnID)
	case o.Instance != s.Instance:
		return false
	case o.Run != s.Run:
		return true
	default:
		return s.Running.ended(o.TurnID)
	}
}
