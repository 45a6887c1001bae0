package observability_test

import (
	"context"
	"fmt"
	"syscall"
	"testing"

	"github.com/crispy-enigma/crispy/modules/observability"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// full refuses every append as a full disk does; reads go on.
type full struct{ eventstore.Store }

func (full) Append(context.Context, tenant.Stream, eventstore.ExpectedRevision, ...eventstore.EventData) (eventstore.AppendResult, error) {
	return eventstore.AppendResult{}, fmt.Errorf("%w: %w", eventstore.ErrStorageUnavailable, syscall.ENOSPC)
}

// GET /audit/verify and observability.Verify write nothing: no AuditAccessed record, nothing at all,
// and they answer while the store refuses writes.
func TestVerifyWritesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, opts{})
	seedSessions(e)
	ctx := context.Background()
	before, _ := e.store.LastPosition(ctx)

	r := e.audit("/audit/verify", "acme")
	if r.status != 200 || r.body["ok"] != true {
		t.Fatalf("verify: %d %s", r.status, r.raw)
	}
	if _, err := observability.Verify(ctx, e.store, acme, nil); err != nil {
		t.Fatal(err)
	}
	if after, _ := e.store.LastPosition(ctx); after != before {
		t.Fatalf("verification appended %d events", after-before)
	}
	if n := len(e.accesses(acme)); n != 0 {
		t.Fatalf("verification recorded %d audit accesses", n)
	}

	he := newEnv(t, opts{store: e.store, deps: func(d *observability.Deps) { d.Store = full{e.store} }})
	if r := he.audit("/audit/verify", "acme"); r.status != 200 || r.body["ok"] != true || num(t, r.body, "eventsChecked") != 5 {
		t.Fatalf("verify while the store refuses writes: %d %s", r.status, r.raw)
	}
}

// A read that shows content is still recorded, and while the store refuses writes it is refused with
// a 503 too (the audit of the read cannot be kept).
func TestAuditReadDuringAStorageFaultIs503(t *testing.T) {
	t.Parallel()
	e := newEnv(t, opts{})
	seedSessions(e)
	he := newEnv(t, opts{store: e.store, deps: func(d *observability.Deps) { d.Store = full{e.store} }})
	if r := he.audit("/audit/events", "acme"); r.status != 503 {
		t.Fatalf("audit events while the store refuses writes: %d %s", r.status, r.raw)
	}
}
