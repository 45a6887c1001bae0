package eventstore

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/crispy-enigma/crispy/platform/request"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// Prepare turns appended EventData into sealed Events for stream, continuing the chain from prevHash
// at revision firstRev. Every implementation calls it, so envelopes and hashes are built one way.
// Position is left for the store to assign.
func Prepare(ctx context.Context, stream tenant.Stream, firstRev uint64, prevHash string, now time.Time, data []EventData) ([]Event, error) {
	if stream.IsZero() {
		return nil, fmt.Errorf("%w: stream without tenant", ErrInvalid)
	}
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: append to %s with no events", ErrInvalid, stream)
	}
	info := request.From(ctx)
	out := make([]Event, len(data))
	prev := prevHash
	for i, d := range data {
		if d.Type == "" {
			return nil, fmt.Errorf("%w: event %d for %s has no type", ErrInvalid, i, stream)
		}
		id := d.ID
		if id == "" {
			u, err := uuid.NewV7()
			if err != nil {
				return nil, fmt.Errorf("event id: %w", err)
			}
			id = u.String()
		}
		data := d.Data
		if len(data) == 0 {
			data = []byte("{}")
		}
		e := Event{
			ID: id, Type: d.Type, Tenant: stream.Tenant(), Stream: stream.String(),
			Revision: firstRev + uint64(i), Time: now.UTC(),
			RequestID: first(d.RequestID, info.ID), Actor: first(d.Actor, info.Actor), User: first(d.User, info.User),
			CausationID: d.CausationID, CorrelationID: first(d.CorrelationID, d.RequestID, info.ID),
			Data: data,
		}
		if err := Seal(prev, &e); err != nil {
			return nil, fmt.Errorf("%w: seal %s: %v", ErrInvalid, stream, err)
		}
		prev = e.Hash
		out[i] = e
	}
	return out, nil
}

// Readable reports whether an event at revision rev written at t is visible under md at now.
func (md StreamMetadata) Readable(rev uint64, t, now time.Time) bool {
	if md.TruncateBefore != nil && rev < *md.TruncateBefore {
		return false
	}
	if md.MaxAge > 0 && now.Sub(t) > md.MaxAge {
		return false
	}
	return true
}

func first(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
