package conversation_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	tenancyevents "github.com/crispy-enigma/crispy/modules/tenancy/events"
	"github.com/crispy-enigma/crispy/platform/ai/aitest"
)

// Six turns of one session at once, the first held in its model call: exactly one proceeds, the
// other five are refused with 409 turn_in_progress (problem JSON) and recorded nowhere; the history
// is well-formed (user, assistant) and the session takes its next turn afterwards.
func TestSixConcurrentTurnsOfOneSession(t *testing.T) {
	t.Parallel()
	gate := make(chan struct{})
	fake := aitest.New(aitest.Script{Gate: gate})
	// beta answers with the offline model, which the gate does not hold.
	e := newEnv(t, opts{fake: fake, tenants: map[string]tenancyevents.TenantConfig{"beta": {ID: "beta", Models: tenancyevents.Models{Chat: "builtin:offline"}}}})
	s := sid()
	const n = 6
	type result struct {
		msg string
		r   resp
	}
	results := make(chan result, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			msg := fmt.Sprintf("message %d", i)
			results <- result{msg, e.chatJSON("acme", s, msg)}
		}(i)
	}
	// The refused five answer at once; the one that proceeds waits for the gate.
	var refused []result
	for len(refused) < n-1 {
		res := <-results
		if res.r.status == 200 {
			t.Fatalf("a turn completed while the model was held: %s", res.r.raw)
		}
		wantProblem(t, res.r, 409, "turn_in_progress")
		if ct := res.r.header.Get("Content-Type"); ct != "application/problem+json" {
			t.Fatalf("content type %q", ct)
		}
		refused = append(refused, res)
	}
	// Another tenant's session of the same id is not held by this one.
	if r := e.chatJSON("beta", s, "same id, other tenant"); r.status != 200 {
		t.Fatalf("other tenant: %d %s", r.status, r.raw)
	}
	close(gate)
	wg.Wait()
	close(results)
	ok := <-results
	if ok.r.status != 200 {
		t.Fatalf("the proceeding turn: %d %s", ok.r.status, ok.r.raw)
	}
	if fake.Calls() != 1 {
		t.Fatalf("%d model calls, want 1", fake.Calls())
	}
	ms := messages(e.history("acme", s))
	if len(ms) != 2 || ms[0]["role"] != "user" || ms[0]["content"] != ok.msg || ms[1]["role"] != "assistant" {
		t.Fatalf("history %v", ms)
	}
	if got := types(e.streamEvents("acme", s)); got != "SessionStarted,UserMessageAdded,AssistantMessageCompleted" {
		t.Fatalf("events %s", got)
	}
	// The session is free again: the next turns proceed one after the other.
	for i := 0; i < 2; i++ {
		if r := e.chatJSON("acme", s, fmt.Sprintf("next %d", i)); r.status != 200 {
			t.Fatalf("next turn: %d %s", r.status, r.raw)
		}
	}
	got := types(e.streamEvents("acme", s))
	if strings.Count(got, "UserMessageAdded,AssistantMessageCompleted") != 3 || strings.Count(got, "UserMessageAdded") != 3 {
		t.Fatalf("events %s", got)
	}
}

// A turn refused after it took its session's hold (its tool not found, a panic on the way, tools
// not available on the server) lets the session go: the next turn proceeds, and nothing of the
// refused ones is recorded.
func TestARefusedTurnFreesItsSession(t *testing.T) {
	t.Parallel()
	withTools, without := newEnv(t, opts{tools: fakeTools{}}), newEnv(t, opts{})
	s := sid()
	for _, c := range []struct {
		e      *env
		tool   string
		status int
	}{{withTools, "missing", 404}, {withTools, "panics", 500}, {without, "summarize", 503}} {
		for i := 0; i < 2; i++ {
			if r := c.e.chat("acme", s, "use a tool", map[string]any{"stream": false, "tool_name": c.tool}); r.status != c.status {
				t.Fatalf("tool %s: %d %s, want %d", c.tool, r.status, r.raw, c.status)
			}
		}
		if r := c.e.chatJSON("acme", s, "plain"); r.status != 200 {
			t.Fatalf("after tool %s was refused: %d %s", c.tool, r.status, r.raw)
		}
	}
	turn := ",UserMessageAdded,AssistantMessageCompleted"
	for e, want := range map[*env]string{withTools: "SessionStarted" + turn + turn, without: "SessionStarted" + turn} {
		if got := types(e.streamEvents("acme", s)); got != want {
			t.Fatalf("events %s, want %s", got, want)
		}
	}
}
