package app

import (
	"context"
	"errors"

	"github.com/crispy-enigma/crispy/modules/conversation/internal/domain"
	"github.com/crispy-enigma/crispy/platform/ai"
	"github.com/crispy-enigma/crispy/platform/metering"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// ErrOfflineOnly is Complete's answer when the tenant's chat model is the offline one: the caller
// (a tool, a RAG answer) then uses its own deterministic method, which does that job better than the
// offline model would.
var ErrOfflineOnly = errors.New("the tenant's chat model is the offline model")

// Complete runs a one-off completion with the tenant's model chain (the server override, the
// tenant's models.chat, the server default, then the tenant's fallbacks), outside any session. The
// call is metered (Begin/Done): booked against the tenant's token budget first (429
// budget_exceeded when it does not fit, and no model is called), then recorded with purpose.
func (s *Service) Complete(ctx context.Context, t tenant.ID, purpose string, msgs []ai.Message, maxTokens int) (ai.Answer, error) {
	cfg, err := s.config(ctx, t)
	if err != nil {
		return ai.Answer{}, err
	}
	models, err := domain.SelectModels(domain.ModelChoice{Override: s.Settings.OverrideModel, TenantDefault: cfg.Models.Chat,
		ServerDefault: s.Settings.DefaultModel, Fallbacks: cfg.Models.Fallbacks})
	if err != nil {
		return ai.Answer{}, err
	}
	if models[0] == ai.Offline {
		return ai.Answer{}, ErrOfflineOnly
	}
	prompt := 0
	for _, m := range msgs {
		prompt += domain.EstimateTokens(m.Content)
	}
	completion := maxTokens
	if completion <= 0 {
		completion = int(s.defaultCompletion(cfg, models))
	}
	h, granted, err := s.book(ctx, t, int64(prompt), int64(completion), models)
	if err != nil {
		return ai.Answer{}, err
	}
	// The model is told to write no more than the budget leaves (only when that matters: with no
	// ceiling, the caller's choice, 0 included, goes as it is).
	if h.ceiling || granted < int64(completion) {
		maxTokens = int(granted)
	}
	start := s.Now()
	ans, err := s.Router.Complete(ctx, models, ai.Request{Messages: msgs, MaxTokens: maxTokens})
	model, attempts := ans.Model, ans.Attempts
	var fe *ai.FailedError
	if errors.As(err, &fe) {
		model, attempts = fe.Model, fe.Attempts
	}
	if model.IsZero() {
		model = models[0]
	}
	call := metering.Call{Purpose: purpose, Operation: metering.OperationChat, Model: model.String(), Latency: s.Now().Sub(start), Err: err}
	for _, a := range attempts {
		call.Fallbacks = append(call.Fallbacks, metering.Attempt{Model: a.Model.String(), Reason: a.Reason})
	}
	switch {
	case ans.Usage.Reported:
		call.PromptTokens, call.CompletionTokens = ans.Usage.PromptTokens, ans.Usage.CompletionTokens
	case err == nil:
		call.PromptTokens, call.CompletionTokens, call.Estimated = prompt, domain.EstimateTokens(ans.Content), true
	}
	if derr := h.Done(ctx, call); derr != nil {
		// The answer was paid for; losing its record is logged rather than thrown away with it.
		s.Log.ErrorContext(ctx, "model call not recorded as usage", "tenant", t.String(), "purpose", purpose, "error", derr)
	}
	return ans, err
}
