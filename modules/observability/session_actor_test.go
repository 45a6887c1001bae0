package observability_test

import (
	"context"
	"testing"

	convevents "github.com/crispy-enigma/crispy/modules/conversation/events"
	"github.com/crispy-enigma/crispy/modules/observability"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/request"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// GET /audit/sessions/{id} says, per message, which credential recorded it and which user the
// client asserted, as two fields (issue 12 §6).
func TestAuditSessionShowsActorAndUserPerMessage(t *testing.T) {
	t.Parallel()
	e := newEnv(t, opts{deps: func(d *observability.Deps) { d.Sessions = observability.NewSessionAuditor(d.Store) }})
	sid := "0b0f6a2e-0c4b-4a57-9a65-3f5f0f3a1d2e"
	st := tenant.MustStream(acme, "session", sid)
	add := func(info request.Info, typ string, v any) {
		t.Helper()
		ev, err := eventstore.NewEventData(typ, v)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.store.Append(request.With(context.Background(), info), st, eventstore.Any, ev); err != nil {
			t.Fatal(err)
		}
	}
	keyed := request.Info{ID: "r1", Actor: "key:0123456789ab", User: "alice"}
	add(keyed, convevents.TypeSessionStarted, convevents.SessionStarted{SessionID: sid, Tenant: "acme"})
	add(keyed, convevents.TypeUserMessageAdded, convevents.UserMessageAdded{SessionID: sid, TurnID: "1", Content: "question"})
	add(request.Info{ID: "r2", Actor: "anonymous:acme"}, convevents.TypeAssistantMessageCompleted,
		convevents.AssistantMessageCompleted{SessionID: sid, TurnID: "1", Content: "answer", Model: "builtin:offline"})
	r := e.audit("/audit/sessions/"+sid, "acme")
	msgs, _ := r.body["messages"].([]any)
	if r.status != 200 || len(msgs) != 2 {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	for i, want := range [][2]any{{"key:0123456789ab", "alice"}, {"anonymous:acme", nil}} {
		m := msgs[i].(map[string]any)
		if m["actor"] != want[0] || m["user"] != want[1] {
			t.Errorf("message %d: actor %v user %v, want %v and %v", i, m["actor"], m["user"], want[0], want[1])
		}
	}
}
