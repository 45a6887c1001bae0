package conversation_test

import (
	"net/url"
	"strings"
	"testing"
)

// spellings are other spellings of the UUID u that uuid.Parse accepts, and one padded with spaces.
func spellings(u string) map[string]string {
	return map[string]string{
		"upper case":   strings.ToUpper(u),
		"braces":       "{" + u + "}",
		"urn":          "urn:uuid:" + u,
		"no hyphens":   strings.ReplaceAll(u, "-", ""),
		"padded":       " " + u + " ",
		"upper braces": "{" + strings.ToUpper(u) + "}",
	}
}

// wantField checks a 422 problem that names loc among its errors.
func wantField(t *testing.T, what string, r resp, loc string) {
	t.Helper()
	if r.status != 422 || !strings.Contains(r.raw, `"location":"`+loc+`"`) || !strings.Contains(r.raw, "requestId") {
		t.Errorf("%s: %d %s, want 422 naming %s", what, r.status, r.raw, loc)
	}
}

// A session id has one spelling, the lowercase hyphenated UUID: every other spelling of the same
// UUID is refused with 422 naming the field, on every route that takes one, instead of naming
// another session.
func TestSessionIDsAreCanonical(t *testing.T) {
	t.Parallel()
	e := newEnv(t, opts{})
	u := sid()
	if r := e.chatJSON("acme", u, "hello"); r.status != 200 {
		t.Fatal(r.raw)
	}
	for name, s := range spellings(u) {
		wantField(t, name+": POST /chat", e.chatJSON("acme", s, "hello again"), "body.sessionId")
		p := url.PathEscape(s)
		wantField(t, name+": history", e.do("GET", "/chat/"+p+"/history", "acme", nil), "path.sessionId")
		wantField(t, name+": resume", e.do("GET", "/chat/"+p+"/stream", "acme", nil), "path.sessionId")
		wantField(t, name+": delete", e.do("DELETE", "/chat/"+p, "acme", nil), "path.sessionId")
		if name != "padded" { // HTTP itself trims the spaces around a header's value
			body := map[string]any{"model": "fake:m", "messages": []map[string]any{{"role": "user", "content": "hi"}}}
			// /v1/ errors are OpenAI's envelope: the field is its param.
			wantOpenAIError(t, e.do("POST", "/v1/chat/completions", "acme", body, "x-session-id", s), 422, "validation_failed", "header.x-session-id")
		}
	}
	// Nothing was recorded under another spelling: the tenant has the one session, intact.
	eventually(t, "the session list holds the one session", func() bool {
		ss, _ := e.do("GET", "/sessions", "acme", nil).body["sessions"].([]any)
		return len(ss) == 1 && ss[0].(map[string]any)["sessionId"] == u
	})
	for _, other := range []string{strings.ToUpper(u), strings.ReplaceAll(u, "-", "")} {
		if evs := e.streamEvents("acme", other); len(evs) != 0 {
			t.Fatalf("%d events under %s", len(evs), other)
		}
	}
	if ms := messages(e.history("acme", u)); len(ms) != 2 {
		t.Fatalf("history %v", ms)
	}
	// The canonical spelling works on every route.
	body := map[string]any{"model": "fake:m", "messages": []map[string]any{{"role": "user", "content": "hi"}}}
	if r := e.do("POST", "/v1/chat/completions", "acme", body, "x-session-id", u); r.status != 200 {
		t.Fatalf("/v1 with the canonical id: %s", r.raw)
	}
	if r := e.do("DELETE", "/chat/"+u, "acme", nil); r.status != 200 {
		t.Fatalf("delete: %s", r.raw)
	}
}
