package retrieval_test

import (
	"context"
	"testing"

	tenancyevents "github.com/crispy-enigma/crispy/modules/tenancy/events"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// settingsPolicy gives each tenant its search settings (the tenants file's `search:`).
type settingsPolicy map[string]tenancyevents.Search

func (p settingsPolicy) Config(_ context.Context, t tenant.ID) (tenancyevents.TenantConfig, error) {
	return tenancyevents.TenantConfig{ID: t.String(), Search: p[t.String()]}, nil
}

// A tenant's search.mode is its requests' default; a request's mode wins; another tenant keeps
// the server's default (hybrid).
func TestTenantSearchSettingsAreTheDefault(t *testing.T) {
	t.Parallel()
	e := newEnv(t, opts{policy: settingsPolicy{"lex": {Mode: "lexical", RRFK: 10}}})
	for _, tn := range []string{"lex", "acme"} {
		e.mustIngest(tn, "vac", vacation)
	}
	// No shared word: the lexical tenant finds nothing by default, the vector mode finds the
	// nearest passage, and so does the hybrid default of the other tenant.
	q := map[string]any{"query": "xyzzy plugh", "answer": false}
	if r := e.search("lex", q); r.status != 200 || len(sources(r)) != 0 {
		t.Fatalf("tenant lex (search.mode lexical): %s", r.raw)
	}
	if r := e.search("lex", map[string]any{"query": "xyzzy plugh", "answer": false, "mode": "vector"}); r.status != 200 || len(sources(r)) != 1 {
		t.Fatalf("tenant lex with mode vector: %s", r.raw)
	}
	if r := e.search("acme", q); r.status != 200 || len(sources(r)) != 1 {
		t.Fatalf("tenant acme (hybrid by default): %s", r.raw)
	}
}
