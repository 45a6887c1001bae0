// Package eventstore is the port to the append-only, per-tenant event log that is the platform's source
// of truth. Implementations: embedded/ (a file-backed log in the data folder), esdb/ (EventStoreDB
// or KurrentDB through the official client) and postgres/ (PostgreSQL through pgx, shared by
// replicas). eventstoretest holds the acceptance suite every implementation runs, and an in-memory fake.
package eventstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/crispy-enigma/crispy/platform/tenant"
)

// Position is an event's place in the store's global order. Positions grow strictly but need not be
// contiguous (EventStoreDB positions are log offsets). The first possible position is 1; 0 means
// "from the beginning".
type Position uint64

// Start reads from the beginning.
const Start Position = 0

// Event is a recorded event: the envelope of DESIGN.md §2 plus its data.
type Event struct {
	ID            string          `json:"id"`   // UUIDv7
	Type          string          `json:"type"` // "<module>.<PastTense>"
	Tenant        tenant.ID       `json:"tenant"`
	Stream        string          `json:"stream"`   // t-{tenant}.{category}-{id}
	Revision      uint64          `json:"revision"` // 0-based position in its stream
	Position      Position        `json:"position"` // global order
	Time          time.Time       `json:"time"`     // UTC, set by the store at append
	RequestID     string          `json:"requestId,omitempty"`
	Actor         string          `json:"actor,omitempty"` // the authenticated credential's id, never a secret
	User          string          `json:"user,omitempty"`  // the user id the client asserted (x-user-id), unverified
	CausationID   string          `json:"causationId,omitempty"`
	CorrelationID string          `json:"correlationId,omitempty"`
	Data          json.RawMessage `json:"data"`
	Prev          string          `json:"prev"` // hex SHA-256 of the previous event in the stream ("" for the first)
	Hash          string          `json:"hash"` // hex SHA-256 over Prev and this event's canonical bytes
	// Erased is set by readers that open sealed content (platform/sealing) when the content's key
	// was destroyed: the envelope is the stored one, Data is null. Never stored nor hashed.
	Erased bool `json:"erased,omitempty"`
	// Unreadable is set with Erased when the sealed content does not open with the key the key
	// store holds under its id (altered ciphertext, or a key store that lost or replaced the key):
	// read like an erased event, but damage to report, not an erasure. Never stored nor hashed.
	Unreadable bool `json:"unreadable,omitempty"`
}

// StreamName parses e.Stream.
func (e Event) StreamName() (tenant.Stream, error) { return tenant.ParseStream(e.Stream) }

// Decode unmarshals the event's data into v.
func (e Event) Decode(v any) error {
	if err := json.Unmarshal(e.Data, v); err != nil {
		return fmt.Errorf("decode %s %s@%d: %w", e.Type, e.Stream, e.Revision, err)
	}
	return nil
}

// EventData is what a caller appends. ID, RequestID, Actor and User are filled in when empty (a new
// UUIDv7, and request.From(ctx)); CorrelationID defaults to the request id.
type EventData struct {
	ID            string
	Type          string
	Data          json.RawMessage
	RequestID     string
	Actor         string
	User          string
	CausationID   string
	CorrelationID string
}

// NewEventData marshals v as the data of an event of type typ.
func NewEventData(typ string, v any) (EventData, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return EventData{}, fmt.Errorf("marshal %s: %w", typ, err)
	}
	return EventData{Type: typ, Data: b}, nil
}

// ExpectedRevision states what the caller believes about a stream before appending.
type ExpectedRevision struct {
	kind expectKind
	rev  uint64
}

type expectKind uint8

const (
	expectAny expectKind = iota
	expectNoStream
	expectExists
	expectExact
)

var (
	// Any appends whatever the stream's state.
	Any = ExpectedRevision{kind: expectAny}
	// NoStream requires that the stream has no events yet.
	NoStream = ExpectedRevision{kind: expectNoStream}
	// StreamExists requires at least one event.
	StreamExists = ExpectedRevision{kind: expectExists}
)

// Exact requires that the stream's last event has revision rev.
func Exact(rev uint64) ExpectedRevision { return ExpectedRevision{kind: expectExact, rev: rev} }

// After is the expected revision for a caller that has folded a stream: NoStream when it read nothing,
// else Exact(last revision).
func After(lastRev uint64, exists bool) ExpectedRevision {
	if !exists {
		return NoStream
	}
	return Exact(lastRev)
}

// Check reports whether a stream whose last revision is last (exists=false when empty) satisfies e.
func (e ExpectedRevision) Check(last uint64, exists bool) bool {
	switch e.kind {
	case expectNoStream:
		return !exists
	case expectExists:
		return exists
	case expectExact:
		return exists && last == e.rev
	default:
		return true
	}
}

// Revision returns the exact revision and true for Exact, else false.
func (e ExpectedRevision) Revision() (uint64, bool) { return e.rev, e.kind == expectExact }

// IsAny, IsNoStream and IsStreamExists report the other kinds (adapters map them to their engine).
func (e ExpectedRevision) IsAny() bool          { return e.kind == expectAny }
func (e ExpectedRevision) IsNoStream() bool     { return e.kind == expectNoStream }
func (e ExpectedRevision) IsStreamExists() bool { return e.kind == expectExists }

func (e ExpectedRevision) String() string {
	switch e.kind {
	case expectNoStream:
		return "no-stream"
	case expectExists:
		return "stream-exists"
	case expectExact:
		return fmt.Sprintf("%d", e.rev)
	default:
		return "any"
	}
}

// AppendResult tells where the last appended event landed.
type AppendResult struct {
	NextExpected uint64   // revision of the last event appended
	Position     Position // global position of the last event appended
	Events       []Event  // the recorded events, with envelope and hashes
}

// Errors. Callers test them with errors.Is; ConflictError also carries details.
var (
	ErrConflict      = errors.New("wrong expected revision")
	ErrStreamDeleted = errors.New("stream deleted")
	ErrClosed        = errors.New("event store closed")
	ErrInvalid       = errors.New("invalid append")
	// ErrCorrupt marks data the store could not read back as written (a broken record or hash).
	ErrCorrupt = errors.New("corrupt event data")
)

// ConflictError is returned when an append's expectation does not hold. errors.Is(err, ErrConflict).
type ConflictError struct {
	Stream   string
	Expected ExpectedRevision
	Actual   uint64 // last revision, meaningful when Exists
	Exists   bool
}

func (e *ConflictError) Error() string {
	actual := "no stream"
	if e.Exists {
		actual = fmt.Sprintf("%d", e.Actual)
	}
	return fmt.Sprintf("append to %s: expected revision %s, actual %s: %v", e.Stream, e.Expected, actual, ErrConflict)
}

func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

// StreamMetadata controls retention of one stream.
type StreamMetadata struct {
	// MaxAge makes events older than this unreadable (and eligible for compaction). 0: keep forever.
	MaxAge time.Duration `json:"maxAge,omitempty"`
	// TruncateBefore makes events with a lower revision unreadable. Deletion of a session appends
	// its deletion event and then truncates before it, so replay shows that a deletion happened but
	// not what was deleted.
	TruncateBefore *uint64 `json:"truncateBefore,omitempty"`
}

// SubscribeOptions selects what a subscription delivers.
type SubscribeOptions struct {
	// Tenant limits the subscription to one tenant's streams (by stream prefix, server-side). The
	// zero ID subscribes to every tenant: only platform components (the bus forwarder) do that.
	Tenant tenant.ID
	// From is the first position delivered (inclusive); Start for everything.
	From Position
	// CaughtUp, when set, is called once per subscription, from the subscription's goroutine and
	// between two handler calls, when the catch-up reaches the live end: every matching event up to
	// position at has been handed to the handler, and at is the store's last position at that
	// moment (whether or not that event matched the filter; Start for an empty store). Events
	// appended later follow as live events. Knowing this is a fact reported by the store, not a
	// guess from a quiet spell: read models answer only once it has been said. An error it returns
	// ends the subscription with that error.
	CaughtUp func(ctx context.Context, at Position) error
}

// Handler receives events in global order. Returning an error stops the subscription with it.
type Handler func(ctx context.Context, e Event) error

// Store is the event store port.
type Store interface {
	// Append writes events atomically to stream if expected holds. It returns only once the events
	// are durable. A conflict returns a *ConflictError (errors.Is(err, ErrConflict)).
	Append(ctx context.Context, stream tenant.Stream, expected ExpectedRevision, events ...EventData) (AppendResult, error)

	// ReadStream returns up to max readable events of stream with revision >= from, oldest first
	// (max <= 0: all). A stream that never had events returns no events and no error.
	ReadStream(ctx context.Context, stream tenant.Stream, from uint64, max int) ([]Event, error)

	// ReadTenant returns up to max readable events of all of t's streams with position >= from, in
	// global order (max <= 0: all).
	ReadTenant(ctx context.Context, t tenant.ID, from Position, max int) ([]Event, error)

	// Subscribe delivers events with position >= opts.From (catch-up), then reports the live end
	// (opts.CaughtUp), then new events as they are appended (live), until ctx ends (returns nil) or
	// h or CaughtUp returns an error (returns it).
	Subscribe(ctx context.Context, opts SubscribeOptions, h Handler) error

	// SetStreamMetadata replaces the stream's retention metadata.
	SetStreamMetadata(ctx context.Context, stream tenant.Stream, md StreamMetadata) error
	// StreamMetadata returns the stream's retention metadata (zero when none was set).
	StreamMetadata(ctx context.Context, stream tenant.Stream) (StreamMetadata, error)

	// LastPosition is the position of the newest event in the store (0 when empty); the bus uses it
	// to report lag.
	LastPosition(ctx context.Context) (Position, error)

	// Close flushes and releases the store. Appends after Close fail with ErrClosed.
	Close() error
}
