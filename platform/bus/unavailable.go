package bus

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/health"
)

// Unavailable reports whether a handler's error is a fault of something it depends on that heals by
// itself (an index, a database or a provider that does not answer), rather than a fault of the event:
// an *apperr.Error of kind Unavailable, eventstore.ErrStorageUnavailable, or a health.State that is
// degraded. Such a handler is retried with capped backoff (RetryInitial … RetryMax) until it succeeds
// or the bus stops, never passed after MaxRetries: the event is not lost, and the consumer reports
// degraded on /health meanwhile. Any other error keeps the MaxRetries budget, then the event is passed.
func Unavailable(err error) bool {
	if err == nil {
		return false
	}
	if apperr.KindOf(err) == apperr.KindUnavailable || errors.Is(err, eventstore.ErrStorageUnavailable) {
		return true
	}
	st, _ := health.Classify(err)
	return st == health.Degraded
}

// waiting is what a consumer waiting out an unavailable dependency reports to /health.
type waiting struct {
	err   atomic.Pointer[error]
	since atomic.Int64 // unix nanoseconds of the first failure of the current spell
}

func (w *waiting) set(err error) {
	if w.err.Load() == nil {
		w.since.Store(time.Now().UnixNano())
	}
	w.err.Store(&err)
}

func (w *waiting) clear() bool { return w.err.Swap(nil) != nil }

// check is nil, or a degraded health.State naming the consumer and its last error.
func (w *waiting) check(kind, name string) error {
	p := w.err.Load()
	if p == nil {
		return nil
	}
	return health.DegradedState(fmt.Sprintf("%s %s waits for a dependency to come back (since %s): %v", kind, name,
		time.Unix(0, w.since.Load()).UTC().Format(time.RFC3339), *p))
}

// waitUnavailable records err and sleeps the next capped backoff step; false when ctx ended first.
func (b *Bus) waitUnavailable(ctx context.Context, w *waiting, wait *time.Duration, kind, name string, err error) bool {
	w.set(err)
	if *wait == 0 {
		*wait = b.cfg.RetryInitial
	}
	b.log.Warn("bus: "+kind+" waits for an unavailable dependency; retrying until it succeeds", kind, name, "in", *wait, "err", err)
	t := time.NewTimer(*wait)
	defer t.Stop()
	ok := true
	select {
	case <-ctx.Done():
		ok = false
	case <-b.stopping:
		ok = false
	case <-t.C:
	}
	*wait = min(2**wait, b.cfg.RetryMax)
	return ok
}
