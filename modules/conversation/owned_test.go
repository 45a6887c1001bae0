package conversation_test

import (
	"testing"

	"github.com/crispy-enigma/crispy/platform/ai/aitest"
)

// A session started with a user id is that user's: another x-user-id of the same tenant gets 404
// on its history, its stream, a new turn in it and its deletion (before: any x-user-id of the
// tenant could read or delete it). A session started without a user id stays the tenant's, and
// another tenant still sees nothing.
func TestOwnedSessionsAreInvisibleToOtherUsers(t *testing.T) {
	t.Parallel()
	e := newEnv(t, opts{})
	s := sid()
	if r := e.do("POST", "/chat", "acme", map[string]any{"sessionId": s, "message": "mine", "stream": false}, "x-user-id", "ann"); r.status != 200 {
		t.Fatalf("ann's turn: %d %s", r.status, r.raw)
	}
	for _, c := range []struct{ who, method, path string }{
		{"bob", "GET", "/chat/" + s + "/history"},
		{"", "GET", "/chat/" + s + "/history"},
		{"bob", "GET", "/chat/" + s + "/stream"},
	} {
		r := e.do(c.method, c.path, "acme", nil, "x-user-id", c.who)
		wantProblem(t, r, 404, "session_not_found")
	}
	wantProblem(t, e.do("POST", "/chat", "acme", map[string]any{"sessionId": s, "message": "let me in", "stream": false}, "x-user-id", "bob"), 404, "session_not_found")
	wantProblem(t, e.do("DELETE", "/chat/"+s, "acme", nil, "x-user-id", "bob"), 404, "session_not_found")
	// Another tenant, even as the same user, sees nothing either.
	wantProblem(t, e.do("GET", "/chat/"+s+"/history", "globex", nil, "x-user-id", "ann"), 404, "session_not_found")
	// The owner still reads, continues and deletes it.
	if r := e.do("GET", "/chat/"+s+"/history", "acme", nil, "x-user-id", "ann"); r.status != 200 {
		t.Fatalf("ann's history: %d %s", r.status, r.raw)
	}
	if r := e.do("POST", "/chat", "acme", map[string]any{"sessionId": s, "message": "again", "stream": false}, "x-user-id", "ann"); r.status != 200 {
		t.Fatalf("ann's second turn: %d %s", r.status, r.raw)
	}
	if r := e.do("DELETE", "/chat/"+s, "acme", nil, "x-user-id", "ann"); r.status/100 != 2 {
		t.Fatalf("ann's delete: %d %s", r.status, r.raw)
	}
	// A session without a user id is the tenant's.
	shared := sid()
	if r := e.chatJSON("acme", shared, "ours"); r.status != 200 {
		t.Fatalf("tenant session: %d %s", r.status, r.raw)
	}
	if r := e.do("GET", "/chat/"+shared+"/history", "acme", nil, "x-user-id", "bob"); r.status != 200 {
		t.Fatalf("bob on the tenant's session: %d %s", r.status, r.raw)
	}
}

// A turn kept for resumption is resumable only by its session's owner.
func TestOwnedSessionStreamIsNotResumableByOthers(t *testing.T) {
	t.Parallel()
	gate := make(chan struct{})
	e := newEnv(t, opts{fake: aitest.New(aitest.Script{Gate: gate})})
	s := sid()
	done := make(chan resp, 1)
	go func() {
		done <- e.do("POST", "/chat", "acme", map[string]any{"sessionId": s, "message": "slow", "stream": false}, "x-user-id", "ann")
	}()
	eventually(t, "the turn is running", func() bool {
		r := e.do("GET", "/chat/"+s+"/stream", "acme", nil, "x-user-id", "bob")
		return r.status == 404
	})
	close(gate)
	if r := <-done; r.status != 200 {
		t.Fatalf("ann's turn: %d %s", r.status, r.raw)
	}
	wantProblem(t, e.do("GET", "/chat/"+s+"/stream", "acme", nil, "x-user-id", "bob"), 404, "session_not_found")
}
