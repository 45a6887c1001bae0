package app

import (
	"context"
	"fmt"

	"github.com/crispy-enigma/crispy/modules/conversation/events"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/request"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// A /v1/chat/completions call that names no session (x-session-id) is stateless, as OpenAI's API
// is: the client sends the whole conversation each time, and a session per call would only have
// grown the store and the session list for ever. The call is still recorded, as usage: one
// CompletionRecorded (tokens, model, latency, outcome; no prompt and no answer) in the tenant's
// completions stream of the day, which usage, cost and the token budget count like a chat turn.

// completionsStream is t-{tenant}.completions-{yyyymmdd} of the UTC day of now.
func (s *Service) completionsStream(t tenant.ID) (tenant.Stream, error) {
	return tenant.NewStream(t, events.CompletionsCategory, s.Now().UTC().Format("20060102"))
}

// recordCompletion appends the usage event of a stateless call's outcome (data is the
// AssistantMessageCompleted or AssistantMessageFailed a session turn would have recorded) and
// settles its budget reservation.
func (s *Service) recordCompletion(ctx context.Context, in TurnInput, callID string, data any, tokens int64) error {
	rec := events.CompletionRecorded{CallID: callID, RequestID: request.From(ctx).ID, RequestedModel: in.ModelID, UserID: in.UserID}
	switch d := data.(type) {
	case events.AssistantMessageCompleted:
		rec.Model, rec.Usage, rec.LatencyMs, rec.TTFTMs, rec.Fallbacks, rec.Offline = d.Model, d.Usage, d.LatencyMs, d.TTFTMs, d.Fallbacks, d.Offline
		rec.Outcome = events.OutcomeCompleted
	case events.AssistantMessageFailed:
		rec.Model, rec.Usage, rec.LatencyMs, rec.TTFTMs, rec.Fallbacks = d.Model, d.Usage, d.LatencyMs, d.TTFTMs, d.Fallbacks
		rec.Outcome, rec.Cancelled = d.Code, d.Cancelled
	default:
		return fmt.Errorf("record completion %s: unexpected outcome %T", callID, data)
	}
	ev, err := eventstore.NewEventData(events.TypeCompletionRecorded, rec)
	if err != nil {
		return err
	}
	st, err := s.completionsStream(in.Tenant)
	var res eventstore.AppendResult
	if err == nil {
		res, err = s.Store.Append(ctx, st, eventstore.Any, ev)
		if err != nil {
			err = fmt.Errorf("append to %s: %w", st, err)
		}
	}
	if err != nil {
		s.Ledger.Release(in.Tenant.String(), callID)
		return err
	}
	s.Ledger.Settle(in.Tenant.String(), callID, tokens, res.Position)
	return nil
}
