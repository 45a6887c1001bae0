package conversation_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/modules/conversation"
	"github.com/crispy-enigma/crispy/modules/conversation/events"
	"github.com/crispy-enigma/crispy/platform/ai/aitest"
)

// lastFailure returns the session's last event as a failure, failing the test when it is anything
// else: Shutdown must have recorded every outcome before it returns, so nothing is awaited here.
func lastFailure(t *testing.T, e *env, session string) events.AssistantMessageFailed {
	t.Helper()
	evs := e.streamEvents("acme", session)
	if strings.Contains(types(evs), "Completed") || len(evs) == 0 || evs[len(evs)-1].Type != events.TypeAssistantMessageFailed {
		t.Fatalf("session %s: events %s, want the turn recorded as failed", session, types(evs))
	}
	return decodeFailure(t, evs[len(evs)-1])
}

// At shutdown every open turn, through the real HTTP server, ends honestly before Shutdown returns:
// a stream mid-answer gets an error event shutting_down, a JSON request waiting for its first token
// gets a 503 shutting_down problem, a turn whose client has gone is ended too; each is recorded as
// failed (shutting_down, the partial answer cancelled, never complete). Later turns are refused.
func TestShutdownEndsOpenTurnsWithAnErrorEventAndRecordsThem(t *testing.T) {
	t.Parallel()
	fake := aitest.New(aitest.Script{Block: true})
	fake.Push(aitest.Script{Tokens: []string{"partial", " answer"}, BlockAfter: 1}, aitest.Script{Block: true},
		aitest.Script{Tokens: []string{"gone", " away"}, BlockAfter: 1})
	// A long resume window: the turn whose client left is still running when the server stops.
	e := newEnv(t, opts{fake: fake, config: conversation.Config{ResumeWindow: time.Minute}})
	srv := httptest.NewServer(e.h)
	defer srv.Close()

	streaming, waiting, orphan := sid(), sid(), sid()
	resp, rd := openStream(t, context.Background(), srv.URL, "acme", streaming, "tell me")
	defer resp.Body.Close()
	if _, name, _ := readEvent(t, rd); name != "token" {
		t.Fatal(name)
	}
	jsonDone := make(chan *http.Response, 1)
	go func() {
		req, _ := http.NewRequest("POST", srv.URL+"/chat", bytes.NewReader([]byte(`{"sessionId":"`+waiting+`","message":"and you?","stream":false}`)))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("x-tenant-id", "acme")
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			r = nil
		}
		jsonDone <- r
	}()
	eventually(t, "the JSON turn calls the model", func() bool { return fake.Calls() == 2 })
	octx, ocancel := context.WithCancel(context.Background())
	oresp, ord := openStream(t, octx, srv.URL, "acme", orphan, "bye")
	if _, name, _ := readEvent(t, ord); name != "token" {
		t.Fatal(name)
	}
	ocancel()
	oresp.Body.Close()

	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.mod.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}

	// Recorded before Shutdown returned.
	for _, s := range []string{streaming, waiting, orphan} {
		f := lastFailure(t, e, s)
		if f.Code != events.CodeShuttingDown || !f.Cancelled {
			t.Fatalf("session %s recorded %+v", s, f)
		}
	}
	if f := lastFailure(t, e, streaming); f.PartialContentLength != len("partial") {
		t.Fatalf("partial length %d", f.PartialContentLength)
	}
	if ms := messages(e.history("acme", streaming)); len(ms) != 1 || ms[0]["role"] != "user" {
		t.Fatalf("history %v: the partial answer must not be history", ms)
	}

	// The stream ended with the error event.
	_, name, data := readEvent(t, rd)
	var ed map[string]any
	_ = json.Unmarshal([]byte(data), &ed)
	if name != "error" || ed["code"] != events.CodeShuttingDown {
		t.Fatalf("last event %s %s", name, data)
	}
	if rest, _ := io.ReadAll(rd); len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("after the error event: %q", rest)
	}
	// The JSON request got a problem that says so.
	jr := <-jsonDone
	if jr == nil {
		t.FailNow()
	}
	body, _ := io.ReadAll(jr.Body)
	jr.Body.Close()
	if jr.StatusCode != 503 || !strings.Contains(string(body), `"code":"shutting_down"`) || jr.Header.Get("Retry-After") == "" {
		t.Fatalf("JSON turn: %d %s %v", jr.StatusCode, body, jr.Header)
	}
	// New turns are refused while the server stops.
	s := sid()
	wantProblem(t, e.chatJSON("acme", s, "too late"), 503, "shutting_down")
	if evs := e.streamEvents("acme", s); len(evs) != 0 {
		t.Fatalf("a refused turn recorded %s", types(evs))
	}
	// Shutdown again (the server calls it twice) has nothing left to do.
	if err := e.mod.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
}
