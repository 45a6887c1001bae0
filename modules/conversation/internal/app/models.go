package app

import (
	"context"
	"sort"
	"strings"

	"github.com/crispy-enigma/crispy/modules/conversation/internal/domain"
	tenancyevents "github.com/crispy-enigma/crispy/modules/tenancy/events"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// ModelEntry is one model a tenant's OpenAI client may name (GET /v1/models).
type ModelEntry struct {
	ID      string // provider:model or an alias
	OwnedBy string // the provider ("alias" targets name theirs)
	Target  string // an alias's model, "" for a model
}

func (s *Service) modelNames(cfg tenancyevents.TenantConfig) domain.ModelNames {
	return domain.ModelNames{TenantAliases: cfg.Models.Aliases, ServerAliases: s.Settings.ModelAliases, Providers: s.Router.Providers(),
		Known: knownModels(cfg.Models.Allowed, []string{cfg.Models.Chat}, cfg.Models.Fallbacks, []string{s.Settings.OverrideModel, s.Settings.DefaultModel})}
}

// ResolveModel turns a client's model name into provider:model for the tenant ("" : its default).
func (s *Service) ResolveModel(ctx context.Context, t tenant.ID, name string) (string, error) {
	cfg, err := s.config(ctx, t)
	if err != nil {
		return "", err
	}
	return s.resolveModelName(name, cfg)
}

// resolveModelName is domain.ResolveModelName for the tenant's configuration. A provider:model
// name of a configured provider (what most calls send) resolves to itself there before anything
// else is looked at, so it is answered without building the lists of names (a sorted provider
// list, the known models' set) that only the other forms need.
func (s *Service) resolveModelName(name string, cfg tenancyevents.TenantConfig) (string, error) {
	if p, _, ok := strings.Cut(name, ":"); ok && s.Router.Has(p) {
		return name, nil
	}
	return domain.ResolveModelName(name, s.modelNames(cfg))
}

// Models lists what the tenant may name: its allowed models (or, with no allow-list, the models it
// is configured with and the server's default) and the aliases, the tenant's and the server's,
// whose model it may use. Nothing of another tenant's configuration is in it.
func (s *Service) Models(ctx context.Context, t tenant.ID) ([]ModelEntry, error) {
	cfg, err := s.config(ctx, t)
	if err != nil {
		return nil, err
	}
	n := s.modelNames(cfg)
	allowed := func(id string) bool {
		if len(cfg.Models.Allowed) == 0 {
			return true
		}
		for _, a := range cfg.Models.Allowed {
			if a == id {
				return true
			}
		}
		return false
	}
	var out []ModelEntry
	seen := map[string]bool{}
	for _, id := range n.Known {
		if seen[id] || !allowed(id) {
			continue
		}
		seen[id] = true
		p, _, _ := strings.Cut(id, ":")
		out = append(out, ModelEntry{ID: id, OwnedBy: p})
	}
	add := func(aliases map[string]string) {
		for a, target := range aliases {
			if seen[a] || !allowed(target) {
				continue
			}
			seen[a] = true
			p, _, _ := strings.Cut(target, ":")
			out = append(out, ModelEntry{ID: a, OwnedBy: p, Target: target})
		}
	}
	add(cfg.Models.Aliases)
	add(s.Settings.ModelAliases)
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}
