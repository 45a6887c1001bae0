package conversation_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/crispy-enigma/crispy/modules/conversation"
	"github.com/crispy-enigma/crispy/modules/conversation/events"
	tenancyevents "github.com/crispy-enigma/crispy/modules/tenancy/events"
	"github.com/crispy-enigma/crispy/platform/ai"
	"github.com/crispy-enigma/crispy/platform/ai/aitest"
	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/eventstore/embedded"
	"github.com/crispy-enigma/crispy/platform/sealing"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

func sid() string { return uuid.NewString() }

func TestChatStreamsSSEFraming(t *testing.T) {
	t.Parallel()
	e := newEnv(t, opts{})
	s := sid()
	r := e.chat("acme", s, "hello", nil)
	if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("%d %s %s", r.status, r.header.Get("Content-Type"), r.raw)
	}
	evs := parseSSE(t, r.raw)
	var text strings.Builder
	for i, ev := range evs {
		if ev.id != fmt.Sprint(i+1) {
			t.Fatalf("event %d has id %q", i, ev.id)
		}
		if ev.name == "token" {
			text.WriteString(ev.data["token"].(string))
		}
	}
	last := evs[len(evs)-1]
	if last.name != "done" || text.String() != "Hello from the fake" {
		t.Fatalf("events %+v", evs)
	}
	if last.data["model"] != "fake:m" || last.data["requestId"] != r.header.Get("x-request-id") {
		t.Fatalf("done %v", last.data)
	}
	u := last.data["usage"].(map[string]any)
	if u["totalTokens"].(float64) <= 0 || u["totalTokens"] != u["promptTokens"].(float64)+u["completionTokens"].(float64) {
		t.Fatalf("usage %v", u)
	}
	h := e.history("acme", s)
	ms := messages(h)
	if h.status != 200 || len(ms) != 2 || ms[0]["role"] != "user" || ms[0]["content"] != "hello" || ms[1]["content"] != "Hello from the fake" {
		t.Fatalf("history %s", h.raw)
	}
	if got := types(e.streamEvents("acme", s)); got != "SessionStarted,UserMessageAdded,AssistantMessageCompleted" {
		t.Fatalf("events %s", got)
	}
}

func TestChatJSONAndUsageFromProvider(t *testing.T) {
	t.Parallel()
	e := newEnv(t, opts{fake: aitest.New(aitest.Script{Tokens: []string{"4", "2"}, Usage: &ai.Usage{PromptTokens: 7, CompletionTokens: 2, TotalTokens: 9, CachedTokens: 3}})})
	s := sid()
	r := e.chatJSON("acme", s, "what is six times seven?")
	if r.status != 200 || r.body["response"] != "42" || r.body["model"] != "fake:m" || r.body["sessionId"] != s || r.body["requestId"] == "" {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	if u := r.body["usage"].(map[string]any); u["totalTokens"] != 9.0 {
		t.Fatalf("usage %v", u)
	}
	evs := e.streamEvents("acme", s)
	var done events.AssistantMessageCompleted
	if err := evs[2].Decode(&done); err != nil {
		t.Fatal(err)
	}
	if done.Usage.CachedTokens != 3 || done.Usage.Estimated || done.Model != "fake:m" || done.LatencyMs <= 0 || done.TurnID == "" {
		t.Fatalf("%+v", done)
	}
}

func TestErrorAfterFirstTokenEndsStreamWithErrorEvent(t *testing.T) {
	t.Parallel()
	e := newEnv(t, opts{fake: aitest.New(aitest.Script{Tokens: []string{"a", "b", "c"}, FailAfter: 2})})
	s := sid()
	r := e.chat("acme", s, "hi", nil)
	evs := parseSSE(t, r.raw)
	last := evs[len(evs)-1]
	if r.status != 200 || last.name != "error" || last.data["code"] != events.CodeStreamFailed || len(evs) != 3 {
		t.Fatalf("%d %+v", r.status, evs)
	}
	stored := e.streamEvents("acme", s)
	var f events.AssistantMessageFailed
	_ = stored[len(stored)-1].Decode(&f)
	if f.Code != events.CodeStreamFailed || f.PartialContentLength != 2 || f.Model != "fake:m" {
		t.Fatalf("%s %+v", types(stored), f)
	}
	if ms := messages(e.history("acme", s)); len(ms) != 1 || ms[0]["role"] != "user" {
		t.Fatalf("history %v", ms)
	}
}

func TestFallbackOrderBreakerAndAllDown(t *testing.T) {
	t.Parallel()
	e := newEnv(t, opts{
		router: ai.RouterConfig{BreakerFailures: 2, BreakerOpenFor: time.Hour},
		tenants: map[string]tenancyevents.TenantConfig{
			"acme": {Models: tenancyevents.Models{Chat: "down:m", Fallbacks: []string{"down:m", "fake:m"}}},
			"dead": {Models: tenancyevents.Models{Chat: "down:m", Fallbacks: []string{"down:other"}}},
		}})
	for i := 0; i < 4; i++ {
		r := e.chatJSON("acme", sid(), "hi")
		if r.status != 200 || r.body["model"] != "fake:m" {
			t.Fatalf("turn %d: %d %s", i, r.status, r.raw)
		}
	}
	if e.down.Calls() != 2 {
		t.Fatalf("down:m called %d times; its breaker should open after 2 failures", e.down.Calls())
	}
	// Events record the fallbacks in order.
	s := sid()
	e.chatJSON("acme", s, "again")
	evs := e.streamEvents("acme", s)
	var done events.AssistantMessageCompleted
	_ = evs[2].Decode(&done)
	if len(done.Fallbacks) != 1 || done.Fallbacks[0].Model != "down:m" || done.Fallbacks[0].Reason != "breaker_open" {
		t.Fatalf("fallbacks %+v", done.Fallbacks)
	}
	// All down: 502 problem (streaming or not), and the user's message is in the history.
	s = sid()
	r := e.chat("dead", s, "anyone there?", nil)
	wantProblem(t, r, http.StatusBadGateway, events.CodeAllModelsFailed)
	if d, _ := r.body["detail"].(string); !strings.Contains(d, "down:m: breaker_open, down:other: unavailable") {
		t.Fatalf("detail %q does not name the models tried", d)
	}
	r = e.chatJSON("dead", s, "still nobody?")
	wantProblem(t, r, http.StatusBadGateway, events.CodeAllModelsFailed)
	ms := messages(e.history("dead", s))
	if len(ms) != 2 || ms[0]["content"] != "anyone there?" || ms[1]["content"] != "still nobody?" {
		t.Fatalf("history %v", ms)
	}
	if got := types(e.streamEvents("dead", s)); got != "SessionStarted,UserMessageAdded,AssistantMessageFailed,UserMessageAdded,AssistantMessageFailed" {
		t.Fatalf("events %s", got)
	}
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t, opts{tenants: map[string]tenancyevents.TenantConfig{"acme": {Models: tenancyevents.Models{Allowed: []string{"fake:m"}}}}})
	for _, tc := range []struct {
		name   string
		r      resp
		status int
		code   string
	}{
		{"non-uuid session", e.chat("acme", "not-a-uuid", "hi", nil), 422, ""},
		{"empty message", e.chat("acme", sid(), "", nil), 422, ""},
		{"long message", e.chat("acme", sid(), strings.Repeat("x", 10001), nil), 422, ""},
		{"bad model id", e.chat("acme", sid(), "hi", map[string]any{"modelId": "gpt4"}), 400, "invalid_model_id"},
		{"not allowed", e.chat("acme", sid(), "hi", map[string]any{"modelId": "builtin:offline"}), 403, "model_not_allowed"},
		{"unknown provider", e.chat("other", sid(), "hi", map[string]any{"modelId": "nope:m"}), 400, "model_unavailable"},
		{"history non-uuid", e.history("acme", "nope"), 422, ""},
		{"unknown session", e.history("acme", sid()), 404, "session_not_found"},
		{"delete unknown", e.do("DELETE", "/chat/"+sid(), "acme", nil), 404, "session_not_found"},
		{"resume unknown", e.do("GET", "/chat/"+sid()+"/stream", "acme", nil), 404, "session_not_found"},
		{"bad cursor", e.do("GET", "/sessions?cursor=zzz", "acme", nil), 400, "invalid_cursor"},
	} {
		if tc.r.status != tc.status || (tc.code != "" && tc.r.body["code"] != tc.code) || !strings.Contains(tc.r.raw, "requestId") {
			t.Errorf("%s: got %d %v, want %d %s: %s", tc.name, tc.r.status, tc.r.body["code"], tc.status, tc.code, tc.r.raw)
		}
	}
	if r := e.chat("acme", sid(), "hi", map[string]any{"modelId": "fake:m", "stream": false}); r.status != 200 {
		t.Fatalf("allowed model refused: %s", r.raw)
	}
}

func TestTenantIsolationOnEveryEndpoint(t *testing.T) {
	t.Parallel()
	sp := &aitest.Speaker{Bytes: []byte("ID3")}
	e := newEnv(t, opts{speaker: sp, fake: aitest.New(aitest.Script{Tokens: []string{"a", "b"}}),
		tenants: map[string]tenancyevents.TenantConfig{"acme": {Features: map[string]bool{"tts": true}}}})
	s := sid()
	if r := e.chatJSON("acme", s, "secret of acme"); r.status != 200 {
		t.Fatal(r.raw)
	}
	eventually(t, "acme's session listed", func() bool { return len(e.do("GET", "/sessions", "acme", nil).body["sessions"].([]any)) == 1 })
	wantProblem(t, e.history("globex", s), 404, "session_not_found")
	wantProblem(t, e.do("GET", "/chat/"+s+"/stream", "globex", nil), 404, "session_not_found")
	wantProblem(t, e.do("DELETE", "/chat/"+s, "globex", nil), 404, "session_not_found")
	if l := e.do("GET", "/sessions", "globex", nil); len(l.body["sessions"].([]any)) != 0 {
		t.Fatalf("globex lists %s", l.raw)
	}
	// Chatting on acme's session id as globex starts globex's own session: no acme history leaks in.
	e.fake.Record = true
	if r := e.chatJSON("globex", s, "what did acme say?"); r.status != 200 {
		t.Fatal(r.raw)
	}
	reqs := e.fake.Requests()
	for _, m := range reqs[len(reqs)-1].Messages {
		if strings.Contains(m.Content, "secret of acme") {
			t.Fatalf("acme's history reached globex's prompt: %+v", reqs[len(reqs)-1].Messages)
		}
	}
	// The OpenAI endpoint with acme's session id records into globex's own stream.
	r := e.do("POST", "/v1/chat/completions", "globex", map[string]any{"model": "fake:m", "messages": []map[string]any{{"role": "user", "content": "hi"}}}, "x-session-id", s)
	if r.status != 200 {
		t.Fatal(r.raw)
	}
	if ms := messages(e.history("acme", s)); len(ms) != 2 || ms[0]["content"] != "secret of acme" {
		t.Fatalf("acme history changed: %v", ms)
	}
	if n := len(messages(e.history("globex", s))); n != 4 {
		t.Fatalf("globex history has %d messages", n)
	}
	// TTS is gated per tenant.
	wantProblem(t, e.do("POST", "/tts", "globex", map[string]any{"text": "hi"}), 403, "tts_not_enabled")
	if r := e.do("POST", "/tts", "acme", map[string]any{"text": "hi"}); r.status != 200 || r.raw != "ID3" || r.header.Get("Content-Type") != "audio/mpeg" {
		t.Fatalf("%d %s %v", r.status, r.raw, r.header)
	}
	// acme can still delete its own session; globex's copy survives.
	if r := e.do("DELETE", "/chat/"+s, "acme", nil); r.status != 200 {
		t.Fatal(r.raw)
	}
	if e.history("globex", s).status != 200 {
		t.Fatal("acme's delete touched globex")
	}
}

func TestTTSUnavailableWithoutProvider(t *testing.T) {
	t.Parallel()
	e := newEnv(t, opts{tenants: map[string]tenancyevents.TenantConfig{"acme": {Features: map[string]bool{"tts": true}}}})
	r := e.do("POST", "/tts", "acme", map[string]any{"text": "hi"})
	wantProblem(t, r, 503, "tts_unavailable")
	if !strings.Contains(r.body["detail"].(string), "CRISPY_OPENAI_BASE_URL") {
		t.Fatalf("detail does not say how to configure: %s", r.raw)
	}
	wantProblem(t, e.do("POST", "/tts", "acme", map[string]any{"text": "hi", "format": "flac"}), 422, "")
}

// Racing turns of one session, with nothing holding the model: each is answered (and in history,
// followed by its answer) or refused with 409 turn_in_progress (and recorded nowhere); none is lost
// and none interleaves with another.
func TestConcurrentTurnsOnOneSessionLoseNoMessage(t *testing.T) {
	t.Parallel()
	e := newEnv(t, opts{})
	s := sid()
	const n = 16
	var wg sync.WaitGroup
	answered := make(chan string, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			msg := fmt.Sprintf("message %d", i)
			switch r := e.chatJSON("acme", s, msg); {
			case r.status == 200:
				answered <- msg
			case r.status == 409 && r.body["code"] == "turn_in_progress":
			default:
				t.Errorf("%s: %d %s", msg, r.status, r.raw)
			}
		}(i)
	}
	wg.Wait()
	close(answered)
	want := map[string]bool{}
	for m := range answered {
		want[m] = true
	}
	ms := messages(e.history("acme", s))
	if len(want) == 0 || len(ms) != 2*len(want) {
		t.Fatalf("%d messages for %d answered turns", len(ms), len(want))
	}
	for i, m := range ms {
		if wantRole := []string{"user", "assistant"}[i%2]; m["role"] != wantRole {
			t.Fatalf("message %d is %v, want %s: %v", i, m["role"], wantRole, ms)
		}
		if i%2 == 0 && !want[m["content"].(string)] {
			t.Fatalf("refused or unknown message in history: %v", m["content"])
		}
	}
	evs := e.streamEvents("acme", s)
	if strings.Count(types(evs), "SessionStarted") != 1 || strings.Contains(types(evs), "UserMessageAdded,UserMessageAdded") {
		t.Fatalf("events %s", types(evs))
	}
}

func TestHistoryAfterRestartOnEmbeddedStore(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	st, err := embedded.Open(dir, embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, opts{store: st})
	s := sid()
	e.chatJSON("acme", s, "first")
	e.chatJSON("acme", s, "second")
	before := e.history("acme", s).raw
	e.cancel()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st2, err := embedded.Open(dir, embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st2.Close() })
	// The key store outlives the restart (keys.db in the data folder).
	_, sl := sealed(st)
	e2 := newEnv(t, opts{store: sealing.NewStore(st2, sl, conversation.SealPolicy()).KeepPlain(conversation.PlainFields())})
	h := e2.history("acme", s)
	ms := messages(h)
	if len(ms) != 4 || ms[2]["content"] != "second" {
		t.Fatalf("after restart: %s", h.raw)
	}
	var a, b map[string]any
	_ = json.Unmarshal([]byte(before), &a)
	_ = json.Unmarshal([]byte(h.raw), &b)
	ja, _ := json.Marshal(a["messages"])
	jb, _ := json.Marshal(b["messages"])
	if string(ja) != string(jb) {
		t.Fatalf("history differs after restart:\n%s\n%s", ja, jb)
	}
	eventually(t, "sessions rebuilt by replay", func() bool {
		l := e2.do("GET", "/sessions", "acme", nil).body["sessions"].([]any)
		return len(l) == 1 && l[0].(map[string]any)["messageCount"] == 4.0
	})
	// The session continues where it was.
	e2.chatJSON("acme", s, "third")
	if n := len(messages(e2.history("acme", s))); n != 6 {
		t.Fatalf("%d messages", n)
	}
}

func TestDeleteMakesContentUnreadable(t *testing.T) {
	t.Parallel()
	e := newEnv(t, opts{})
	s := sid()
	e.chatJSON("acme", s, "forget me")
	if r := e.do("DELETE", "/chat/"+s, "acme", nil); r.status != 200 || r.body["status"] != "deleted" {
		t.Fatal(r.raw)
	}
	wantProblem(t, e.history("acme", s), 404, "session_not_found")
	wantProblem(t, e.do("DELETE", "/chat/"+s, "acme", nil), 404, "session_not_found")
	evs := e.streamEvents("acme", s)
	// The events stay (the tenant's Merkle log covers them); their content is erased.
	if types(evs) != "SessionStarted,UserMessageAdded,AssistantMessageCompleted,SessionDeleted" || readable(evs) != "SessionDeleted" {
		t.Fatalf("after delete: %s, readable %s", types(evs), readable(evs))
	}
	if e.atRest("acme", "forget me") {
		t.Fatal("the content is stored in plain text")
	}
	for _, ev := range evs {
		if strings.Contains(string(ev.Data), "forget me") {
			t.Fatal("content readable")
		}
	}
	eventually(t, "deleted session unlisted", func() bool { return len(e.do("GET", "/sessions", "acme", nil).body["sessions"].([]any)) == 0 })
	v, err := e.mod.SessionAsOf(context.Background(), tenant.MustParse("acme"), s, time.Now())
	if err != nil || !v.Deleted || len(v.Messages) != 0 {
		t.Fatalf("%+v %v", v, err)
	}
	// The id can be used again: a new session starts.
	e.chatJSON("acme", s, "new start")
	if ms := messages(e.history("acme", s)); len(ms) != 2 || ms[0]["content"] != "new start" {
		t.Fatalf("%v", ms)
	}
}

func TestRetentionSweepExpiresIdleSessions(t *testing.T) {
	t.Parallel()
	e := newEnv(t, opts{tenants: map[string]tenancyevents.TenantConfig{"acme": {SessionRetentionDays: 7}}})
	old, fresh, other := sid(), sid(), sid()
	e.chatJSON("acme", old, "old news")
	e.chatJSON("globex", other, "globex keeps 30 days")
	eventually(t, "sessions indexed", func() bool {
		return len(e.do("GET", "/sessions", "acme", nil).body["sessions"].([]any)) == 1 &&
			len(e.do("GET", "/sessions", "globex", nil).body["sessions"].([]any)) == 1
	})
	if n, err := e.mod.Sweep(context.Background()); err != nil || n != 0 {
		t.Fatalf("nothing is idle yet: %d %v", n, err)
	}
	e.clock.Add(8 * 24 * time.Hour)
	// A session active "now" (by the store's clock, which is real time) is not idle by the fake
	// clock either; only sessions idle past 7 days expire.
	n, err := e.mod.Sweep(context.Background())
	if err != nil || n != 1 {
		t.Fatalf("expired %d, err %v", n, err)
	}
	wantProblem(t, e.history("acme", old), 404, "session_not_found")
	if readable(e.streamEvents("acme", old)) != "SessionExpired" {
		t.Fatalf("readable after expiry: %s", readable(e.streamEvents("acme", old)))
	}
	if e.history("globex", other).status != 200 {
		t.Fatal("globex (30-day retention) expired after 8 days")
	}
	e.clock.Add(30 * 24 * time.Hour)
	_ = fresh
	if n, _ := e.mod.Sweep(context.Background()); n != 1 {
		t.Fatalf("globex not expired after 38 days: %d", n)
	}
	if n, _ := e.mod.Sweep(context.Background()); n != 0 {
		t.Fatalf("second sweep expired %d again", n)
	}
}

func TestBudgetHoldsUnderConcurrency(t *testing.T) {
	t.Parallel()
	// Each turn reserves its prompt estimate plus MaxCompletionTokens (100) and really uses 60.
	e := newEnv(t, opts{config: conversation.Config{MaxCompletionTokens: 100, ContextTokens: 4096},
		fake:    aitest.New(aitest.Script{Usage: &ai.Usage{PromptTokens: 50, CompletionTokens: 10, TotalTokens: 60}}),
		tenants: map[string]tenancyevents.TenantConfig{"acme": {TokenBudget: tenancyevents.TokenBudget{Daily: 1000}}}})
	const n = 50
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok, refused := 0, 0
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := e.chatJSON("acme", sid(), "hi")
			mu.Lock()
			defer mu.Unlock()
			switch {
			case r.status == 200:
				ok++
			case r.status == 429 && r.body["code"] == "budget_exceeded" && r.header.Get("Retry-After") != "":
				refused++
			default:
				t.Errorf("unexpected %d %s", r.status, r.raw)
			}
		}()
	}
	wg.Wait()
	if ok == 0 || refused == 0 || ok+refused != n {
		t.Fatalf("ok %d refused %d", ok, refused)
	}
	if ok*60 > 1000 {
		t.Fatalf("%d turns of 60 tokens overshoot the budget of 1000", ok)
	}
	// Reconciliation: with real use of 60 a turn, later turns fit again until 1000 is reached.
	eventually(t, "reservations settled", func() bool {
		r := e.chatJSON("acme", sid(), "hi")
		return r.status == 429
	})
	total := 0
	for _, t0 := range []string{"acme"} {
		_ = t0
	}
	evs, _ := e.store.ReadTenant(context.Background(), tenant.MustParse("acme"), 0, 0)
	for _, ev := range evs {
		if ev.Type == events.TypeAssistantMessageCompleted {
			total += 60
		}
	}
	if total > 1000 || total < 1000-160 {
		t.Fatalf("recorded use %d: the budget of 1000 should be used up to within one reservation", total)
	}
}

type fakeRetriever struct{ calls []string }

func (f *fakeRetriever) Retrieve(_ context.Context, t tenant.ID, q string, k int) ([]conversation.Passage, error) {
	f.calls = append(f.calls, t.String())
	return []conversation.Passage{{DocID: "doc-1", ChunkID: "doc-1#0", Title: "Refunds", Text: "Refunds are paid within 14 days. Shipping is free.", Score: 0.9}}, nil
}

type fakeTools struct{}

func (fakeTools) Execute(_ context.Context, t tenant.ID, name string, params json.RawMessage, _ string) (json.RawMessage, error) {
	if name == "missing" {
		return nil, apperr.NotFound("TOOL_NOT_FOUND", "no tool missing")
	}
	if name == "panics" {
		panic("a tool runner bug")
	}
	return json.RawMessage(`{"summary":"short for ` + t.String() + `"}`), nil
}

func TestRAGAndToolThroughOfflineModel(t *testing.T) {
	t.Parallel()
	retr := &fakeRetriever{}
	e := newEnv(t, opts{retr: retr, tools: fakeTools{}, config: conversation.Config{DefaultModel: "builtin:offline"}})
	s := sid()
	r := e.chat("acme", s, "How fast are refunds paid?", map[string]any{"rag": true})
	evs := parseSSE(t, r.raw)
	if evs[0].name != "citation" || evs[0].data["docId"] != "doc-1" || evs[len(evs)-1].data["model"] != "builtin:offline" {
		t.Fatalf("%+v", evs)
	}
	var text strings.Builder
	for _, ev := range evs {
		if ev.name == "token" {
			text.WriteString(ev.data["token"].(string))
		}
	}
	if !strings.Contains(text.String(), "offline model") || !strings.Contains(text.String(), "Refunds are paid within 14 days. [1]") {
		t.Fatalf("answer %q", text.String())
	}
	r = e.chat("acme", s, "summarize that", map[string]any{"tool_name": "summarize", "tool_params": map[string]any{"text": "x"}})
	evs = parseSSE(t, r.raw)
	if evs[0].name != "tool" || evs[0].data["name"] != "summarize" {
		t.Fatalf("%+v", evs)
	}
	wantProblem(t, e.chat("acme", s, "x", map[string]any{"tool_name": "missing"}), 404, "TOOL_NOT_FOUND")
	r = e.chatJSON("acme", sid(), "no rag here")
	if cites := r.body["citations"].([]any); len(cites) != 0 || len(retr.calls) != 1 || retr.calls[0] != "acme" {
		t.Fatalf("%s %v", r.raw, retr.calls)
	}
}

func TestSessionsListNewestFirstWithCursor(t *testing.T) {
	t.Parallel()
	e := newEnv(t, opts{})
	var ids []string
	for i := 0; i < 5; i++ {
		s := sid()
		ids = append(ids, s)
		e.chatJSON("acme", s, fmt.Sprintf("topic %d\nmore", i))
		time.Sleep(2 * time.Millisecond)
	}
	eventually(t, "5 sessions", func() bool { return len(e.do("GET", "/sessions?limit=100", "acme", nil).body["sessions"].([]any)) == 5 })
	var got []string
	cursor := ""
	for page := 0; page < 5; page++ {
		r := e.do("GET", "/sessions?limit=2&cursor="+cursor, "acme", nil)
		for _, x := range r.body["sessions"].([]any) {
			m := x.(map[string]any)
			got = append(got, m["sessionId"].(string))
			if !strings.HasPrefix(m["title"].(string), "topic ") || strings.Contains(m["title"].(string), "more") || m["messageCount"] != 2.0 {
				t.Fatalf("row %v", m)
			}
		}
		cursor, _ = r.body["nextCursor"].(string)
		if cursor == "" {
			break
		}
	}
	if len(got) != 5 {
		t.Fatalf("got %v", got)
	}
	for i := range got {
		if got[i] != ids[4-i] {
			t.Fatalf("order %v, want newest first of %v", got, ids)
		}
	}
}

// countingTools counts executions, to show a refused turn never ran its tool.
type countingTools struct{ n atomic.Int64 }

func (c *countingTools) Execute(_ context.Context, _ tenant.ID, _ string, _ json.RawMessage, _ string) (json.RawMessage, error) {
	c.n.Add(1)
	return json.RawMessage(`{"ok":true}`), nil
}

func TestATurnOverBudgetDoesNotRunItsTool(t *testing.T) {
	t.Parallel()
	tools := &countingTools{}
	// The daily budget (10) cannot take the message and the least completion a turn runs with (16).
	e := newEnv(t, opts{tools: tools, config: conversation.Config{MaxCompletionTokens: 500},
		tenants: map[string]tenancyevents.TenantConfig{"acme": {TokenBudget: tenancyevents.TokenBudget{Daily: 10}}}})
	r := e.chat("acme", sid(), "summarise this", map[string]any{"stream": false, "tool_name": "summarize", "tool_params": map[string]any{"text": "x"}})
	wantProblem(t, r, 429, "budget_exceeded")
	if n := tools.n.Load(); n != 0 {
		t.Fatalf("the tool ran %d times for a turn the budget refused", n)
	}
	// Another tenant without a budget runs the same tool.
	if r := e.chat("beta", sid(), "summarise this", map[string]any{"stream": false, "tool_name": "summarize", "tool_params": map[string]any{}}); r.status != 200 || tools.n.Load() != 1 {
		t.Fatalf("beta: %d %s, tool runs %d", r.status, r.raw, tools.n.Load())
	}
}
