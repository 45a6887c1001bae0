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
