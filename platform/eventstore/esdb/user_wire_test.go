package esdb

import (
	"encoding/json"
	"testing"
	"time"

	esc "github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/crispy-enigma/crispy/platform/eventstore"
)

// recordedBeforeUser is the custom metadata the store wrote for an event before events had a user
// field, with the hash the code of that time computed (prev "", so the event's own).
const recordedBeforeUser = `{"id":"0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","time":"2026-11-01T12:00:00.123456789Z","requestId":"req-1","actor":"user:alice","correlationId":"req-1","prev":"","hash":"428b89d07fb33f3bd64f348f4348691ee7c44840bb30c8ea90d8d10427d6e0c7"}`

func wireEvent() eventstore.Event {
	return eventstore.Event{ID: "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", Type: "test.Happened", Tenant: acme,
		Stream: "t-acme.session-a1", Time: time.Date(2026, 11, 1, 12, 0, 0, 123456789, time.UTC),
		RequestID: "req-1", Actor: "user:alice", CorrelationID: "req-1", Data: json.RawMessage(`{"n":0}`)}
}

func recorded(md []byte) *esc.RecordedEvent {
	return &esc.RecordedEvent{StreamID: "t-acme.session-a1", EventType: "test.Happened", Data: []byte(`{"n":0}`), UserMetadata: md}
}

// An event without a user is written exactly as before the field existed, and such recorded
// metadata reads back without a user and verifies.
func TestContractEnvelopeWithoutUserIsTheRecordedFormat(t *testing.T) {
	t.Parallel()
	e := wireEvent()
	if err := eventstore.Seal("", &e); err != nil {
		t.Fatal(err)
	}
	p, err := toProposed(e)
	if err != nil {
		t.Fatal(err)
	}
	if string(p.Metadata) != recordedBeforeUser {
		t.Fatalf("metadata of an event without a user changed:\n got %s\nwant %s", p.Metadata, recordedBeforeUser)
	}
	got, err := (&Store{}).decode(recorded([]byte(recordedBeforeUser)))
	if err != nil {
		t.Fatal(err)
	}
	if got.User != "" || got.Actor != "user:alice" {
		t.Fatalf("decoded %+v", got)
	}
	if err := eventstore.NewChainVerifier().Check(&got); err != nil {
		t.Fatalf("an event recorded before the user field no longer verifies: %v", err)
	}
}

// The user travels in the custom metadata as "user", apart from "actor", and is covered by the hash.
func TestContractEnvelopeCarriesTheUser(t *testing.T) {
	t.Parallel()
	e := wireEvent()
	e.Actor, e.User = "key:0123456789ab", "alice"
	if err := eventstore.Seal("", &e); err != nil {
		t.Fatal(err)
	}
	p, err := toProposed(e)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","time":"2026-11-01T12:00:00.123456789Z","requestId":"req-1","actor":"key:0123456789ab","user":"alice","correlationId":"req-1","prev":"","hash":"` + e.Hash + `"}`
	if string(p.Metadata) != want {
		t.Fatalf("metadata:\n got %s\nwant %s", p.Metadata, want)
	}
	got, err := (&Store{}).decode(recorded(p.Metadata))
	if err != nil {
		t.Fatal(err)
	}
	if got.User != "alice" || got.Actor != "key:0123456789ab" {
		t.Fatalf("decoded %+v", got)
	}
	if err := eventstore.NewChainVerifier().Check(&got); err != nil {
		t.Fatal(err)
	}
	forged, err := (&Store{}).decode(recorded([]byte(`{"id":"0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","time":"2026-11-01T12:00:00.123456789Z","requestId":"req-1","actor":"key:0123456789ab","user":"mallory","correlationId":"req-1","prev":"","hash":"` + e.Hash + `"}`)))
	if err != nil {
		t.Fatal(err)
	}
	if eventstore.NewChainVerifier().Check(&forged) == nil {
		t.Fatal("an event whose recorded user was changed still verifies")
	}
}
