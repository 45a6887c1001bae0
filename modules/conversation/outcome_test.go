package conversation_test

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	tenancyevents "github.com/crispy-enigma/crispy/modules/tenancy/events"

	"github.com/crispy-enigma/crispy/modules/conversation/events"
	"github.com/crispy-enigma/crispy/platform/ai/aitest"
	"github.com/crispy-enigma/crispy/platform/ai/openai"
	"github.com/crispy-enigma/crispy/platform/eventstore"
)

// truncatedEnv answers with the real OpenAI-compatible provider (under "fake") from an upstream
// that ends its answers as end says.
func truncatedEnv(t *testing.T, end aitest.Ending, tokens []string, tenants map[string]tenancyevents.TenantConfig) *env {
	t.Helper()
	up := httptest.NewServer(&aitest.Upstream{Tokens: tokens, End: end})
	t.Cleanup(up.Close)
	p, err := openai.New(openai.Config{BaseURL: up.URL})
	if err != nil {
		t.Fatal(err)
	}
	return newEnv(t, opts{provider: p, tenants: tenants})
}

// outcomeOf returns the failure recorded for the session's only turn, failing the test when the turn
// was recorded as complete or not at all.
func outcomeOf(t *testing.T, e *env, tenantID, session string) events.AssistantMessageFailed {
	t.Helper()
	var evs []eventstore.Event
	eventually(t, "the turn's outcome is recorded", func() bool {
		evs = e.streamEvents(tenantID, session)
		return strings.Contains(types(evs), "Assistant")
	})
	var failed []events.AssistantMessageFailed
	for _, ev := range evs {
		switch ev.Type {
		case events.TypeAssistantMessageCompleted:
			t.Fatalf("a truncated answer was recorded as complete: %s", types(evs))
		case events.TypeAssistantMessageFailed:
			failed = append(failed, decodeFailure(t, ev))
		}
	}
	if len(failed) != 1 {
		t.Fatalf("events %s, want one failure", types(evs))
	}
	return failed[0]
}

// An upstream stream that ends without its terminator (a clean EOF, or a reset) after some tokens is
// upstream_truncated: the client gets an error event with that code and the turn is recorded as
// failed, on /chat streamed and not, and on /v1/chat/completions streamed and not.
func TestTruncatedUpstreamIsAFailedTurnEverywhere(t *testing.T) {
	t.Parallel()
	for _, end := range []aitest.Ending{aitest.EndEOF, aitest.EndReset} {
		e := truncatedEnv(t, end, []string{"Hel", "lo"}, nil)

		s := sid()
		r := e.chat("acme", s, "hi", nil)
		evs := parseSSE(t, r.raw)
		last := evs[len(evs)-1]
		if r.status != 200 || last.name != "error" || last.data["code"] != events.CodeUpstreamTruncated {
			t.Fatalf("end %d: /chat stream: %d %s", end, r.status, r.raw)
		}
		for _, ev := range evs {
			if ev.name == "done" {
				t.Fatalf("end %d: done event for a truncated answer: %s", end, r.raw)
			}
		}
		if f := outcomeOf(t, e, "acme", s); f.Code != events.CodeUpstreamTruncated || f.PartialContentLength != len("Hello") {
			t.Fatalf("end %d: recorded %+v", end, f)
		}

		s = sid()
		wantProblem(t, e.chatJSON("acme", s, "hi"), 502, events.CodeUpstreamTruncated)
		if f := outcomeOf(t, e, "acme", s); f.Code != events.CodeUpstreamTruncated {
			t.Fatalf("end %d: /chat json recorded %+v", end, f)
		}

		s = sid()
		body := map[string]any{"model": "fake:m", "stream": true, "messages": []map[string]any{{"role": "user", "content": "hi"}}}
		r = e.do("POST", "/v1/chat/completions", "acme", body, "x-session-id", s)
		if r.status != 200 || !strings.Contains(r.raw, `"code":"upstream_truncated"`) || strings.Contains(r.raw, "[DONE]") || strings.Contains(r.raw, `"finish_reason":"stop"`) {
			t.Fatalf("end %d: /v1 stream: %d %s", end, r.status, r.raw)
		}
		if f := outcomeOf(t, e, "acme", s); f.Code != events.CodeUpstreamTruncated || f.Source != "openai" {
			t.Fatalf("end %d: /v1 stream recorded %+v", end, f)
		}

		s = sid()
		body["stream"] = false
		r = e.do("POST", "/v1/chat/completions", "acme", body, "x-session-id", s)
		wantProblem(t, r, 502, events.CodeUpstreamTruncated)
		if f := outcomeOf(t, e, "acme", s); f.Code != events.CodeUpstreamTruncated {
			t.Fatalf("end %d: /v1 json recorded %+v", end, f)
		}
	}
}

// Before the first token a truncated answer falls back to the next model, like a 5xx; the fallback's
// answer is the turn's, with the truncation in its fallbacks.
func TestTruncatedBeforeFirstTokenFallsBack(t *testing.T) {
	t.Parallel()
	e := truncatedEnv(t, aitest.EndEOF, []string{}, map[string]tenancyevents.TenantConfig{
		"acme": {ID: "acme", Models: tenancyevents.Models{Chat: "fake:m", Fallbacks: []string{"builtin:offline"}}}})
	s := sid()
	r := e.chatJSON("acme", s, "hi")
	if r.status != 200 || r.body["model"] != "builtin:offline" {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	evs := e.streamEvents("acme", s)
	var done events.AssistantMessageCompleted
	if err := evs[len(evs)-1].Decode(&done); err != nil || len(done.Fallbacks) != 1 || done.Fallbacks[0].Reason != events.CodeUpstreamTruncated {
		b, _ := json.Marshal(done)
		t.Fatalf("%s: %s %v", types(evs), b, err)
	}
}
