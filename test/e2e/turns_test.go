package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	crispy "github.com/crispy-enigma/crispy/openapi/clients/go"
	"github.com/crispy-enigma/crispy/platform/ai/aitest"
)

// slowModel points the server's OpenAI-compatible provider at a model that sends one token and then
// hangs until the request ends. It sets the environment, so its tests do not run in parallel.
func slowModel(t *testing.T) *aitest.Upstream {
	t.Helper()
	up := &aitest.Upstream{Tokens: []string{"partial"}, End: aitest.EndHang}
	srv := httptest.NewServer(up)
	t.Cleanup(srv.Close)
	t.Setenv("CRISPY_OPENAI_BASE_URL", srv.URL)
	return up
}

// openChat posts a streamed chat turn for acme and returns the body once its first token arrived.
func openChat(t *testing.T, baseURL string, session uuid.UUID) (*bufio.Reader, io.Closer) {
	t.Helper()
	body := `{"sessionId":"` + session.String() + `","message":"take your time"}`
	req, _ := http.NewRequest("POST", baseURL+"/chat", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("x-api-key", "ce_acme_key")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("chat: %d %s", resp.StatusCode, b)
	}
	rd := bufio.NewReader(resp.Body)
	if evs := readSSE(t, rd, 1); evs[0].name != "token" {
		t.Fatalf("first event %+v", evs[0])
	}
	return rd, resp.Body
}

type sse struct {
	name string
	data map[string]any
}

// readSSE reads up to n events (all of them for n < 0) until EOF.
func readSSE(t *testing.T, rd *bufio.Reader, n int) []sse {
	t.Helper()
	var out []sse
	var cur sse
	for n < 0 || len(out) < n {
		line, err := rd.ReadString('\n')
		if err != nil {
			if n >= 0 {
				t.Fatalf("stream ended after %d events: %v", len(out), err)
			}
			return out
		}
		line = strings.TrimRight(line, "\n")
		switch {
		case line == "" && cur.name != "":
			out = append(out, cur)
			cur = sse{}
		case strings.HasPrefix(line, "event: "):
			cur.name = line[7:]
		case strings.HasPrefix(line, "data: "):
			_ = json.Unmarshal([]byte(line[6:]), &cur.data)
		}
	}
	return out
}

// failureOf returns the code of the session's recorded failures, and the session as audit shows it.
func failureOf(t *testing.T, baseURL string, session uuid.UUID) ([]string, *crispy.GetAuditSessionOutput) {
	t.Helper()
	c := as(t, baseURL, "acme", "ce_acme_key")
	stream := "session-" + session.String()
	typ := "conversation.AssistantMessageFailed"
	evs, err := c.ListAuditEventsWithResponse(ctx(t), &crispy.ListAuditEventsParams{Stream: &stream, Type: &typ})
	if err != nil || evs.JSON200 == nil {
		t.Fatalf("audit events: %v %s", err, evs.Body)
	}
	var codes []string
	for _, e := range evs.JSON200.Events {
		// Session events are sealed at rest: data is what the store holds (the hash covers it),
		// content is the data opened with the session's key.
		d, _ := e.Content.(map[string]any)
		if d == nil {
			d, _ = e.Data.(map[string]any)
		}
		code, ok := d["code"].(string)
		if !ok {
			t.Fatalf("audit event %s holds no failure code: content %v, data %v", e.Id, e.Content, e.Data)
		}
		codes = append(codes, code)
	}
	s, err := c.GetAuditSessionWithResponse(ctx(t), session, &crispy.GetAuditSessionParams{})
	if err != nil || s.JSON200 == nil {
		t.Fatalf("audit session: %v %s", err, s.Body)
	}
	return codes, s.JSON200
}

// At the --shutdown-timeout deadline, an open stream of the real binary gets an error event
// shutting_down and its outcome is recorded before the process exits: after a restart, audit shows
// the turn failed (cancelled), never complete, and the session takes the next turn.
func TestShutdownDeadlineEndsOpenStreamsWithAnErrorAndAnOutcome(t *testing.T) {
	slowModel(t)
	data := t.TempDir()
	tenants := tenantsFile(t, t.TempDir())
	// 8 s: open turns are ended 2 s before the deadline (drainMargin), time enough on a loaded
	// machine to record the outcome and write the error event; 3 s left only 0.75 s for that.
	srv := startServer(t, data, "--tenants", tenants, "--shutdown-timeout", "8s")
	session := uuid.New()
	rd, body := openChat(t, srv.BaseURL, session)
	defer body.Close()
	rest := make(chan []sse, 1)
	go func() { rest <- readSSE(t, rd, -1) }()
	if err := srv.Stop(); err != nil {
		t.Fatalf("exit: %v\n%s", err, srv.Logs)
	}
	var evs []sse
	select {
	case evs = <-rest:
	case <-time.After(30 * time.Second):
		t.Fatal("the stream did not end when the server exited")
	}
	if len(evs) != 1 || evs[0].name != "error" || evs[0].data["code"] != "shutting_down" {
		t.Fatalf("after the first token the stream sent %+v, want one error event shutting_down", evs)
	}

	srv2 := startServer(t, data, "--tenants", tenants)
	codes, s := failureOf(t, srv2.BaseURL, session)
	if strings.Join(codes, ",") != "shutting_down" {
		t.Fatalf("recorded failures %v", codes)
	}
	ms := s.Messages
	if len(ms) != 2 || ms[1].Status == nil || *ms[1].Status != "cancelled" || ms[1].Content != "" {
		t.Fatalf("audited session %+v", ms)
	}
	// Only once the start has had its chance to close turns (it does, once the read models caught up)
	// does the absence of the line say anything.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, ok := srv2.Logs.Find("read models caught up"); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server never said its read models caught up:\n%s", srv2.Logs)
		}
	}
	if _, ok := srv2.Logs.Find("closed chat turns interrupted"); ok {
		t.Fatalf("a turn recorded at shutdown was closed again at start:\n%s", srv2.Logs)
	}
	next, err := as(t, srv2.BaseURL, "acme", "ce_acme_key").SendChatMessageWithResponse(ctx(t), &crispy.SendChatMessageParams{},
		crispy.SendChatMessageInput{SessionId: session, Message: "again", Stream: ptr(false), ModelId: ptr("builtin:offline")})
	if err != nil || next.JSON200 == nil {
		t.Fatalf("next turn: %v %s", err, next.Body)
	}
}

// A turn cut by kill -9 (user message recorded, no outcome) is closed as interrupted when the server
// starts again, so audit and history show it, and the session takes its next turn.
func TestKill9MidTurnIsClosedAsInterruptedOnStart(t *testing.T) {
	up := slowModel(t)
	data := t.TempDir()
	tenants := tenantsFile(t, t.TempDir())
	srv := startServer(t, data, "--tenants", tenants)
	session := uuid.New()
	_, body := openChat(t, srv.BaseURL, session)
	defer body.Close()
	// The user's message is durable before the kill.
	deadline := time.Now().Add(30 * time.Second)
	c := as(t, srv.BaseURL, "acme", "ce_acme_key")
	for {
		s, err := c.GetAuditSessionWithResponse(ctx(t), session, &crispy.GetAuditSessionParams{})
		if err == nil && s.JSON200 != nil && len(s.JSON200.Messages) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the user's message was never recorded")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if up.Hanging() != 1 {
		t.Fatalf("%d model calls in flight, want 1", up.Hanging())
	}
	srv.Kill()

	srv2 := startServer(t, data, "--tenants", tenants)
	// The server listens while its read models catch up; it closes the interrupted turns once they
	// have, so the line comes shortly after the start.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, ok := srv2.Logs.Find("closed chat turns interrupted", `"count":1`); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("start did not report closing the interrupted turn:\n%s", srv2.Logs)
		}
	}
	codes, s := failureOf(t, srv2.BaseURL, session)
	if strings.Join(codes, ",") != "interrupted" {
		t.Fatalf("recorded failures %v", codes)
	}
	if ms := s.Messages; len(ms) != 2 || ms[0].Content != "take your time" || ms[1].Status == nil || *ms[1].Status != "failed" {
		t.Fatalf("audited session %+v", ms)
	}
	c = as(t, srv2.BaseURL, "acme", "ce_acme_key")
	next, err := c.SendChatMessageWithResponse(context.Background(), &crispy.SendChatMessageParams{},
		crispy.SendChatMessageInput{SessionId: session, Message: "again", Stream: ptr(false), ModelId: ptr("builtin:offline")})
	if err != nil || next.JSON200 == nil {
		t.Fatalf("next turn: %v %s", err, next.Body)
	}
	hist, err := c.GetChatHistoryWithResponse(ctx(t), session.String(), &crispy.GetChatHistoryParams{})
	if err != nil || hist.JSON200 == nil || len(hist.JSON200.Messages) != 3 {
		t.Fatalf("history: %v %s", err, hist.Body)
	}
}
