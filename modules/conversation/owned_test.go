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

// GET /sessions lists a user's own sessions and the tenant's, never another user's (before: every
// session of the tenant to every user); a page is filled with visible sessions only; another tenant
// lists none of them.
func TestOwnedSessionsAreListedToTheirOwnerOnly(t *testing.T) {
	t.Parallel()
	e := newEnv(t, opts{})
	ann, bob, shared := []string{sid(), sid(), sid()}, []string{sid()}, sid()
	for _, s := range ann {
		if r := e.do("POST", "/chat", "acme", map[string]any{"sessionId": s, "message": "ann's", "stream": false}, "x-user-id", "ann"); r.status != 200 {
			t.Fatalf("ann's turn: %d %s", r.status, r.raw)
		}
	}
	if r := e.do("POST", "/chat", "acme", map[string]any{"sessionId": bob[0], "message": "bob's", "stream": false}, "x-user-id", "bob"); r.status != 200 {
		t.Fatalf("bob's turn: %d %s", r.status, r.raw)
	}
	if r := e.chatJSON("acme", shared, "ours"); r.status != 200 {
		t.Fatalf("tenant session: %d %s", r.status, r.raw)
	}
	e.sync()
	list := func(tn, user, query string) (ids []string, next string) {
		t.Helper()
		r := e.do("GET", "/sessions"+query, tn, nil, "x-user-id", user)
		if r.status != 200 {
			t.Fatalf("%s/%s list: %d %s", tn, user, r.status, r.raw)
		}
		ss, _ := r.body["sessions"].([]any)
		for _, s := range ss {
			ids = append(ids, s.(map[string]any)["sessionId"].(string))
		}
		next, _ = r.body["nextCursor"].(string)
		return ids, next
	}
	set := func(ids ...[]string) map[string]bool {
		m := map[string]bool{}
		for _, l := range ids {
			for _, id := range l {
				m[id] = true
			}
		}
		return m
	}
	same := func(who string, got []string, want map[string]bool) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("%s lists %v, want %v", who, got, want)
		}
		for _, id := range got {
			if !want[id] {
				t.Fatalf("%s lists %s, not theirs: %v", who, id, got)
			}
		}
	}
	annSees, _ := list("acme", "ann", "?limit=100")
	same("ann", annSees, set(ann, []string{shared}))
	bobSees, _ := list("acme", "bob", "?limit=100")
	same("bob", bobSees, set(bob, []string{shared}))
	nobody, _ := list("acme", "", "?limit=100")
	same("no user", nobody, set([]string{shared}))
	// Pages of 2 for ann: 4 visible sessions in 2 full pages, none of bob's.
	p1, next := list("acme", "ann", "?limit=2")
	if len(p1) != 2 || next == "" {
		t.Fatalf("ann's first page: %v next %q", p1, next)
	}
	p2, _ := list("acme", "ann", "?limit=2&cursor="+next)
	same("ann's pages", append(p1, p2...), set(ann, []string{shared}))
	// Another tenant, even as ann, lists nothing of acme's.
	if g, _ := list("globex", "ann", "?limit=100"); len(g) != 0 {
		t.Fatalf("globex as ann lists %v", g)
	}
}
