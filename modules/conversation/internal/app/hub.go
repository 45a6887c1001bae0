package app

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/crispy-enigma/crispy/platform/tenant"
)

// Event is one SSE event of a turn. Seq is its id: 1, 2, … within the turn.
type Event struct {
	Seq  int
	Name string // token, tool, citation, done, error
	Data any
}

// errClientGone cancels a turn whose client disconnected and did not come back in time.
var errClientGone = errors.New("client disconnected and did not resume")

// Turn buffers a running or recently finished turn's events, so that its client, or the same
// client reconnecting with Last-Event-ID, reads them without a second model call.
type Turn struct {
	ID        string
	SessionID string
	Model     string // the first model tried; the done event names the one that answered
	tenant    tenant.ID
	window    time.Duration

	mu      sync.Mutex
	events  []Event
	done    bool
	started bool // a token or the end arrived
	changed chan struct{}
	subs    int
	orphan  *time.Timer
	cancel  context.CancelCauseFunc
	outcome Outcome
	onEnd   func() // releases the session for the next turn; called once the outcome is recorded
}

// newTurn returns a turn with one reader attached: whoever starts a turn reads it (and must Detach),
// so that shutdown never sees a turn as unread between its start and its first reader.
func newTurn(id, session string, t tenant.ID, window time.Duration, cancel context.CancelCauseFunc) *Turn {
	return &Turn{ID: id, SessionID: session, tenant: t, window: window, cancel: cancel, changed: make(chan struct{}), subs: 1}
}

// signal wakes the waiters; t.mu must be held.
func (t *Turn) signal() {
	close(t.changed)
	t.changed = make(chan struct{})
}

// abandon ends a turn that never started (refused before its model call): nothing will be pushed.
func (t *Turn) abandon() {
	t.mu.Lock()
	t.done, t.started, t.subs = true, true, 0
	t.signal()
	t.mu.Unlock()
}

// waitUntil waits until ready (called with t.mu held) is true, or ctx ends.
func (t *Turn) waitUntil(ctx context.Context, ready func() bool) error {
	for {
		t.mu.Lock()
		if ready() {
			t.mu.Unlock()
			return nil
		}
		ch := t.changed
		t.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// WaitClosed waits until the turn has ended and every reader has detached (its last event written),
// or ctx ends.
func (t *Turn) WaitClosed(ctx context.Context) error {
	return t.waitUntil(ctx, func() bool { return t.done && t.subs <= 0 })
}

func (t *Turn) push(name string, data any) {
	t.mu.Lock()
	t.events = append(t.events, Event{Seq: len(t.events) + 1, Name: name, Data: data})
	if name == "token" {
		t.started = true
	}
	t.signal()
	t.mu.Unlock()
}

// finish pushes the terminal event (done or error) and records the outcome.
func (t *Turn) finish(name string, data any, o Outcome) {
	// The session is free before the client hears the end, so its next message is never refused.
	if t.onEnd != nil {
		t.onEnd()
	}
	t.mu.Lock()
	t.events = append(t.events, Event{Seq: len(t.events) + 1, Name: name, Data: data})
	t.done, t.started, t.outcome = true, true, o
	if t.orphan != nil {
		t.orphan.Stop()
	}
	t.signal()
	t.mu.Unlock()
}

// Attach registers a reader; while one is attached, the turn is not cancelled for lack of one.
// Detach must follow.
func (t *Turn) Attach() {
	t.mu.Lock()
	t.subs++
	if t.orphan != nil {
		t.orphan.Stop()
		t.orphan = nil
	}
	t.mu.Unlock()
}

// Detach unregisters a reader. When the last one leaves a running turn, the turn is cancelled after
// the resume window unless a reader attaches again.
func (t *Turn) Detach() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.subs--
	if t.subs == 0 && !t.done {
		t.orphan = time.AfterFunc(t.window, func() { t.cancel(errClientGone) })
	}
	t.signal()
}

// Next returns the events after seq (waiting until there are some, the turn ends, or ctx ends) and
// whether the turn is over and all its events have been returned.
func (t *Turn) Next(ctx context.Context, after int) ([]Event, bool, error) {
	if err := t.waitUntil(ctx, func() bool { return after < len(t.events) || t.done }); err != nil {
		return nil, false, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	var evs []Event
	if after < len(t.events) {
		evs = append(evs, t.events[after:]...)
	}
	return evs, t.done, nil
}

// Pending reports whether events after seq are already buffered (Next would not block).
func (t *Turn) Pending(after int) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return after < len(t.events)
}

// WaitStarted waits until the first token or the end of the turn.
func (t *Turn) WaitStarted(ctx context.Context) error {
	return t.waitUntil(ctx, func() bool { return t.started })
}

// Wait waits for the end of the turn and returns its outcome.
func (t *Turn) Wait(ctx context.Context) (Outcome, error) {
	if err := t.waitUntil(ctx, func() bool { return t.done }); err != nil {
		return Outcome{}, err
	}
	o, _ := t.Outcome()
	return o, nil
}

// Outcome is the end state (valid once done).
func (t *Turn) Outcome() (Outcome, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.outcome, t.done
}

// Hub holds the latest turn of every (tenant, session) while it runs and for the resume window after.
type Hub struct {
	mu    sync.Mutex
	turns map[string]*Turn
}

// NewHub returns an empty hub.
func NewHub() *Hub { return &Hub{turns: map[string]*Turn{}} }

func (h *Hub) put(t *Turn) {
	h.mu.Lock()
	h.turns[cacheKey(t.tenant, t.SessionID)] = t
	h.mu.Unlock()
}

// forget removes t after the window, unless a newer turn replaced it.
func (h *Hub) forget(t *Turn, after time.Duration) {
	time.AfterFunc(after, func() {
		h.mu.Lock()
		k := cacheKey(t.tenant, t.SessionID)
		if h.turns[k] == t {
			delete(h.turns, k)
		}
		h.mu.Unlock()
	})
}

// Get returns the tenant's latest turn of a session, if still held.
func (h *Hub) Get(t tenant.ID, session string) (*Turn, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	tr, ok := h.turns[cacheKey(t, session)]
	return tr, ok
}

// Len is how many turns are held (tests, metrics).
func (h *Hub) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.turns)
}
