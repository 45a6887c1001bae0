package domain

import (
	"slices"

	"github.com/crispy-enigma/crispy/platform/ai"
	"github.com/crispy-enigma/crispy/platform/apperr"
)

// ModelChoice is the input of model selection (SPEC §3).
type ModelChoice struct {
	Requested     string   // the request's modelId
	Override      string   // the server's CRISPY_MODEL_ID
	TenantDefault string   // the tenant's models.chat
	ServerDefault string   // the server's default (builtin:offline when nothing is configured)
	Fallbacks     []string // the tenant's models.fallbacks
	Allowed       []string // the tenant's models.allowed
}

// SelectModels applies the precedence request → override → tenant → server default, checks a
// requested model against the tenant's allow-list, and appends the tenant's fallbacks (duplicates
// dropped). Invalid configured ids are skipped rather than failing every turn.
func SelectModels(c ModelChoice) ([]ai.ModelID, error) {
	var chosen ai.ModelID
	if c.Requested != "" {
		id, err := ai.ParseModelID(c.Requested)
		if err != nil {
			return nil, apperr.Invalid("invalid_model_id", "body.modelId", err.Error())
		}
		if len(c.Allowed) > 0 && !slices.Contains(c.Allowed, id.String()) {
			return nil, apperr.New(apperr.KindForbidden, "model_not_allowed", "model "+id.String()+" is not in this tenant's allowed models")
		}
		chosen = id
	}
	for _, s := range []string{c.Override, c.TenantDefault, c.ServerDefault} {
		if !chosen.IsZero() {
			break
		}
		if id, err := ai.ParseModelID(s); err == nil {
			chosen = id
		}
	}
	if chosen.IsZero() {
		chosen = ai.Offline
	}
	out := []ai.ModelID{chosen}
	for _, f := range c.Fallbacks {
		id, err := ai.ParseModelID(f)
		if err != nil || slices.Contains(out, id) {
			continue
		}
		out = append(out, id)
	}
	return out, nil
}
