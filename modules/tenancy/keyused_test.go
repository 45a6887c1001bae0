package tenancy_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/modules/tenancy"
	"github.com/crispy-enigma/crispy/modules/tenancy/events"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// A key's lastUsedAt is shared: a key used only on replica a shows as used in replica b's key list
// (each replica records its keys' use as an event at most once per KeyUsedEvery), and after a
// restart (a replica that never saw the key); a key never used shows none. Before, it was what
// the replica answering the list saw, in memory: b and a restarted replica showed nothing.
func TestKeyLastUsedIsSharedAndSurvivesRestarts(t *testing.T) {
	store := eventstoretest.NewMemory()
	fast := func(c *tenancy.Config) { c.KeyUsedEvery = 50 * time.Millisecond }
	a := newAdminServer(t, store, "", fast)
	b := newAdminServer(t, store, "", fast)
	want(t, a.do(t, call{method: http.MethodPost, path: "/admin/tenants", admin: adminKey, body: map[string]any{"id": "acme"}}), 201, "")
	used, usedID := a.newKey(t, "acme", map[string]any{"name": "used"})
	_, idleID := a.newKey(t, "acme", map[string]any{"name": "idle"})
	want(t, a.do(t, call{path: "/chat/probe", key: used}), 200, "")

	lastUsed := func(s *adminServer) map[string]any {
		r := s.do(t, call{path: "/admin/tenants/acme/keys", admin: adminKey})
		want(t, r, 200, "")
		out := map[string]any{}
		for _, k := range r.body["keys"].([]any) {
			k := k.(map[string]any)
			out[k["id"].(string)] = k["lastUsedAt"]
		}
		return out
	}
	eventually(t, "replica b lists the key as used", func() bool { return lastUsed(b)[usedID] != nil })
	if lu := lastUsed(b); lu[idleID] != nil {
		t.Fatalf("a key never used shows lastUsedAt %v", lu[idleID])
	}
	at, err := time.Parse(time.RFC3339, lastUsed(b)[usedID].(string))
	if err != nil || at.Before(time.Now().Add(-time.Minute)) || at.After(time.Now().Add(time.Second)) {
		t.Fatalf("lastUsedAt %v (%v), want about now", lastUsed(b)[usedID], err)
	}
	// Every replica gone; a new one on the same store still knows.
	a.stop()
	b.stop()
	c := newAdminServer(t, store, "", fast)
	eventually(t, "a restarted replica lists the key as used", func() bool { return lastUsed(c)[usedID] != nil })
	if lu := lastUsed(c); lu[idleID] != nil {
		t.Fatalf("after the restart, the idle key shows lastUsedAt %v", lu[idleID])
	}
	// The records are the server's own doing, in the tenant's key-use stream of the day.
	st, _ := tenant.NewStream(tenant.MustParse("acme"), events.KeyUseCategory, time.Now().UTC().Format("20060102"))
	evs, err := store.ReadStream(t.Context(), st, 0, 100)
	if err != nil || len(evs) == 0 {
		t.Fatalf("key-use stream %s: %d events, %v", st, len(evs), err)
	}
	for _, e := range evs {
		if e.Type != events.TypeApiKeysUsed || e.Actor != tenancy.KeyUseActor {
			t.Fatalf("key-use event %s by %q", e.Type, e.Actor)
		}
	}
}

// While the record of every replica's key use catches up, the key list answers 503 catching_up
// with retry-after rather than listing a key used elsewhere as never used; an answer to a change
// says its lastUsedAt is this replica's alone (lastUsedAtPending). Before, both silently left out
// what other replicas had recorded.
func TestKeyListIsNotPartialWhileKeyUseCatchesUp(t *testing.T) {
	store := eventstoretest.NewMemory()
	fast := func(c *tenancy.Config) { c.KeyUsedEvery = 50 * time.Millisecond }
	a := newAdminServer(t, store, "", fast)
	want(t, a.do(t, call{method: http.MethodPost, path: "/admin/tenants", admin: adminKey, body: map[string]any{"id": "acme"}}), 201, "")
	used, usedID := a.newKey(t, "acme", map[string]any{"name": "used"})
	want(t, a.do(t, call{path: "/chat/probe", key: used}), 200, "")
	lastUsed := func(r resp) any {
		for _, k := range r.body["keys"].([]any) {
			if k := k.(map[string]any); k["id"] == usedID {
				return k["lastUsedAt"]
			}
		}
		return nil
	}
	eventually(t, "the use is recorded", func() bool {
		return lastUsed(a.do(t, call{path: "/admin/tenants/acme/keys", admin: adminKey})) != nil
	})
	a.stop()

	// A new replica whose read models stop after the first event: it never saw the key used.
	release := make(chan struct{})
	stalled := eventstoretest.Stalled{Store: store, At: 1, Release: release}
	b := newAdminServerOn(t, stalled, "", false, fast)
	r := b.do(t, call{path: "/admin/tenants/acme/keys", admin: adminKey})
	if r.status != 503 || r.body["code"] != "catching_up" || r.header.Get("retry-after") == "" || r.body["requestId"] == nil {
		t.Fatalf("key list while catching up: %d %v (retry-after %q); want 503 catching_up with a request id", r.status, r.body, r.header.Get("retry-after"))
	}
	// A change is recorded all the same, and its answer says what it could not know.
	r = b.do(t, call{method: http.MethodPatch, path: "/admin/tenants/acme/keys/" + usedID, admin: adminKey, body: map[string]any{"name": "renamed"}})
	want(t, r, 200, "")
	if r.body["name"] != "renamed" || r.body["lastUsedAtPending"] != true || r.body["lastUsedAt"] != nil {
		t.Fatalf("change while catching up: %v; want renamed, lastUsedAtPending true, no lastUsedAt", r.body)
	}

	close(release)
	eventually(t, "the key list answers once caught up", func() bool {
		return b.do(t, call{path: "/admin/tenants/acme/keys", admin: adminKey}).status == 200
	})
	r = b.do(t, call{path: "/admin/tenants/acme/keys", admin: adminKey})
	if lastUsed(r) == nil {
		t.Fatalf("caught up, the key used on a shows no lastUsedAt: %v", r.body)
	}
	r = b.do(t, call{method: http.MethodPatch, path: "/admin/tenants/acme/keys/" + usedID, admin: adminKey, body: map[string]any{"name": "again"}})
	if want(t, r, 200, ""); r.body["lastUsedAtPending"] != nil || r.body["lastUsedAt"] == nil {
		t.Fatalf("change once caught up: %v; want lastUsedAt and no pending flag", r.body)
	}
}
