package domain

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/crispy-enigma/crispy/platform/ai"
	"github.com/crispy-enigma/crispy/platform/apperr"
)

// ModelNames is what a model name an OpenAI client sends may stand for.
type ModelNames struct {
	TenantAliases map[string]string // the tenant's models.aliases (win over the server's)
	ServerAliases map[string]string
	// Known are the models the tenant is configured with (allowed, chat, fallbacks) and the
	// server's default and override, as "provider:model".
	Known []string
	// Providers are the providers configured on the server.
	Providers []string
}

// ResolveModelName turns a client's model name into "provider:model" ("" for "default" or no name:
// the tenant's default chain). A name is, in this order: "provider:model" of a configured provider;
// an alias of the tenant, then of the server; a bare name ("gpt-4o-mini", an Ollama "llama3:8b") that
// one known model carries, or, when none does, that the one configured provider other than the
// offline model would serve (a name with ':' only when a known model carries it). Two candidates: 400 model_ambiguous naming them; none: 404
// model_not_found naming the choices.
func ResolveModelName(name string, n ModelNames) (string, error) {
	if name == "" || name == "default" {
		return "", nil
	}
	if p, _, ok := strings.Cut(name, ":"); ok && slices.Contains(n.Providers, p) {
		return name, nil
	}
	if t, ok := n.TenantAliases[name]; ok {
		return t, nil
	}
	if t, ok := n.ServerAliases[name]; ok {
		return t, nil
	}
	var cands []string
	for _, k := range n.Known {
		if id, err := ai.ParseModelID(k); err == nil && id.Model == name && !slices.Contains(cands, k) {
			cands = append(cands, k)
		}
	}
	if len(cands) == 0 && !strings.Contains(name, ":") {
		// A name like provider:model names its provider; one that is not configured is unknown,
		// not a bare name for every other provider.
		for _, p := range n.Providers {
			if p != ai.Offline.Provider {
				cands = append(cands, p+":"+name)
			}
		}
	}
	sort.Strings(cands)
	switch len(cands) {
	case 1:
		if _, err := ai.ParseModelID(cands[0]); err != nil {
			return "", apperr.Invalid("invalid_model_id", "body.model", err.Error())
		}
		return cands[0], nil
	case 0:
		return "", apperr.NotFound("model_not_found", fmt.Sprintf("model %q is not a configured model, alias or provider:model; choices: %s",
			name, strings.Join(n.Choices(), ", ")))
	default:
		return "", apperr.Invalid("model_ambiguous", "body.model", fmt.Sprintf("model %q could be any of %s; send one of them", name, strings.Join(cands, ", ")))
	}
}

// Choices are the names a client may send: "default", the aliases and the known models, sorted.
func (n ModelNames) Choices() []string {
	out := []string{"default"}
	for a := range n.TenantAliases {
		out = append(out, a)
	}
	for a := range n.ServerAliases {
		if _, shadowed := n.TenantAliases[a]; !shadowed {
			out = append(out, a)
		}
	}
	for _, k := range n.Known {
		if !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	sort.Strings(out[1:])
	return out
}
