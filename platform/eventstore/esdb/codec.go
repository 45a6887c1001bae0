package esdb

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	esc "github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"

	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// envelope is what an event carries in its custom metadata: the envelope fields the server does not
// hold itself. The stream, revision and type are the server's own.
type envelope struct {
	ID            string    `json:"id"`
	Time          time.Time `json:"time"`
	RequestID     string    `json:"requestId,omitempty"`
	Actor         string    `json:"actor,omitempty"`
	User          string    `json:"user,omitempty"` // absent when none: older events' metadata is unchanged
	CausationID   string    `json:"causationId,omitempty"`
	CorrelationID string    `json:"correlationId,omitempty"`
	Prev          string    `json:"prev"`
	Hash          string    `json:"hash"`
}

// idNamespace derives a server event id from an envelope id that is not a UUID.
var idNamespace = uuid.MustParse("6f1f7c2e-5d0a-4f43-9a57-0c7b8e1d2a31")

// serverID is the UUID the server stores for an envelope id.
func serverID(id string) uuid.UUID {
	if u, err := uuid.Parse(id); err == nil {
		return u
	}
	return uuid.NewSHA1(idNamespace, []byte(id))
}

// toProposed turns a sealed event into what the client appends.
func toProposed(e eventstore.Event) (esc.EventData, error) {
	md, err := json.Marshal(envelope{
		ID: e.ID, Time: e.Time.UTC(), RequestID: e.RequestID, Actor: e.Actor, User: e.User,
		CausationID: e.CausationID, CorrelationID: e.CorrelationID, Prev: e.Prev, Hash: e.Hash,
	})
	if err != nil {
		return esc.EventData{}, fmt.Errorf("marshal envelope of %s: %w", e.ID, err)
	}
	return esc.EventData{
		EventID:     serverID(e.ID),
		EventType:   e.Type,
		ContentType: esc.ContentTypeJson,
		Data:        e.Data,
		Metadata:    md,
	}, nil
}

// decode turns a recorded event of one of our streams back into a port event.
func (s *Store) decode(r *esc.RecordedEvent) (eventstore.Event, error) {
	name, ok := strings.CutPrefix(r.StreamID, s.ns)
	if !ok {
		return eventstore.Event{}, fmt.Errorf("%w: stream %q is outside namespace %q", eventstore.ErrCorrupt, r.StreamID, s.ns)
	}
	st, err := tenant.ParseStream(name)
	if err != nil {
		return eventstore.Event{}, fmt.Errorf("%w: event %d of %q is not in a tenant stream: %v", eventstore.ErrCorrupt, r.EventNumber, r.StreamID, err)
	}
	var env envelope
	if err := json.Unmarshal(r.UserMetadata, &env); err != nil || env.ID == "" || env.Hash == "" {
		return eventstore.Event{}, fmt.Errorf("%w: %s@%d has no readable envelope metadata", eventstore.ErrCorrupt, r.StreamID, r.EventNumber)
	}
	return eventstore.Event{
		ID: env.ID, Type: r.EventType, Tenant: st.Tenant(), Stream: name,
		Revision: r.EventNumber, Position: encodePos(r.Position.Commit), Time: env.Time.UTC(),
		RequestID: env.RequestID, Actor: env.Actor, User: env.User, CausationID: env.CausationID, CorrelationID: env.CorrelationID,
		Data: json.RawMessage(r.Data), Prev: env.Prev, Hash: env.Hash,
	}, nil
}

// encodePos maps an $all commit position to a port position: 2·commit+2, so that an event's position
// is even and its position + 1 (the gap after it) is odd. Stream reads from servers that do not
// report $all positions give MaxUint64, which maps to 0 (unknown).
func encodePos(commit uint64) eventstore.Position {
	if commit >= math.MaxUint64/2-1 {
		return 0
	}
	return eventstore.Position(2*commit + 2)
}

// startAfter is the decoded meaning of a port position used as an inclusive lower bound.
type startAfter struct {
	start  bool   // from the beginning of $all
	after  bool   // exclusively after the event at commit
	before bool   // inclusively from the event at commit (the caller must find the one before it)
	commit uint64 // the event concerned
}

func decodeFrom(from eventstore.Position) startAfter {
	switch {
	case from <= 1:
		return startAfter{start: true}
	case from%2 == 1:
		return startAfter{after: true, commit: (uint64(from) - 3) / 2}
	default:
		return startAfter{before: true, commit: (uint64(from) - 2) / 2}
	}
}

func isEOF(err error) bool { return errors.Is(err, io.EOF) }

// recvRead receives one event of a read. The v4 client panics on read messages it does not know
// ("unreachable code"); a newer server could send one, and no panic may reach a caller.
func recvRead(rs *esc.ReadStream) (ev *esc.ResolvedEvent, err error) {
	defer func() {
		if p := recover(); p != nil {
			ev, err = nil, fmt.Errorf("eventstoredb client could not read the server's answer: %v", p)
		}
	}()
	return rs.Recv()
}
