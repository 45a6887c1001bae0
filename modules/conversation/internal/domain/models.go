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
	// Skipped, when set, hears of every configured model left out because models.allowed does not
	// list it (for a log line).
	Skipped func(model, from string)
}

// SelectModels applies the precedence request → override → tenant → server default and appends
// the tenant's fallbacks (duplicates dropped). A non-empty models.allowed binds them all: a
// requested model it does not list is refused (403 model_not_allowed), and an override, default or
// fallback it does not list is skipped (and reported to Skipped); when none of those is allowed,
// the first allowed model is used. Invalid configured ids are skipped rather than failing every
// turn.
func SelectModels(c ModelChoice) ([]ai.ModelID, error) {
	allowed := func(id ai.ModelID) bool { return len(c.Allowed) == 0 || slices.Contains(c.Allowed, id.String()) }
	var chosen ai.ModelID
	if c.Requested != "" {
		id, err := ai.ParseModelID(c.Requested)
		if err != nil {
			return nil, apperr.Invalid("invalid_model_id", "body.modelId", err.Error())
		}
		if !allowed(id) {
			return nil, apperr.New(apperr.KindForbidden, "model_not_allowed", "model "+id.String()+" is not in this tenant's allowed models")
		}
		chosen = id
	}
	for _, m := range []struct{ id, from string }{{c.Override, "override"}, {c.TenantDefault, "models.chat"}, {c.ServerDefault, "server default"}} {
		if !chosen.IsZero() {
			break
		}
		id, err := ai.ParseModelID(m.id)
		if err != nil {
			continue
		}
		if !allowed(id) {
			if c.Skipped != nil {
				c.Skipped(id.String(), m.from)
			}
			continue
		}
		chosen = id
	}
	for _, a := range c.Allowed {
		if !chosen.IsZero() {
			break
		}
		if id, err := ai.ParseModelID(a); err == nil {
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
		if !allowed(id) {
			if c.Skipped != nil {
				c.Skipped(id.String(), "models.fallbacks")
			}
			continue
		}
		out = append(out, id)
	}
	return out, nil
}
