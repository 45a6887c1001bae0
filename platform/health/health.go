// Package health is the vocabulary a backend uses to tell GET /health more than "up" or "down": that
// it is degraded (serving reads, refusing writes) or catching up (rebuilding derived state, with
// progress). A check returns nil when the backend is ok, a *State for these two, and any other error
// when it is down. Modules and adapters build States; platform/httpapi reports them.
package health

import (
	"errors"
	"fmt"
)

// Statuses of one backend, and of /health as a whole (the worst of its backends).
const (
	OK         = "ok"
	CatchingUp = "catching_up"
	Degraded   = "degraded"
	Down       = "down"
)

// State is a backend that answers but not fully.
type State struct {
	Status string // CatchingUp or Degraded
	Reason string // for the operator: what is wrong or what is being rebuilt
	// Done and Total report a catch-up's progress (events, documents …); Total 0 when unknown.
	Done, Total uint64
}

func (s *State) Error() string {
	if s.Total > 0 {
		return fmt.Sprintf("%s: %s (%d of %d)", s.Status, s.Reason, s.Done, s.Total)
	}
	return s.Status + ": " + s.Reason
}

// CatchingUpState reports a rebuild in progress.
func CatchingUpState(reason string, done, total uint64) *State {
	return &State{Status: CatchingUp, Reason: reason, Done: done, Total: total}
}

// DegradedState reports a backend that works in part.
func DegradedState(reason string) *State { return &State{Status: Degraded, Reason: reason} }

// Classify returns the status an error from a check stands for, and its State when it has one.
func Classify(err error) (string, *State) {
	if err == nil {
		return OK, nil
	}
	var s *State
	if errors.As(err, &s) && (s.Status == CatchingUp || s.Status == Degraded) {
		return s.Status, s
	}
	return Down, nil
}

// Worse reports whether status a is worse than b (ok < catching_up < degraded < down).
func Worse(a, b string) bool { return rank(a) > rank(b) }

func rank(s string) int {
	switch s {
	case OK:
		return 0
	case CatchingUp:
		return 1
	case Degraded:
		return 2
	default:
		return 3
	}
}
