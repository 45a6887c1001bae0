// Package audit reads a tenant's event trail for analysts: filtered, paginated listing in global
// order and hash-chain verification. It reads only through the tenant-scoped store calls, so one
// tenant's audit can never include another's events.
package audit

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/sealing"
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

// Each calls fn for every event of t matching f, in global order. Pages are read one ahead in a
// second goroutine, so reading the store overlaps with fn's work.
func Each(ctx context.Context, s eventstore.Store, t tenant.ID, f Filter, fn func(*eventstore.Event) error) error {
	return EachPage(ctx, s, t, func(page []eventstore.Event) error {
		for i := range page {
			if !f.Match(t, &page[i]) {
				continue
			}
			if err := fn(&page[i]); err != nil {
				return err
			}
		}
		return nil
	})
}

type pageResult struct {
	events []eventstore.Event
	err    error
}

// EachPage calls fn with every page of t's events in global order, reading the next page while fn
// runs. fn must not keep the page after it returns.
func EachPage(ctx context.Context, s eventstore.Store, t tenant.ID, fn func([]eventstore.Event) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pages := make(chan pageResult, 1)
	go func() {
		defer close(pages)
		next := eventstore.Start
		for {
			page, err := s.ReadTenant(ctx, t, next, pageSize)
			if err != nil {
				err = fmt.Errorf("read events of %s from %d: %w", t, next, err)
			}
			select {
			case pages <- pageResult{page, err}:
			case <-ctx.Done():
				return
			}
			if err != nil || len(page) < pageSize {
				return
			}
			next = page[len(page)-1].Position + 1
		}
	}()
	for p := range pages {
		if p.err != nil {
			return p.err
		}
		if err := fn(p.events); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return ctx.Err()
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
// error names where. progress, when set, is called with the count so far every 10,000 events.
//
// Each page's hashes are computed in parallel (they are independent); the links between events are
// then checked in order, with the same rules as eventstore.ChainVerifier.
func Verify(ctx context.Context, s eventstore.Store, t tenant.ID, progress func(checked int)) (Report, error) {
	s = sealing.Raw(s) // the hashes are over the stored (sealed) bytes
	workers := min(runtime.GOMAXPROCS(0), 8)
	last := map[string]link{}
	var rep Report
	hashes := make([]string, pageSize)
	errs := make([]error, pageSize)
	hashers := make([]*hasher, workers)
	for i := range hashers {
		hashers[i] = newHasher()
	}
	err := EachPage(ctx, s, t, func(page []eventstore.Event) error {
		var wg sync.WaitGroup
		chunk := (len(page) + workers - 1) / workers
		for w, lo := 0, 0; lo < len(page); w, lo = w+1, lo+chunk {
			hi := min(lo+chunk, len(page))
			x := hashers[w]
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := lo; i < hi; i++ {
					hashes[i], errs[i] = x.check(&page[i])
				}
			}()
		}
		wg.Wait()
		for i := range page {
			e := &page[i]
			rep.EventsChecked++
			if reason := checkLink(last, e, hashes[i], errs[i]); reason != "" {
				rep.FirstBadEvent = &BadEvent{ID: e.ID, Stream: e.Stream, Revision: e.Revision, Reason: reason}
				return errStop
			}
			if progress != nil && rep.EventsChecked%10000 == 0 {
				progress(rep.EventsChecked)
			}
		}
		return nil
	})
	if err != nil && err != errStop {
		return rep, err
	}
	rep.OK = rep.FirstBadEvent == nil
	return rep, nil
}

type link struct {
	rev  uint64
	hash string
}

// checkLink applies eventstore.ChainVerifier's rules to e given its recomputed hash. It returns the
// reason e fails, or "".
func checkLink(last map[string]link, e *eventstore.Event, computed string, err error) string {
	if err != nil {
		return err.Error()
	}
	if computed != e.Hash {
		return "hash does not match the event's contents"
	}
	prev, seen := last[e.Stream]
	switch {
	case !seen && e.Revision == 0 && e.Prev != "":
		return "first event of the stream has a prev hash"
	case seen && e.Revision != prev.rev+1:
		return fmt.Sprintf("revision gap after %d", prev.rev)
	case seen && e.Prev != prev.hash:
		return "prev does not match the previous event's hash"
	}
	last[e.Stream] = link{rev: e.Revision, hash: e.Hash}
	return ""
}

type stopError struct{}

func (stopError) Error() string { return "stop" }

var errStop error = stopError{}
