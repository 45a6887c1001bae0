package app

import (
	"context"

	"github.com/crispy-enigma/crispy/platform/ai"
	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// Speak is POST /tts: gated by the tenant's features.tts, answered by the configured speech provider.
func (s *Service) Speak(ctx context.Context, t tenant.ID, req ai.SpeechRequest) (ai.Audio, error) {
	cfg, err := s.config(ctx, t)
	if err != nil {
		return ai.Audio{}, err
	}
	if !cfg.Feature("tts") {
		return ai.Audio{}, apperr.New(apperr.KindForbidden, "tts_not_enabled", "text to speech is not enabled for this tenant (features.tts)")
	}
	if s.Speaker == nil {
		return ai.Audio{}, apperr.New(apperr.KindUnavailable, "tts_unavailable",
			"no speech provider is configured: set CRISPY_OPENAI_BASE_URL (and CRISPY_OPENAI_API_KEY) for an OpenAI-compatible /v1/audio/speech, "+
				"or CRISPY_CF_ACCOUNT_ID and CRISPY_CF_API_TOKEN for the Workers AI speech model")
	}
	a, err := s.Speaker.Speak(ctx, req)
	if err != nil {
		if ai.ReasonOf(err) == "bad_request" {
			return ai.Audio{}, apperr.Wrap(err, apperr.KindInvalid, "tts_rejected", "the speech provider rejected the request")
		}
		return ai.Audio{}, apperr.Wrap(err, apperr.KindBadGateway, "tts_failed", "the speech provider failed")
	}
	return a, nil
}
