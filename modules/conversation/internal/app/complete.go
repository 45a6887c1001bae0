package app

import (
	"context"
	"errors"

	"github.com/crispy-enigma/crispy/modules/conversation/internal/domain"
	"github.com/crispy-enigma/crispy/platform/ai"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// ErrOfflineOnly is Complete's answer when the tenant's chat model is the offline one: the caller
// (a tool, a RAG answer) then uses its own deterministic method, which does that job better than the
// offline model would.
var ErrOfflineOnly = errors.New("the tenant's chat model is the offline model")

// Complete runs a one-off completion with the tenant's model chain (the server override, the
// tenant's models.chat, the server default, then the tenant's fallbacks), outside any session.
func (s *Service) Complete(ctx context.Context, t tenant.ID, msgs []ai.Message, maxTokens int) (ai.Answer, error) {
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
	return s.Router.Complete(ctx, models, ai.Request{Messages: msgs, MaxTokens: maxTokens})
}
