package observability

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"time"

	"github.com/crispy-enigma/crispy/modules/observability/internal/audit"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/sealing"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// ErrUnknownTenant is returned by Replay and Verify for a tenant with no events in the store.
var ErrUnknownTenant = errors.New("unknown tenant")

// ProgressEvery is how many events pass between progress callbacks.
const ProgressEvery = 10000

// ReplayOptions select what Replay writes. Zero fields do not filter.
type ReplayOptions struct {
	From  time.Time // events at or after
	Until time.Time // events at or before
	// Stream is a full stream name or the part after "t-{tenant}." ("session-0b0f…").
	Stream string
	// Type keeps only events of this type.
	Type string
	// Open, when set, opens a sealed event (sealing.Sealer.OpenEvent). The store given to Replay
	// is then the RAW store: each line keeps "data" as stored (the bytes the hash and the audit
	// log's inclusion proofs cover, so `crispy audit prove` checks a replayed line) and carries
	// the opened data beside it as "content", or "erased":true once its key was destroyed.
	Open func(ctx context.Context, e eventstore.Event) (eventstore.Event, error)
}

func known(ctx context.Context, s eventstore.Store, t tenant.ID) error {
	if t.IsZero() {
		return fmt.Errorf("no tenant given: %w", ErrUnknownTenant)
	}
	first, err := s.ReadTenant(ctx, t, eventstore.Start, 1)
	if err != nil {
		return fmt.Errorf("read events of %s: %w", t, err)
	}
	if len(first) == 0 {
		return fmt.Errorf("tenant %q has no events in this store (check --tenant and --data-dir): %w", t.String(), ErrUnknownTenant)
	}
	return nil
}

// Replay writes t's events matching o to w as JSON lines (one eventstore.Event each, envelope and
// hash included), in global order, reading the store directly. progress, when set, gets the count
// written so far every ProgressEvery events and once at the end. It returns how many it wrote. A
// tenant with no events at all is an error (ErrUnknownTenant); a filter that matches nothing is not.
func Replay(ctx context.Context, s eventstore.Store, t tenant.ID, o ReplayOptions, out io.Writer, progress func(n int)) (int, error) {
	if err := known(ctx, s, t); err != nil {
		return 0, err
	}
	if !o.Until.IsZero() && !o.From.IsZero() && o.Until.Before(o.From) {
		return 0, fmt.Errorf("replay %s: --until %s is before --from %s", t, o.Until.Format(time.RFC3339), o.From.Format(time.RFC3339))
	}
	f := audit.Filter{From: o.From, Until: o.Until, Stream: o.Stream, Type: o.Type}
	workers := min(runtime.GOMAXPROCS(0), 8)
	bufs := make([][]byte, workers)
	counts := make([]int, workers)
	errs := make([]error, workers)
	n := 0
	// Each page is encoded in parallel chunks (encoding dominates replay), then written in order.
	err := audit.EachPage(ctx, s, t, func(page []eventstore.Event) error {
		chunk := (len(page) + workers - 1) / workers
		var wg sync.WaitGroup
		for w := 0; w < workers; w++ {
			lo, hi := w*chunk, min((w+1)*chunk, len(page))
			bufs[w], counts[w], errs[w] = bufs[w][:0], 0, nil
			if lo >= hi {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := lo; i < hi; i++ {
					e := &page[i]
					if !f.Match(t, e) {
						continue
					}
					var content json.RawMessage
					if o.Open != nil && sealing.IsSealed(e.Data) {
						opened, err := o.Open(ctx, *e)
						switch {
						case errors.Is(err, eventstore.ErrCorrupt), err == nil && opened.Unreadable:
							// Altered: replayed as stored, for verification to name (as GET /audit/events).
						case err != nil:
							errs[w] = fmt.Errorf("open event %s of %s: %w", e.ID, e.Stream, err)
							return
						case opened.Erased:
							e.Erased = true
						default:
							content = opened.Data
						}
					}
					var err error
					if bufs[w], err = appendEventJSON(bufs[w], e, content); err != nil {
						errs[w] = fmt.Errorf("encode event %s of %s: %w", e.ID, e.Stream, err)
						return
					}
					counts[w]++
				}
			}()
		}
		wg.Wait()
		for w := range bufs {
			if errs[w] != nil {
				return errs[w]
			}
			if _, err := out.Write(bufs[w]); err != nil {
				return fmt.Errorf("write replay of %s: %w", t, err)
			}
			before := n
			n += counts[w]
			if progress != nil && n/ProgressEvery > before/ProgressEvery {
				progress(n)
			}
		}
		return nil
	})
	if progress != nil {
		progress(n)
	}
	return n, err
}

// VerifyResult is the outcome of Verify: {ok, eventsChecked, firstBadEvent}.
type VerifyResult = audit.Report

// BadEvent names the first event that failed verification.
type BadEvent = audit.BadEvent

// Verify walks every hash chain of t, reading the store directly. It returns OK false and the first
// bad event on a broken link or a hash that does not match; a record the store cannot read is an error
// (errors.Is(err, eventstore.ErrCorrupt) when the store says so). A tenant with no events is an error
// (ErrUnknownTenant). progress, when set, gets the count checked so far every ProgressEvery events
// and once at the end.
func Verify(ctx context.Context, s eventstore.Store, t tenant.ID, progress func(n int)) (VerifyResult, error) {
	if err := known(ctx, s, t); err != nil {
		return VerifyResult{}, err
	}
	res, err := audit.Verify(ctx, s, t, progress)
	if progress != nil {
		progress(res.EventsChecked)
	}
	if err != nil {
		return res, fmt.Errorf("verify %s after %d events: %w", t, res.EventsChecked, err)
	}
	return res, nil
}
