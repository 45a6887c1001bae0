package retrieval_test

import (
	"context"
	"sync"
	"testing"

	"github.com/crispy-enigma/crispy/modules/retrieval"
	tenancyevents "github.com/crispy-enigma/crispy/modules/tenancy/events"
	"github.com/crispy-enigma/crispy/platform/ai/embeddings"
	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/bus/bustest"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/httpapi"
	"github.com/crispy-enigma/crispy/platform/httpapi/httpapitest"
	"github.com/crispy-enigma/crispy/platform/search/embedded"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// servedTenants is a tenant policy serving a set of tenants that the test changes.
type servedTenants struct {
	mu     sync.Mutex
	served map[string]bool
}

func (p *servedTenants) set(id string, on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.served[id] = on
}

func (p *servedTenants) Config(_ context.Context, t tenant.ID) (tenancyevents.TenantConfig, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.served[t.String()] {
		return tenancyevents.TenantConfig{}, apperr.NotFound("tenant_not_found", "unknown tenant")
	}
	return tenancyevents.TenantConfig{ID: t.String()}, nil
}

// The documents of a tenant the server no longer serves (removed from the tenants file) are still in
// the log. A replica that builds its index from the log indexes them with the model they were
// recorded with: before, the index consumer failed on each of them (tenant_not_found) and, after its
// retries, left it out, so the tenant came back with documents missing from search.
func TestAnUnservedTenantsDocumentsAreIndexedAndFoundWhenItReturns(t *testing.T) {
	t.Parallel()
	store := eventstoretest.NewMemory()
	writer := newEnv(t, opts{store: store})
	writer.mustIngest("acme", "a1", "Lighthouses guide ships along rocky coasts at night.")
	writer.mustIngest("gone", "g1", "Volcanic soil grows excellent coffee on steep slopes.")

	policy := &servedTenants{served: map[string]bool{"acme": true}}
	ix, err := embedded.Open(embedded.Config{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := embeddings.NewResolver(embeddings.Config{})
	if err != nil {
		t.Fatal(err)
	}
	mod, err := retrieval.New(retrieval.Deps{Store: store, Index: ix, Embedders: res, Policy: policy})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := httpapi.New(httpapi.Config{}, httpapi.Deps{Guard: httpapitest.HeaderGuard{}})
	if err != nil {
		t.Fatal(err)
	}
	b := bustest.NewBus(t, store)
	mod.Register(srv.API, b)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mod.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	bustest.Start(t, b)
	if err := b.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	replica := &env{t: t, h: srv.Handler(), mod: mod, store: store, bus: b}
	if r := replica.search("acme", map[string]any{"query": "lighthouses ships", "answer": false}); r.status != 200 || !hasDoc(r, "a1") {
		t.Fatalf("acme on the new replica: %d %s", r.status, r.raw)
	}
	policy.set("gone", true) // the tenant is back in the tenants file
	r := replica.search("gone", map[string]any{"query": "volcanic coffee", "answer": false})
	if r.status != 200 || !hasDoc(r, "g1") {
		t.Fatalf("the returning tenant's document is missing from the index built while it was not served: %d %s", r.status, r.raw)
	}
	if r := replica.search("acme", map[string]any{"query": "volcanic coffee", "answer": false}); hasDoc(r, "g1") {
		t.Fatalf("acme found gone's document: %s", r.raw)
	}
}

func hasDoc(r resp, docID string) bool {
	for _, s := range sources(r) {
		if s["docId"] == docID {
			return true
		}
	}
	return false
}
