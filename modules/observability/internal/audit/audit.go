// Package audit reads a tenant's event trail for analysts: filtered, paginated listing in global
// order and hash-chain verification. It reads only through the tenant-scoped store calls, so one
// tenant's audit can never include another's events.
package audit

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// Filter selects events. Zero fields do not filter.
type Filter struct {
	From   time.Time // event time >= From
	Until  time.Time // event time <= Until
	Stream string    // full stream name, or the part after "t-{tenant}."
	Type   string    // exact event type
}

// Match reports whether e passes f for tenant t.
func (f Filter) Match(t tenant.ID, e *eventstore.Event) bool {
	if !f.From.IsZero() && e.Time.Before(f.From) {
		return false
	}
	if !f.Until.IsZero() && e.Time.After(f.Until) {
		return false
	}
	if f.Type != "" && e.Type != f.Type {
		return false
	}
	if f.Stream != "" {
		name := f.Stream
		if !strings.HasPrefix(name, "t-") {
			name = t.StreamPrefix() + name
		}
		if e.Stream != name {
			return false
		}
	}
	return true
}

// pageSize bounds one store read; listing and verification read in pages so memory stays flat.
const pageSize = 4096

// List returns up to limit events of t matching f with position >= from, and the position to
// continue from (0 when there is nothing more).
func List(ctx context.Context, s eventstore.Store, t tenant.ID, f Filter, from eventstore.Position, limit int) ([]eventstore.Event, eventstore.Position, error) {
	var out []eventstore.Event
	next := from
	for {
		page, err := s.ReadTenant(ctx, t, next, pageSize)
		if err != nil {
			return nil, 0, fmt.Errorf("read events of %s from %d: %w", t, next, err)
		}
		for i := range page {
			e := &page[i]
			if !f.Match(t, e) {
				continue
			}
			if len(out) == limit {
				return out, e.Position, nil
			}
			out = append(out, *e)
		}
		if len(page) < pageSize {
			return out, 0, nil
		}
		next = page[len(page)-1].Position + 1
		if err := ctx.Err(); err != nil {
			return nil, 0, err
		}
	}
}

// Each calls fn for every event of t matching f, in global order, reading in pages.
func Each(ctx context.Context, s eventstore.Store, t tenant.ID, f Filter, fn func(*eventstore.Event) error) error {
	next := eventstore.Start
	for {
		page, err := s.ReadTenant(ctx, t, next, pageSize)
		if err != nil {
			return fmt.Errorf("read events of %s from %d: %w", t, next, err)
		}
		for i := range page {
			if !f.Match(t, &page[i]) {
				continue
			}
			if err := fn(&page[i]); err != nil {
				return err
			}
		}
		if len(page) < pageSize {
			return nil
		}
		next = page[len(page)-1].Position + 1
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// BadEvent names the first event that failed verification.
type BadEvent struct {
	ID       string `json:"id"`
	Stream   string `json:"stream"`
	Revision uint64 `json:"revision"`
	Reason   string `json:"reason"`
}

// Report is the outcome of a verification.
type Report struct {
	OK            bool      `json:"ok"`
	EventsChecked int       `json:"eventsChecked"`
	FirstBadEvent *BadEvent `json:"firstBadEvent,omitempty"`
}

// Verify walks every hash chain of t. An unreadable record ends the walk as a failure too; its
// error names where. progress, when set, is called with the count so far every few thousand events.
func Verify(ctx context.Context, s eventstore.Store, t tenant.ID, progress func(checked int)) (Report, error) {
	v := eventstore.NewChainVerifier()
	var rep Report
	err := Each(ctx, s, t, Filter{}, func(e *eventstore.Event) error {
		if err := v.Check(e); err != nil {
			if ce, ok := err.(*eventstore.ChainError); ok {
				rep.FirstBadEvent = &BadEvent{ID: ce.EventID, Stream: ce.Stream, Revision: ce.Revision, Reason: ce.Reason}
				return errStop
			}
			return err
		}
		if progress != nil && v.Checked%10000 == 0 {
			progress(v.Checked)
		}
		return nil
	})
	rep.EventsChecked = v.Checked
	if err != nil && err != errStop {
		return rep, err
	}
	rep.OK = rep.FirstBadEvent == nil
	return rep, nil
}

type stopError struct{}

func (stopError) Error() string { return "stop" }

var errStop error = stopError{}
