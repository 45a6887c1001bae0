package app

import (
	"context"
	"errors"
	"sync"

	"github.com/crispy-enigma/crispy/platform/apperr"
)

// Running holds the turns in progress in this process, one per (tenant, session), from the moment a
// turn is accepted until its outcome is recorded. Turns of one session are serialised here: a
// second turn is refused while one runs, so a session's events never interleave. Shutdown finds the
// open turns here.
type Running struct {
	mu       sync.Mutex
	turns    map[string]*Turn
	draining bool
	changed  chan struct{} // closed and replaced whenever a turn leaves
	// unrecorded are turns of this process that ended without their outcome recorded (the store
	// refused it): nothing runs them any more, so the next turn of their session closes them.
	unrecorded map[string]bool
}

// NewRunning returns an empty registry.
func NewRunning() *Running {
	return &Running{turns: map[string]*Turn{}, changed: make(chan struct{}), unrecorded: map[string]bool{}}
}

// maxUnrecorded bounds the memory of turns whose outcome could not be recorded; past it the oldest
// knowledge is dropped and such turns wait for the staleness rule instead.
const maxUnrecorded = 10000

// lost notes that turnID ended without its outcome recorded.
func (r *Running) lost(turnID string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.unrecorded) >= maxUnrecorded {
		clear(r.unrecorded)
	}
	r.unrecorded[turnID] = true
}

// ended reports whether turnID is known to have ended in this process without its outcome.
func (r *Running) ended(turnID string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.unrecorded[turnID]
}

// errShuttingDown cancels the turns still open when the server shuts down.
var errShuttingDown = errors.New("the server is shutting down")

func turnInProgress() error {
	return apperr.New(apperr.KindConflict, "turn_in_progress",
		"another turn of this session is in progress; send the next message once it has ended (done or error)")
}

func shuttingDown() error {
	e := apperr.New(apperr.KindUnavailable, "shutting_down", "the server is shutting down; retry on another instance or shortly")
	e.RetryAfterSec = 1
	return e
}

// acquire registers t as the turn in progress of session key, or refuses: 409 turn_in_progress while
// another turn of the session runs, 503 shutting_down once the server drains.
func (r *Running) acquire(key string, t *Turn) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.draining {
		return shuttingDown()
	}
	if _, busy := r.turns[key]; busy {
		return turnInProgress()
	}
	r.turns[key] = t
	return nil
}

// release ends t's hold on its session (once its outcome is recorded, before the client is told).
func (r *Running) release(key string, t *Turn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.turns[key] == t {
		delete(r.turns, key)
		close(r.changed)
		r.changed = make(chan struct{})
	}
}

// drain refuses every turn from now on and returns those in progress.
func (r *Running) drain() []*Turn {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.draining = true
	out := make([]*Turn, 0, len(r.turns))
	for _, t := range r.turns {
		out = append(out, t)
	}
	return out
}

// waitEmpty waits until no turn is in progress, or ctx ends (then it returns how many still are).
func (r *Running) waitEmpty(ctx context.Context) (int, error) {
	for {
		r.mu.Lock()
		n, ch := len(r.turns), r.changed
		r.mu.Unlock()
		if n == 0 {
			return 0, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return n, ctx.Err()
		}
	}
}
