package conversation_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/crispy-enigma/crispy/modules/conversation"
	"github.com/crispy-enigma/crispy/modules/conversation/events"
	tenancyevents "github.com/crispy-enigma/crispy/modules/tenancy/events"
	"github.com/crispy-enigma/crispy/platform/ai"
	"github.com/crispy-enigma/crispy/platform/ai/aitest"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// completions are the tenant's CompletionRecorded events.
func completions(t *testing.T, e *env, tenantID string) []events.CompletionRecorded {
	t.Helper()
	evs, err := e.store.ReadTenant(context.Background(), tenant.MustParse(tenantID), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []events.CompletionRecorded
	for _, ev := range evs {
		if ev.Type != events.TypeCompletionRecorded {
			continue
		}
		st, _ := ev.StreamName()
		if want := e.clock.Now().UTC().Format("20060102"); st.Category() != events.CompletionsCategory || st.Entity() != want {
			t.Fatalf("CompletionRecorded in %s, want t-%s.completions-%s", ev.Stream, tenantID, want)
		}
		var c events.CompletionRecorded
		if err := ev.Decode(&c); err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

func v1(e *env, tenantID, content string, stream bool, hdr ...string) resp {
	e.t.Helper()
	body := map[string]any{"model": "fake:m", "stream": stream, "messages": []map[string]any{{"role": "user", "content": content}}}
	return e.do("POST", "/v1/chat/completions", tenantID, body, hdr...)
}

func TestStatelessCompletionKeepsNoSessionButItsUsage(t *testing.T) {
	t.Parallel()
	e := newEnv(t, opts{fake: aitest.New(aitest.Script{Tokens: []string{"the ", "answer"}})})
	const prompt = "what is the secret prompt"
	r := v1(e, "acme", prompt, false)
	if r.status != 200 || !strings.Contains(r.raw, "the answer") {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	id := strings.TrimPrefix(r.body["id"].(string), "chatcmpl-")
	if r = v1(e, "acme", prompt, true); r.status != 200 || !strings.Contains(r.raw, "[DONE]") {
		t.Fatalf("streamed: %d %s", r.status, r.raw)
	}
	e.fake.Push(aitest.Script{FailBefore: aitest.Unavailable("fake:m")})
	if r = v1(e, "acme", prompt, false); r.status != 502 {
		t.Fatalf("failing model: %d %s", r.status, r.raw)
	}

	all, err := e.store.ReadTenant(context.Background(), tenant.MustParse("acme"), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range all {
		if st, _ := ev.StreamName(); st.Category() != events.CompletionsCategory {
			t.Fatalf("a stateless call recorded %s in %s", ev.Type, ev.Stream)
		}
		if strings.Contains(string(ev.Data), "secret prompt") || strings.Contains(string(ev.Data), "answer") {
			t.Fatalf("the usage event holds content: %s", ev.Data)
		}
	}
	got := completions(t, e, "acme")
	if len(got) != 3 {
		t.Fatalf("%d usage events for 3 calls", len(got))
	}
	if c := got[0]; c.CallID != id || c.Model != "fake:m" || c.Outcome != events.OutcomeCompleted || c.Usage.TotalTokens == 0 || c.RequestID == "" {
		t.Fatalf("first call recorded as %+v (id %s)", c, id)
	}
	if c := got[2]; c.Outcome != events.CodeAllModelsFailed {
		t.Fatalf("failed call recorded as %+v", c)
	}
	if n := len(e.do("GET", "/sessions", "acme", nil).body["sessions"].([]any)); n != 0 {
		t.Fatalf("%d sessions listed", n)
	}
	if len(completions(t, e, "globex")) != 0 {
		t.Fatal("globex has acme's usage")
	}
}

// The budget ledger charges a stateless call like a chat turn, from its recorded usage: the next
// call is refused once the budget is spent, also after a restart (the ledger then comes only from
// the recorded events).
func TestStatelessCompletionsAreChargedToTheTokenBudget(t *testing.T) {
	t.Parallel()
	store := eventstoretest.NewMemory()
	// 5,000 used leaves 10: less than the prompt and the least completion a call runs with.
	tenants := map[string]tenancyevents.TenantConfig{"acme": {ID: "acme", TokenBudget: tenancyevents.TokenBudget{Daily: 5010}}}
	fake := aitest.New(aitest.Script{Tokens: []string{"ok"}, Usage: &ai.Usage{PromptTokens: 4000, CompletionTokens: 1000, TotalTokens: 5000}})
	e := newEnv(t, opts{store: store, tenants: tenants, fake: fake})
	if r := v1(e, "acme", "hi", false); r.status != 200 {
		t.Fatalf("first call: %d %s", r.status, r.raw)
	}
	wantOpenAIError(t, v1(e, "acme", "hi", false), 429, "budget_exceeded", "")
	e.cancel()

	restarted := newEnv(t, opts{store: store, tenants: tenants, fake: fake})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := restarted.bus.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	wantOpenAIError(t, v1(restarted, "acme", "hi", false), 429, "budget_exceeded", "")
	if n := len(completions(t, restarted, "acme")); n != 1 {
		t.Fatalf("%d calls recorded, want the 1 that ran", n)
	}
}

func TestCompletionWithSessionIDIsKeptInTheSession(t *testing.T) {
	t.Parallel()
	e := newEnv(t, opts{fake: aitest.New(aitest.Script{Tokens: []string{"first"}})})
	s := sid()
	if r := v1(e, "acme", "one", false, "x-session-id", s); r.status != 200 {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	if r := v1(e, "acme", "two", true, "x-session-id", s); r.status != 200 {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	h := e.history("acme", s)
	if ms := messages(h); h.status != 200 || len(ms) != 4 || ms[0]["content"] != "one" || ms[2]["content"] != "two" || ms[3]["content"] != "first" {
		t.Fatalf("history: %d %s", h.status, h.raw)
	}
	if n := len(completions(t, e, "acme")); n != 0 {
		t.Fatalf("%d usage events for calls recorded in a session", n)
	}
	// The session's latest turn can be resumed, as a /chat turn can.
	if r := e.do("GET", "/chat/"+s+"/stream", "acme", nil, "Last-Event-ID", "0"); r.status != 200 || !strings.Contains(r.raw, "event: done") {
		t.Fatalf("resume: %d %s", r.status, r.raw)
	}
}

// Tenant B naming tenant A's session in x-session-id gets a session of its own of that id: it
// cannot read, resume or add to A's.
func TestXSessionIDCannotReachAnotherTenantsSession(t *testing.T) {
	t.Parallel()
	e := newEnv(t, opts{fake: aitest.New(aitest.Script{Tokens: []string{"for ", "acme"}})})
	s := sid()
	if r := v1(e, "acme", "acme's question", true, "x-session-id", s); r.status != 200 {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	wantProblem(t, e.history("globex", s), 404, "session_not_found")
	wantProblem(t, e.do("GET", "/chat/"+s+"/stream", "globex", nil, "Last-Event-ID", "0"), 404, "session_not_found")

	e.fake.Push(aitest.Script{Tokens: []string{"for ", "globex"}})
	if r := v1(e, "globex", "globex's question", true, "x-session-id", s); r.status != 200 {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	b := e.history("globex", s)
	if b.status != 200 || len(messages(b)) != 2 || strings.Contains(b.raw, "acme's question") {
		t.Fatalf("globex's history: %s", b.raw)
	}
	a := e.history("acme", s)
	if a.status != 200 || len(messages(a)) != 2 || strings.Contains(a.raw, "globex") {
		t.Fatalf("acme's history: %s", a.raw)
	}
	// Each resumes its own turn only.
	if r := e.do("GET", "/chat/"+s+"/stream", "acme", nil, "Last-Event-ID", "0"); !strings.Contains(r.raw, `"acme"`) {
		t.Fatalf("acme resumed %s", r.raw)
	}
	if r := e.do("GET", "/chat/"+s+"/stream", "globex", nil, "Last-Event-ID", "0"); !strings.Contains(r.raw, `"globex"`) || strings.Contains(r.raw, `"acme"`) {
		t.Fatalf("globex resumed acme's turn: %s", r.raw)
	}
}

// A finished turn dropped to keep the resume buffer within its bytes is answered as one whose
// window passed: 404 turn_not_found, at once, and counted.
func TestResumingATurnDroppedForTheBudgetAnswers404(t *testing.T) {
	t.Parallel()
	set := metrics.NewSet()
	e := newEnv(t, opts{config: conversation.Config{ResumeBytes: 1}, metrics: set})
	s := sid()
	if r := e.chat("acme", s, "hi", nil); r.status != 200 || !strings.Contains(r.raw, "event: done") {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	// The turn is handed to the resume buffer just after its done event is written: until then a
	// resume still replays it whole; after, it is refused at once.
	eventually(t, "the finished turn is dropped", func() bool {
		r := e.do("GET", "/chat/"+s+"/stream", "acme", nil, "Last-Event-ID", "1")
		if r.status == 200 && !strings.Contains(r.raw, "event: done") {
			t.Fatalf("a partial replay: %s", r.raw)
		}
		return r.status == 404
	})
	wantProblem(t, e.do("GET", "/chat/"+s+"/stream", "acme", nil, "Last-Event-ID", "1"), 404, "turn_not_found")
	var b bytes.Buffer
	set.WritePrometheus(&b)
	for _, want := range []string{"crispy_chat_resume_buffer_evictions_total 1", "crispy_chat_resume_buffer_bytes 0", "crispy_chat_session_cache_bytes "} {
		if !strings.Contains(b.String(), want) {
			t.Fatalf("metrics lack %q:\n%s", want, b.String())
		}
	}

	// With room for it, the same turn is resumed whole.
	roomy := newEnv(t, opts{})
	if r := roomy.chat("acme", s, "hi", nil); r.status != 200 {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	if r := roomy.do("GET", "/chat/"+s+"/stream", "acme", nil, "Last-Event-ID", "1"); r.status != 200 || !strings.Contains(r.raw, "event: done") {
		t.Fatalf("resume: %d %s", r.status, r.raw)
	}
}
