package observability_test

import (
	"context"
	"net/http"
	"sync"
	"testing"

	"github.com/crispy-enigma/crispy/platform/auditlog"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// holdingReads holds the first ReadTenant after it is armed (a verification's read) until released.
type holdingReads struct {
	eventstore.Store
	mu      sync.Mutex
	armed   bool
	entered chan struct{}
	release chan struct{}
}

func (h *holdingReads) ReadTenant(ctx context.Context, t tenant.ID, from eventstore.Position, max int) ([]eventstore.Event, error) {
	h.mu.Lock()
	armed := h.armed
	h.armed = false
	h.mu.Unlock()
	if armed {
		close(h.entered)
		select {
		case <-h.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return h.Store.ReadTenant(ctx, t, from, max)
}

// POST /audit/verify recomputes a whole log on every core: a second one of the same tenant while
// one runs is refused with 429 and retry-after (problem JSON), not run beside it; another tenant's
// is not held up by it, and the tenant's next one runs once the first is done.
func TestConcurrentVerificationsOfATenantAreRefused(t *testing.T) {
	t.Parallel()
	hold := &holdingReads{entered: make(chan struct{}), release: make(chan struct{})}
	e, _ := logEnv(t, nil, func(s eventstore.Store) eventstore.Store { hold.Store = s; return hold })
	seedSessions(e)
	e.sync()
	cp := decode[auditlog.Checkpoint](t, e.do(http.MethodGet, "/audit/checkpoint", "acme", key0, nil))
	bcp := decode[auditlog.Checkpoint](t, e.do(http.MethodGet, "/audit/checkpoint", "beta", key0, nil))
	hold.mu.Lock()
	hold.armed = true
	hold.mu.Unlock()
	first := make(chan resp, 1)
	go func() { first <- e.do(http.MethodPost, "/audit/verify", "acme", key0, cp) }()
	<-hold.entered
	r := e.do(http.MethodPost, "/audit/verify", "acme", key0, cp)
	wantProblem(t, r, http.StatusTooManyRequests, "audit_verify_running")
	if r.header.Get("Retry-After") == "" {
		t.Fatalf("refusal without retry-after: %v", r.header)
	}
	if b := e.do(http.MethodPost, "/audit/verify", "beta", key0, bcp); b.status != 200 || b.body["ok"] != true {
		t.Fatalf("beta's verification while acme's runs: %d %s", b.status, b.raw)
	}
	close(hold.release)
	if f := <-first; f.status != 200 || f.body["ok"] != true {
		t.Fatalf("the running verification: %d %s", f.status, f.raw)
	}
	if a := e.do(http.MethodPost, "/audit/verify", "acme", key0, cp); a.status != 200 || a.body["ok"] != true {
		t.Fatalf("acme's next verification: %d %s", a.status, a.raw)
	}
}
