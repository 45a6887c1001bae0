package domain_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/modules/conversation/events"
	"github.com/crispy-enigma/crispy/modules/conversation/internal/domain"
	"github.com/crispy-enigma/crispy/platform/eventstore"
)

func TestValidSessionID(t *testing.T) {
	t.Parallel()
	u := "0b0f6a52-6f7e-4c55-9a8e-3f3d2f1c9b10"
	for _, tc := range []struct {
		id string
		ok bool
	}{
		{u, true}, {strings.ToUpper(u), false}, {"{" + u + "}", false}, {"urn:uuid:" + u, false},
		{strings.ReplaceAll(u, "-", ""), false}, {" " + u, false}, {u + "\n", false}, {"", false}, {"not-a-uuid", false},
	} {
		if got := domain.ValidSessionID(tc.id); got != tc.ok {
			t.Errorf("ValidSessionID(%q) = %v", tc.id, got)
		}
	}
}

// The fold knows which turns have a user message and no outcome yet, whatever the order of
// outcomes (sessions recorded before turns were serialised may interleave).
func TestFoldTracksOpenTurns(t *testing.T) {
	t.Parallel()
	var evs []eventstore.Event
	add := func(typ string, data any) {
		b, _ := json.Marshal(data)
		evs = append(evs, eventstore.Event{Type: typ, Data: b, Revision: uint64(len(evs)), Time: time.Now()})
	}
	add(events.TypeSessionStarted, events.SessionStarted{SessionID: "s"})
	add(events.TypeUserMessageAdded, events.UserMessageAdded{TurnID: "a", Content: "1"})
	add(events.TypeUserMessageAdded, events.UserMessageAdded{TurnID: "b", Content: "2"})
	add(events.TypeAssistantMessageFailed, events.AssistantMessageFailed{TurnID: "b", Code: "x"})
	s, err := domain.Fold(evs)
	if err != nil || len(s.Open) != 1 || s.Open[0].TurnID != "a" {
		t.Fatalf("%+v %v", s.Open, err)
	}
	c := s.Clone()
	if err := c.Apply(eventstore.Event{Type: events.TypeAssistantMessageCompleted, Data: []byte(`{"turnId":"a","content":"ok"}`), Revision: 4}); err != nil {
		t.Fatal(err)
	}
	if len(c.Open) != 0 || len(s.Open) != 1 {
		t.Fatalf("clone %v, original %v: applying to a clone must not touch the original", c.Open, s.Open)
	}
	if err := c.Apply(eventstore.Event{Type: events.TypeUserMessageAdded, Data: []byte(`{"turnId":"c","content":"3"}`), Revision: 5}); err != nil {
		t.Fatal(err)
	}
	if err := c.Apply(eventstore.Event{Type: events.TypeSessionDeleted, Data: []byte(`{}`), Revision: 6}); err != nil || len(c.Open) != 0 {
		t.Fatalf("a deleted session has no open turns: %v %v", c.Open, err)
	}
}
