package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/crispy-enigma/crispy/modules/conversation/events"
	"github.com/crispy-enigma/crispy/platform/ai"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/metering"
	"github.com/crispy-enigma/crispy/platform/request"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// The metering port (platform/metering) for the model calls other modules make: a call is booked
// against the tenant's token budget like a chat turn (the same ledger, so the two cannot overshoot a
// ceiling together) and recorded as one CompletionRecorded with its purpose in the tenant's
// completions stream of the day, which usage, cost and the token ledger already count.

// Begin books up to tokens of t's budget for one call: 429 budget_exceeded when they do not fit.
func (s *Service) Begin(ctx context.Context, t tenant.ID, tokens int) (metering.Hold, error) {
	h, _, err := s.book(ctx, t, int64(max(tokens, 1)), 0, nil)
	if err != nil {
		return nil, err
	}
	return h, nil
}

// book reserves prompt tokens and up to want completion tokens of t's ceilings (daily, monthly,
// tokens per minute) like a chat turn, and returns the completion tokens granted: the max_tokens to
// send upstream (what the tightest ceiling leaves). models are those the call may reach (nil: not
// known yet; see reserveCompletion).
func (s *Service) book(ctx context.Context, t tenant.ID, prompt, want int64, models []ai.ModelID) (h *hold, granted int64, err error) {
	cfg, err := s.config(ctx, t)
	if err != nil {
		return nil, 0, err
	}
	id := newID()
	granted, err = s.reserveCompletion(ctx, t, id, prompt, want, cfg, models)
	if err != nil {
		return nil, 0, err
	}
	return &hold{s: s, t: t, id: id, ceiling: s.hasCeiling(ctx, t, cfg)}, granted, nil
}

type hold struct {
	s       *Service
	t       tenant.ID
	id      string
	ceiling bool // t has a token ceiling: the call must send its granted max_tokens
}

func (h *hold) Cancel() { h.s.Ledger.Release(h.t.String(), h.id) }

// Done appends the call's CompletionRecorded (even when the caller has gone away: the tokens were
// spent) and settles the booking at its position.
func (h *hold) Done(ctx context.Context, c metering.Call) error {
	ctx = context.WithoutCancel(ctx)
	info := request.From(ctx)
	rec := events.CompletionRecorded{CallID: h.id, RequestID: info.ID, UserID: info.User, Model: c.Model, Purpose: c.Purpose,
		Operation: c.Operation, LatencyMs: ms(c.Latency), Outcome: events.OutcomeCompleted,
		Usage: events.Usage{PromptTokens: c.PromptTokens, CompletionTokens: c.CompletionTokens,
			TotalTokens: c.PromptTokens + c.CompletionTokens, Estimated: c.Estimated}}
	for _, a := range c.Fallbacks {
		rec.Fallbacks = append(rec.Fallbacks, events.FallbackAttempt{Model: a.Model, Reason: a.Reason})
	}
	if c.Err != nil {
		rec.Outcome = metering.OutcomeFailed
		if errors.Is(c.Err, context.Canceled) {
			rec.Outcome, rec.Cancelled = events.CodeCancelled, true
		}
	}
	ev, err := eventstore.NewEventData(events.TypeCompletionRecorded, rec)
	if err != nil {
		h.Cancel()
		return err
	}
	st, err := h.s.completionsStream(h.t)
	if err != nil {
		h.Cancel()
		return err
	}
	res, err := h.s.Store.Append(ctx, st, eventstore.Any, ev)
	if err != nil {
		h.Cancel()
		return fmt.Errorf("record %s call of %s: append to %s: %w", c.Purpose, h.t, st, err)
	}
	h.s.Ledger.Settle(h.t.String(), h.id, int64(rec.Usage.TotalTokens), res.Position)
	return nil
}
