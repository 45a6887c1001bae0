package conversation_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	openai "github.com/sashabaranov/go-openai"

	"github.com/crispy-enigma/crispy/modules/conversation"
	"github.com/crispy-enigma/crispy/modules/conversation/events"
	"github.com/crispy-enigma/crispy/platform/ai/aitest"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// openStream posts a streaming chat over a real connection and returns a reader of its events.
func openStream(t *testing.T, ctx context.Context, url, tenantID, session, msg string) (*http.Response, *bufio.Reader) {
	t.Helper()
	body := `{"sessionId":"` + session + `","message":"` + msg + `"}`
	req, _ := http.NewRequestWithContext(ctx, "POST", url+"/chat", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("x-tenant-id", tenantID)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	return resp, bufio.NewReader(resp.Body)
}

// readEvent reads one SSE event (id, name, data line).
func readEvent(t *testing.T, r *bufio.Reader) (id, name, data string) {
	t.Helper()
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("read event: %v", err)
		}
		line = strings.TrimRight(line, "\n")
		switch {
		case line == "":
			return
		case strings.HasPrefix(line, "id: "):
			id = line[4:]
		case strings.HasPrefix(line, "event: "):
			name = line[7:]
		case strings.HasPrefix(line, "data: "):
			data = line[6:]
		}
	}
}

func TestResumeWithLastEventIDWithoutSecondModelCall(t *testing.T) {
	t.Parallel()
	resume := make(chan struct{})
	fake := aitest.New(aitest.Script{Tokens: []string{"one", " two", " three", " four"}, PauseAfter: 2, Resume: resume})
	e := newEnv(t, opts{fake: fake})
	srv := httptest.NewServer(e.h)
	defer srv.Close()
	s := sid()
	ctx, cancel := context.WithCancel(context.Background())
	resp, rd := openStream(t, ctx, srv.URL, "acme", s, "count")
	id1, _, _ := readEvent(t, rd)
	id2, name, data := readEvent(t, rd)
	if id1 != "1" || id2 != "2" || name != "token" || data != `{"token":" two"}` {
		t.Fatalf("%s %s %s %s", id1, id2, name, data)
	}
	cancel() // the client drops mid-turn
	resp.Body.Close()
	close(resume) // the model goes on
	// The client comes back within the window.
	req, _ := http.NewRequest("GET", srv.URL+"/chat/"+s+"/stream", nil)
	req.Header.Set("x-tenant-id", "acme")
	req.Header.Set("Last-Event-ID", "2")
	r2, err := http.DefaultClient.Do(req)
	if err != nil || r2.StatusCode != 200 {
		t.Fatalf("%v %v", err, r2)
	}
	raw, _ := io.ReadAll(r2.Body)
	r2.Body.Close()
	evs := parseSSE(t, string(raw))
	if len(evs) != 3 || evs[0].id != "3" || evs[0].data["token"] != " three" || evs[2].name != "done" {
		t.Fatalf("resumed %+v", evs)
	}
	if fake.Calls() != 1 {
		t.Fatalf("model called %d times", fake.Calls())
	}
	// After the turn, a resume without Last-Event-ID replays the whole turn; another tenant gets 404.
	all := parseSSE(t, e.do("GET", "/chat/"+s+"/stream", "acme", nil).raw)
	if len(all) != 5 || all[4].name != "done" {
		t.Fatalf("%+v", all)
	}
	wantProblem(t, e.do("GET", "/chat/"+s+"/stream", "globex", nil), 404, "session_not_found")
	if ms := messages(e.history("acme", s)); len(ms) != 2 || ms[1]["content"] != "one two three four" {
		t.Fatalf("%v", ms)
	}
}

func TestDisconnectWithoutResumeCancelsUpstreamAndRecordsCancelled(t *testing.T) {
	t.Parallel()
	fake := aitest.New(aitest.Script{Tokens: []string{"partial", " answer"}, BlockAfter: 1})
	e := newEnv(t, opts{fake: fake, config: conversation.Config{ResumeWindow: 50 * time.Millisecond}})
	srv := httptest.NewServer(e.h)
	defer srv.Close()
	s := sid()
	ctx, cancel := context.WithCancel(context.Background())
	resp, rd := openStream(t, ctx, srv.URL, "acme", s, "tell me")
	if _, name, _ := readEvent(t, rd); name != "token" {
		t.Fatal(name)
	}
	cancel()
	resp.Body.Close()
	var failed events.AssistantMessageFailed
	eventually(t, "turn recorded as cancelled", func() bool {
		evs := e.streamEvents("acme", s)
		if len(evs) == 0 {
			return false
		}
		last := evs[len(evs)-1]
		if last.Type != events.TypeAssistantMessageFailed {
			return false
		}
		_ = last.Decode(&failed)
		return true
	})
	if !failed.Cancelled || failed.Code != events.CodeCancelled || failed.PartialContentLength != len("partial") {
		t.Fatalf("%+v", failed)
	}
	if ms := messages(e.history("acme", s)); len(ms) != 1 {
		t.Fatalf("the partial answer must not be history: %v", ms)
	}
}

// conflictStore lets another replica's turn land right before the module's first append to a
// session, so that append meets a wrong expected revision: a complete turn, or one still in
// progress when open is set.
type conflictStore struct {
	eventstore.Store
	hit       atomic.Int32
	conflicts atomic.Int32
	open      bool
}

func (c *conflictStore) Append(ctx context.Context, st tenant.Stream, exp eventstore.ExpectedRevision, evs ...eventstore.EventData) (eventstore.AppendResult, error) {
	if c.hit.Add(1) == 1 {
		start, _ := eventstore.NewEventData(events.TypeSessionStarted, events.SessionStarted{SessionID: st.Entity(), Title: "other"})
		msg, _ := eventstore.NewEventData(events.TypeUserMessageAdded, events.UserMessageAdded{SessionID: st.Entity(), TurnID: "other-replica", Content: "from the other replica"})
		answer, _ := eventstore.NewEventData(events.TypeAssistantMessageCompleted, events.AssistantMessageCompleted{SessionID: st.Entity(), TurnID: "other-replica", Content: "its answer"})
		other := []eventstore.EventData{start, msg, answer}
		if c.open {
			other = other[:2]
		}
		if _, err := c.Store.Append(ctx, st, eventstore.NoStream, other...); err != nil {
			return eventstore.AppendResult{}, err
		}
	}
	res, err := c.Store.Append(ctx, st, exp, evs...)
	if errors.Is(err, eventstore.ErrConflict) {
		c.conflicts.Add(1)
	}
	return res, err
}

func TestOptimisticConcurrencyConflictRetriesFromFreshState(t *testing.T) {
	t.Parallel()
	st := &conflictStore{Store: eventstoretest.NewMemory()}
	e := newEnv(t, opts{store: st})
	s := sid()
	if r := e.chatJSON("acme", s, "mine"); r.status != 200 {
		t.Fatal(r.raw)
	}
	if got := types(e.streamEvents("acme", s)); got != "SessionStarted,UserMessageAdded,AssistantMessageCompleted,UserMessageAdded,AssistantMessageCompleted" {
		t.Fatalf("events %s", got)
	}
	if st.conflicts.Load() != 1 {
		t.Fatalf("%d conflicts, want 1", st.conflicts.Load())
	}
	ms := messages(e.history("acme", s))
	if len(ms) != 4 || ms[0]["content"] != "from the other replica" || ms[2]["content"] != "mine" || ms[3]["role"] != "assistant" {
		t.Fatalf("%v", ms)
	}
}

// Serialisation holds across the optimistic-concurrency retry: when the conflict is another
// replica's turn still in progress, the retry refuses this turn (409 turn_in_progress) instead of
// interleaving with it, and records nothing of it.
func TestConflictWithATurnInProgressElsewhereIsRefusedOnRetry(t *testing.T) {
	t.Parallel()
	st := &conflictStore{Store: eventstoretest.NewMemory(), open: true}
	e := newEnv(t, opts{store: st})
	s := sid()
	wantProblem(t, e.chatJSON("acme", s, "mine"), 409, "turn_in_progress")
	if got := types(e.streamEvents("acme", s)); got != "SessionStarted,UserMessageAdded" {
		t.Fatalf("events %s", got)
	}
	// Once that turn has its outcome, the session takes the next one.
	answer, _ := eventstore.NewEventData(events.TypeAssistantMessageCompleted, events.AssistantMessageCompleted{SessionID: s, TurnID: "other-replica", Content: "its answer"})
	if _, err := st.Store.Append(context.Background(), tenant.MustStream(tenant.MustParse("acme"), "session", s), eventstore.Any, answer); err != nil {
		t.Fatal(err)
	}
	if r := e.chatJSON("acme", s, "mine again"); r.status != 200 {
		t.Fatal(r.raw)
	}
}

func TestOpenAICompatibleEndpointWithGoOpenAIClient(t *testing.T) {
	t.Parallel()
	e := newEnv(t, opts{fake: aitest.New(aitest.Script{Tokens: []string{"Hi", " there"}})})
	srv := httptest.NewServer(e.h)
	defer srv.Close()
	cfg := openai.DefaultConfig("unused-key")
	cfg.BaseURL = srv.URL + "/v1"
	cfg.HTTPClient = &http.Client{Transport: tenantHeader{"acme"}}
	client := openai.NewClientWithConfig(cfg)
	req := openai.ChatCompletionRequest{Model: "fake:m", Messages: []openai.ChatCompletionMessage{
		{Role: openai.ChatMessageRoleSystem, Content: "be brief"}, {Role: openai.ChatMessageRoleUser, Content: "hello"}}}
	res, err := client.CreateChatCompletion(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Choices) != 1 || res.Choices[0].Message.Content != "Hi there" || res.Model != "fake:m" || res.Usage.TotalTokens == 0 || res.Choices[0].FinishReason != "stop" {
		t.Fatalf("%+v", res)
	}
	req.Stream = true
	req.StreamOptions = &openai.StreamOptions{IncludeUsage: true}
	stream, err := client.CreateChatCompletionStream(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	var text strings.Builder
	usage := 0
	for {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range chunk.Choices {
			text.WriteString(c.Delta.Content)
		}
		if chunk.Usage != nil {
			usage = chunk.Usage.TotalTokens
		}
	}
	if text.String() != "Hi there" || usage == 0 {
		t.Fatalf("streamed %q usage %d", text.String(), usage)
	}
	// Errors come back as API errors: a disallowed or malformed model.
	_, err = client.CreateChatCompletion(context.Background(), openai.ChatCompletionRequest{Model: "gpt-4o", Messages: req.Messages})
	var apiErr *openai.RequestError
	var apiErr2 *openai.APIError
	if err == nil || !(errors.As(err, &apiErr) || errors.As(err, &apiErr2)) {
		t.Fatalf("bad model accepted: %v", err)
	}
	// Without x-session-id the calls are stateless: no session, each one's usage recorded.
	if n := len(completions(t, e, "acme")); n != 2 {
		t.Fatalf("%d usage events for 2 calls", n)
	}
	if n := len(e.do("GET", "/sessions", "acme", nil).body["sessions"].([]any)); n != 0 {
		t.Fatalf("%d sessions listed after stateless calls", n)
	}
}

type tenantHeader struct{ id string }

func (h tenantHeader) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("x-tenant-id", h.id)
	return http.DefaultTransport.RoundTrip(r)
}

// brokenStore refuses every append.
type brokenStore struct{ eventstore.Store }

func (brokenStore) Append(context.Context, tenant.Stream, eventstore.ExpectedRevision, ...eventstore.EventData) (eventstore.AppendResult, error) {
	return eventstore.AppendResult{}, errors.New("disk on fire")
}

func TestUnrecordableMessageEndsTheTurnWithAnError(t *testing.T) {
	t.Parallel()
	e := newEnv(t, opts{store: brokenStore{eventstoretest.NewMemory()}, fake: aitest.New(aitest.Script{Block: true})})
	r := e.chatJSON("acme", sid(), "hi")
	wantProblem(t, r, 500, "record_failed")
	if strings.Contains(r.raw, "disk on fire") {
		t.Fatal("internal cause leaked to the client")
	}
	r = e.chat("acme", sid(), "hi", nil)
	wantProblem(t, r, 500, "record_failed")
}

func TestDeleteDuringTurnKeepsTheAnswerOut(t *testing.T) {
	t.Parallel()
	resume := make(chan struct{})
	e := newEnv(t, opts{fake: aitest.New(aitest.Script{Tokens: []string{"secret", " answer"}, PauseAfter: 1, Resume: resume})})
	srv := httptest.NewServer(e.h)
	defer srv.Close()
	s := sid()
	resp, rd := openStream(t, context.Background(), srv.URL, "acme", s, "tell me")
	defer resp.Body.Close()
	if _, name, _ := readEvent(t, rd); name != "token" {
		t.Fatal(name)
	}
	eventually(t, "user message recorded", func() bool { return e.history("acme", s).status == 200 })
	if r := e.do("DELETE", "/chat/"+s, "acme", nil); r.status != 200 {
		t.Fatal(r.raw)
	}
	close(resume)
	rest, _ := io.ReadAll(rd)
	if !strings.Contains(string(rest), "event: done") {
		t.Fatalf("%s", rest)
	}
	evs := e.streamEvents("acme", s)
	if readable(evs) != "SessionDeleted,AssistantMessageFailed" {
		t.Fatalf("events %s", readable(evs))
	}
	last := evs[len(evs)-1]
	var f events.AssistantMessageFailed
	_ = last.Decode(&f)
	if f.Code != events.CodeSessionGone || strings.Contains(string(last.Data), "secret") || f.PartialContentLength != len("secret answer") {
		t.Fatalf("%s", last.Data)
	}
	if e.atRest("acme", "tell me") || e.atRest("acme", "secret") {
		t.Fatal("the turn's content is stored in plain text")
	}
	wantProblem(t, e.history("acme", s), 404, "session_not_found")
	// The failure recorded after the deletion does not bring the session back into the list: once a
	// later session is listed (events are projected in order), the deleted one is not.
	later := sid()
	if r := e.chatJSON("acme", later, "later"); r.status != 200 {
		t.Fatal(r.raw)
	}
	eventually(t, "the later session is listed", func() bool {
		return strings.Contains(e.do("GET", "/sessions", "acme", nil).raw, later)
	})
	if list := e.do("GET", "/sessions", "acme", nil); strings.Contains(list.raw, s) {
		t.Fatalf("the deleted session is listed again: %s", list.raw)
	}
}
