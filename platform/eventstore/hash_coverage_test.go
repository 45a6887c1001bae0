package eventstore_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// The hash must cover who and where an event belongs to, or the audit log could not tell an event
// moved to another tenant, another tenant's event inserted, or the asserted user stripped or
// forged (F15: no test would have noticed CanonicalBytes dropping one of them). Each tampering
// must change the reference hash and fail the fast hasher that verification uses.
func TestHashCoversTenantStreamUserAndActor(t *testing.T) {
	acme, beta := tenant.MustParse("acme"), tenant.MustParse("beta")
	base := func() eventstore.Event {
		return eventstore.Event{ID: "0190c1d2-0000-7000-8000-000000000001", Type: "test.Said", Tenant: acme,
			Stream: tenant.MustStream(acme, "session", "s1").String(), Revision: 3,
			Time: time.Date(2026, 11, 29, 13, 0, 0, 123456789, time.UTC), RequestID: "req-1",
			Actor: "key:0123456789ab", User: "u-7f3a", Data: json.RawMessage(`{"text":"hello"}`), Prev: "ab12"}
	}
	hashOf := func(e eventstore.Event) string {
		h, err := eventstore.ComputeHash(e.Prev, &e)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	orig := base()
	stored := hashOf(orig)
	if ok, err := eventstore.NewFastHasher().Matches(&eventstore.Event{ID: orig.ID, Type: orig.Type, Tenant: orig.Tenant,
		Stream: orig.Stream, Revision: orig.Revision, Time: orig.Time, RequestID: orig.RequestID, Actor: orig.Actor,
		User: orig.User, Data: orig.Data, Prev: orig.Prev, Hash: stored}); err != nil || !ok {
		t.Fatalf("the untouched event does not match its own hash: %v, %v", ok, err)
	}
	cases := []struct {
		name   string
		tamper func(e *eventstore.Event)
	}{
		{"moved to another tenant (tenant and stream rewritten)", func(e *eventstore.Event) {
			e.Tenant, e.Stream = beta, tenant.MustStream(beta, "session", "s1").String()
		}},
		{"tenant rewritten, stream kept", func(e *eventstore.Event) { e.Tenant = beta }},
		{"another stream of the same tenant", func(e *eventstore.Event) { e.Stream = tenant.MustStream(acme, "session", "s2").String() }},
		{"user stripped", func(e *eventstore.Event) { e.User = "" }},
		{"user changed", func(e *eventstore.Event) { e.User = "u-0000" }},
		{"actor changed", func(e *eventstore.Event) { e.Actor = "system:cli/replay" }},
		{"revision changed", func(e *eventstore.Event) { e.Revision = 4 }},
		{"prev changed", func(e *eventstore.Event) { e.Prev = "cd34" }},
		{"data changed", func(e *eventstore.Event) { e.Data = json.RawMessage(`{"text":"hellO"}`) }},
		{"user moved into the data", func(e *eventstore.Event) { e.User, e.Data = "", json.RawMessage(`{"text":"hello","user":"u-7f3a"}`) }},
	}
	for _, c := range cases {
		e := base()
		c.tamper(&e)
		if hashOf(e) == stored {
			t.Errorf("%s: the hash did not change", c.name)
		}
		e.Hash = stored
		if ok, err := eventstore.NewFastHasher().Matches(&e); err != nil || ok {
			t.Errorf("%s: the fast hasher still matches the stored hash (%v, %v)", c.name, ok, err)
		}
	}
	// And the other way: a user added to an event written without one.
	noUser := base()
	noUser.User = ""
	h := hashOf(noUser)
	noUser.User, noUser.Hash = "u-7f3a", h
	if ok, _ := eventstore.NewFastHasher().Matches(&noUser); ok || hashOf(noUser) == h {
		t.Error("user added: the hash did not change")
	}
}
