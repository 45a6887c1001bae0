package app

import (
	"container/list"
	"context"
	"errors"
	"sync"
	"time"
	"unsafe"

	"github.com/crispy-enigma/crispy/modules/conversation/internal/domain"
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
	// Owner is the user the session belongs to ("" for a session of the tenant): only they may
	// resume the turn.
	Owner  string
	tenant tenant.ID
	window time.Duration

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

	// Set by the Hub (under its lock) while the finished turn is held for resumption.
	held       *list.Element
	size       int64
	finishedAt time.Time
}

// newTurn returns a turn with one reader attached: whoever starts a turn reads it (and must Detach),
// so that shutdown never sees a turn as unread between its start and its first reader.
// VisibleTo reports whether v may resume (read) the turn, as History would let it read the session.
func (t *Turn) VisibleTo(v domain.Viewer) bool { return v.Sees(t.Owner) }

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

// stop cancels the turn's run with cause (nothing once it has finished and let go of its context).
func (t *Turn) stop(cause error) {
	t.mu.Lock()
	cancel := t.cancel
	t.mu.Unlock()
	if cancel != nil {
		cancel(cause)
	}
}

// compact lets go of what a finished turn no longer needs (the contexts and callbacks of its run,
// the spare capacity of its events) and returns the bytes it holds, as the Hub's budget counts
// them: the turn, its events and their text, and what holds it in the Hub.
func (t *Turn) compact() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cancel, t.onEnd, t.orphan = nil, nil, nil
	if cap(t.events) > len(t.events) {
		t.events = append([]Event(nil), t.events...)
	}
	n := turnOverhead + int64(len(t.ID)+len(t.SessionID)+len(t.Model)+len(t.tenant.String())) + int64(len(t.outcome.Content)+len(t.outcome.Model))
	n += int64(len(t.outcome.Citations)) * citationSize
	for _, c := range t.outcome.Citations {
		n += int64(len(c.DocID) + len(c.ChunkID) + len(c.Title) + len(c.Source) + len(c.URL))
	}
	n += int64(len(t.events)) * eventSize
	for _, e := range t.events {
		n += payloadSize(e.Data)
	}
	return n
}

// Sizes for the Hub's accounting. turnOverhead covers the Turn value, its key and map entry in the
// Hub, its list element and its last signal channel; a payload's allocation is rounded up to 16
// bytes. (BenchmarkHubAccounting compares the sum with the heap: 1,293 counted for 1,115 on the heap for a turn of 7 tokens.)
const (
	eventSize    = int64(unsafe.Sizeof(Event{}))
	citationSize = int64(unsafe.Sizeof(CitationData{}))
	turnOverhead = int64(unsafe.Sizeof(Turn{})) + 256
)

func payloadSize(d any) int64 {
	round := func(n int) int64 { return int64((n + 15) &^ 15) }
	switch v := d.(type) {
	case TokenData:
		return round(int(unsafe.Sizeof(v))) + round(len(v.Token))
	case CitationData:
		return round(int(unsafe.Sizeof(v))) + int64(len(v.DocID)+len(v.ChunkID)+len(v.Title)+len(v.Source)+len(v.URL))
	case ToolData:
		return round(int(unsafe.Sizeof(v))) + round(len(v.Name)) + round(len(v.Result))
	case DoneData:
		return round(int(unsafe.Sizeof(v))) + int64(len(v.Model)+len(v.RequestID))
	case ErrorData:
		return round(int(unsafe.Sizeof(v))) + int64(len(v.Code)+len(v.Message))
	}
	return 64
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
		t.orphan = time.AfterFunc(t.window, func() { t.stop(errClientGone) })
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

// Hub holds the latest turn of every (tenant, session) while it runs, and once finished for the
// resume window after, within a budget of bytes: when the finished turns held pass it, the oldest
// finished is dropped first (a client resuming it is answered 404 turn_not_found, as after the
// window). A running turn is never dropped: it is bounded by its own limits (the turn's timeout and
// the model's maximum answer), and its client is reading it.
type Hub struct {
	mu      sync.Mutex
	turns   map[string]*Turn
	ended   list.List // of *Turn held after they finished, oldest first
	budget  int64
	bytes   int64 // of the finished turns held
	window  time.Duration
	timer   *time.Timer // expires the oldest finished turn; nil until the first
	armed   bool
	now     func() time.Time
	onEvict func() // counts a finished turn dropped for the budget (metrics); may be nil
}

// NewHub returns an empty hub that keeps finished turns for window, within budget bytes (0 or less:
// finished turns are not kept).
func NewHub(budget int64, window time.Duration) *Hub {
	return &Hub{turns: map[string]*Turn{}, budget: budget, window: window, now: time.Now}
}

func (h *Hub) put(t *Turn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	k := cacheKey(t.tenant, t.SessionID)
	if old, ok := h.turns[k]; ok && old.held != nil {
		h.unhold(old) // replaced by the session's newer turn
	}
	h.turns[k] = t
}

// finished hands over a turn that has ended: it is held for the resume window if the budget allows,
// dropping older finished turns to make room, and forgotten otherwise.
func (h *Hub) finished(t *Turn) {
	if t.SessionID == "" {
		return // a stateless call: nothing can resume it
	}
	size := t.compact()
	h.mu.Lock()
	defer h.mu.Unlock()
	k := cacheKey(t.tenant, t.SessionID)
	if h.turns[k] != t {
		return // a newer turn of the session replaced it
	}
	if size > h.budget {
		delete(h.turns, k)
		if h.budget > 0 && h.onEvict != nil {
			h.onEvict()
		}
		return
	}
	t.size, t.finishedAt = size, h.now()
	t.held = h.ended.PushBack(t)
	h.bytes += size
	for h.bytes > h.budget {
		oldest := h.ended.Front().Value.(*Turn)
		h.unhold(oldest)
		if k := cacheKey(oldest.tenant, oldest.SessionID); h.turns[k] == oldest {
			delete(h.turns, k)
		}
		if h.onEvict != nil {
			h.onEvict()
		}
	}
	if !h.armed {
		h.armed = true
		if h.timer == nil {
			h.timer = time.AfterFunc(h.window, h.expire)
		} else {
			h.timer.Reset(h.window)
		}
	}
}

// unhold drops t from the finished turns held; h.mu is held.
func (h *Hub) unhold(t *Turn) {
	h.ended.Remove(t.held)
	t.held = nil
	h.bytes -= t.size
}

// expire forgets the finished turns whose window has passed, and sets the timer for the next.
func (h *Hub) expire() {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now()
	for el := h.ended.Front(); el != nil; el = h.ended.Front() {
		t := el.Value.(*Turn)
		if due := t.finishedAt.Add(h.window); now.Before(due) {
			h.timer.Reset(due.Sub(now))
			return
		}
		h.unhold(t)
		if k := cacheKey(t.tenant, t.SessionID); h.turns[k] == t {
			delete(h.turns, k)
		}
	}
	h.armed = false
}

// Get returns the tenant's latest turn of a session, if still held.
func (h *Hub) Get(t tenant.ID, session string) (*Turn, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	tr, ok := h.turns[cacheKey(t, session)]
	if ok && tr.held != nil && !h.now().Before(tr.finishedAt.Add(h.window)) {
		return nil, false // its window has passed; the timer is about to forget it
	}
	return tr, ok
}

// forget drops the session's turn if it has finished (a running one ends on its own and records
// its outcome as session_gone): a deleted session's answer must not stay resumable.
func (h *Hub) forget(t tenant.ID, session string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	k := cacheKey(t, session)
	if tr, ok := h.turns[k]; ok && tr.held != nil {
		h.unhold(tr)
		delete(h.turns, k)
	}
}

// Len is how many turns are held, running or finished (tests, metrics).
func (h *Hub) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.turns)
}

// Stats reports the bytes and the number of the finished turns held for resumption.
func (h *Hub) Stats() (bytes int64, finished int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.bytes, h.ended.Len()
}
