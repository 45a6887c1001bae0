package bus

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// The asserted user crosses a broker (the message payload) and reaches handlers' envelopes apart
// from the actor.
func TestEnvelopeCarriesActorAndUserThroughAMessage(t *testing.T) {
	t.Parallel()
	e := eventstore.Event{ID: "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", Type: "t.E", Tenant: tenant.MustParse("acme"), Stream: "t-acme.session-a",
		Position: 7, Time: time.Unix(1, 0).UTC(), Actor: "key:0123456789ab", User: "alice", Data: json.RawMessage(`{}`)}
	m, err := toMessage(e)
	if err != nil {
		t.Fatal(err)
	}
	back, err := fromMessage(m)
	if err != nil {
		t.Fatal(err)
	}
	if env := envelopeOf(back); env.Actor != "key:0123456789ab" || env.User != "alice" {
		t.Fatalf("envelope after the broker: actor %q, user %q", env.Actor, env.User)
	}
}
