package conversation_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/crispy-enigma/crispy/modules/conversation/events"
	"github.com/crispy-enigma/crispy/platform/ai/aitest"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// readCounter counts the session streams read.
type readCounter struct {
	eventstore.Store
	mu    sync.Mutex
	reads map[string]int
}

func (c *readCounter) ReadStream(ctx context.Context, st tenant.Stream, from uint64, max int) ([]eventstore.Event, error) {
	c.mu.Lock()
	c.reads[st.String()]++
	c.mu.Unlock()
	return c.Store.ReadStream(ctx, st, from, max)
}

func (c *readCounter) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, v := range c.reads {
		n += v
	}
	return n
}

// seedTurn appends a turn as an earlier run of the server would have: the user's message and, when
// complete, the answer. A turn without its answer is what a crash mid-turn leaves.
func seedTurn(t *testing.T, st eventstore.Store, tenantID, session, turnID string, complete bool) {
	t.Helper()
	stream := tenant.MustStream(tenant.MustParse(tenantID), events.SessionCategory, session)
	var evs []eventstore.EventData
	if cur, _ := st.ReadStream(context.Background(), stream, 0, 0); len(cur) == 0 {
		ev, _ := eventstore.NewEventData(events.TypeSessionStarted, events.SessionStarted{SessionID: session, Tenant: tenantID, Title: "seeded"})
		evs = append(evs, ev)
	}
	u, _ := eventstore.NewEventData(events.TypeUserMessageAdded, events.UserMessageAdded{SessionID: session, TurnID: turnID, Content: "question " + turnID})
	evs = append(evs, u)
	if complete {
		a, _ := eventstore.NewEventData(events.TypeAssistantMessageCompleted, events.AssistantMessageCompleted{SessionID: session, TurnID: turnID, Content: "answer " + turnID})
		evs = append(evs, a)
	}
	if _, err := st.Append(context.Background(), stream, eventstore.Any, evs...); err != nil {
		t.Fatal(err)
	}
}

// A turn with a user message and no outcome, left by a crash, is closed as interrupted on start: an
// AssistantMessageFailed "interrupted" is appended for it, found through the session list read model
// (only those sessions are read), and the next turn in that session works.
func TestStartClosesTurnsACrashLeftOpen(t *testing.T) {
	t.Parallel()
	mem := eventstoretest.NewMemory()
	open1, open2, openBeta, fine := sid(), sid(), sid(), sid()
	seedTurn(t, mem, "acme", open1, "t1", false)
	seedTurn(t, mem, "acme", open2, "t2", true)
	seedTurn(t, mem, "acme", open2, "t3", false)
	seedTurn(t, mem, "beta", openBeta, "t4", false)
	seedTurn(t, mem, "acme", fine, "t5", true)
	for i := 0; i < 20; i++ {
		seedTurn(t, mem, "acme", sid(), fmt.Sprintf("done-%d", i), true)
	}
	rc := &readCounter{Store: mem, reads: map[string]int{}}
	e := newEnv(t, opts{store: rc})
	eventually(t, "the session list has caught up", func() bool {
		ss, _ := e.do("GET", "/sessions?limit=100", "acme", nil).body["sessions"].([]any)
		return len(ss) == 23
	})
	before := rc.total()
	n, err := e.mod.CloseInterrupted(context.Background())
	if err != nil || n != 3 {
		t.Fatalf("closed %d, err %v; want 3", n, err)
	}
	if reads := rc.total() - before; reads != 3 {
		t.Fatalf("%d stream reads to close 3 turns: only the sessions with open turns may be read", reads)
	}
	for _, c := range []struct{ tenant, session, turn, events string }{
		{"acme", open1, "t1", "SessionStarted,UserMessageAdded,AssistantMessageFailed"},
		{"acme", open2, "t3", "SessionStarted,UserMessageAdded,AssistantMessageCompleted,UserMessageAdded,AssistantMessageFailed"},
		{"beta", openBeta, "t4", "SessionStarted,UserMessageAdded,AssistantMessageFailed"},
	} {
		evs := e.streamEvents(c.tenant, c.session)
		if types(evs) != c.events {
			t.Fatalf("%s: %s", c.session, types(evs))
		}
		var f events.AssistantMessageFailed
		if err := evs[len(evs)-1].Decode(&f); err != nil || f.Code != events.CodeInterrupted || f.TurnID != c.turn || f.SessionID != c.session {
			t.Fatalf("%s: %+v %v", c.session, f, err)
		}
	}
	if got := types(e.streamEvents("acme", fine)); got != "SessionStarted,UserMessageAdded,AssistantMessageCompleted" {
		t.Fatalf("a complete session was touched: %s", got)
	}
	// History keeps the question; the next turn works and the stream stays well-formed.
	if ms := messages(e.history("acme", open1)); len(ms) != 1 || ms[0]["content"] != "question t1" {
		t.Fatalf("history %v", ms)
	}
	if r := e.chatJSON("acme", open1, "again"); r.status != 200 {
		t.Fatalf("next turn: %d %s", r.status, r.raw)
	}
	if got := types(e.streamEvents("acme", open1)); got != "SessionStarted,UserMessageAdded,AssistantMessageFailed,UserMessageAdded,AssistantMessageCompleted" {
		t.Fatalf("events %s", got)
	}
	// Once the read model has seen the outcomes, a second run closes nothing.
	eventually(t, "the read model sees the outcomes", func() bool {
		n, err := e.mod.CloseInterrupted(context.Background())
		return err == nil && n == 0
	})
}

// A turn left open by an earlier run does not block its session even before CloseInterrupted has
// run: the next turn closes it as interrupted in the same append as its own message.
func TestNextTurnClosesATurnLeftOpenBeforeThisStart(t *testing.T) {
	t.Parallel()
	mem := eventstoretest.NewMemory()
	s := sid()
	seedTurn(t, mem, "acme", s, "old", false)
	e := newEnv(t, opts{store: mem})
	if r := e.chatJSON("acme", s, "hello?"); r.status != 200 {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	evs := e.streamEvents("acme", s)
	if types(evs) != "SessionStarted,UserMessageAdded,AssistantMessageFailed,UserMessageAdded,AssistantMessageCompleted" {
		t.Fatalf("events %s", types(evs))
	}
	if f := decodeFailure(t, evs[2]); f.Code != events.CodeInterrupted || f.TurnID != "old" {
		t.Fatalf("%+v", f)
	}
}

// A turn of this process whose user message was recorded but whose outcome the store refused ends
// (503 storage_unavailable) without holding its session: once the store takes writes again, the
// next turn is accepted (not 409 turn_in_progress) and closes the lost turn as interrupted first.
func TestATurnWhoseOutcomeWasNotRecordedDoesNotBlockItsSession(t *testing.T) {
	t.Parallel()
	mem := eventstoretest.NewMemory()
	gate := make(chan struct{})
	fake := aitest.New(aitest.Script{})
	fake.Push(aitest.Script{Gate: gate})
	e := newEnv(t, opts{store: mem, fake: fake})
	s := sid()
	first := make(chan resp, 1)
	go func() { first <- e.chatJSON("acme", s, "lost answer") }()
	eventually(t, "the user's message is recorded", func() bool { return types(e.streamEvents("acme", s)) == "SessionStarted,UserMessageAdded" })
	mem.FailAppends(eventstore.ErrStorageUnavailable)
	close(gate)
	wantProblem(t, <-first, 503, "storage_unavailable")
	mem.FailAppends(nil)
	if r := e.chatJSON("acme", s, "again"); r.status != 200 {
		t.Fatalf("next turn: %d %s", r.status, r.raw)
	}
	evs := e.streamEvents("acme", s)
	if types(evs) != "SessionStarted,UserMessageAdded,AssistantMessageFailed,UserMessageAdded,AssistantMessageCompleted" {
		t.Fatalf("events %s", types(evs))
	}
	if f := decodeFailure(t, evs[2]); f.Code != events.CodeInterrupted {
		t.Fatalf("the lost turn was closed with %+v", f)
	}
}

// The start-up sweep never closes a turn that runs in this process: called while one is held in its
// model call, it closes nothing, and the turn ends with its own answer.
func TestCloseInterruptedLeavesATurnInProgressHere(t *testing.T) {
	t.Parallel()
	gate := make(chan struct{})
	e := newEnv(t, opts{fake: aitest.New(aitest.Script{Gate: gate})})
	s := sid()
	done := make(chan resp, 1)
	go func() { done <- e.chatJSON("acme", s, "still thinking") }()
	eventually(t, "the turn is open in the store and the session list", func() bool {
		ss, _ := e.do("GET", "/sessions", "acme", nil).body["sessions"].([]any)
		return types(e.streamEvents("acme", s)) == "SessionStarted,UserMessageAdded" && len(ss) == 1
	})
	if n, err := e.mod.CloseInterrupted(context.Background()); err != nil || n != 0 {
		t.Fatalf("closed %d, err %v, while the turn runs", n, err)
	}
	close(gate)
	if r := <-done; r.status != 200 {
		t.Fatalf("the running turn: %d %s", r.status, r.raw)
	}
	if got := types(e.streamEvents("acme", s)); got != "SessionStarted,UserMessageAdded,AssistantMessageCompleted" {
		t.Fatalf("events %s", got)
	}
}

func decodeFailure(t *testing.T, ev eventstore.Event) events.AssistantMessageFailed {
	t.Helper()
	var f events.AssistantMessageFailed
	if err := ev.Decode(&f); err != nil {
		t.Fatal(err)
	}
	return f
}
