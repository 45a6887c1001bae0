package tooling_test

import (
	"net/http"
	"testing"

	"github.com/crispy-enigma/crispy/platform/httpapi/httpapitest"
)

// Issue 10, item 9: the tool's schema judges params, but a control character or invalid UTF-8 in any
// string of the call is refused with 422 naming it before the tool runs, and nothing is audited.
func TestBadTextIsRefusedWith422BeforeTheToolRuns(t *testing.T) {
	t.Parallel()
	e := newEnv(t, pluginsDir(t, "echo"), opts{})
	for _, c := range []struct {
		name, body, loc string
	}{
		{"NUL in a param", `{"tool_name":"echo","params":{"mode":"ok","text":"a\u0000b"}}`, "body.params.text"},
		{"invalid UTF-8 in a param", "{\"tool_name\":\"echo\",\"params\":{\"mode\":\"ok\",\"text\":\"\xff\"}}", "body.params.text"},
		{"invalid UTF-8 deep in params", "{\"tool_name\":\"echo\",\"params\":{\"items\":[{\"v\":\"\xff\"}]}}", "body.params.items[0].v"},
		{"escape sequence in a param name", `{"tool_name":"echo","params":{"\u001b":"x"}}`, "body.params"},
		{"blank tool name", `{"tool_name":"  ","params":{}}`, "body.tool_name"},
		{"line break in the tool name", `{"tool_name":"echo\n","params":{}}`, "body.tool_name"},
		{"control character in the user id", `{"tool_name":"echo","params":{"mode":"ok"},"user_id":"bob\u0008"}`, "body.user_id"},
	} {
		t.Run(c.name, func(t *testing.T) {
			httpapitest.WantField(t, httpapitest.Send(e.h, http.MethodPost, "/tools/execute", "acme", []byte(c.body)), c.loc)
		})
	}
	if evs := e.audit("acme"); len(evs) != 0 {
		t.Fatalf("%d audit events for refused calls, the first %s", len(evs), evs[0].Type)
	}
	// Line breaks and tabs in free text are fine.
	if w := httpapitest.Send(e.h, http.MethodPost, "/tools/execute", "acme", []byte(`{"tool_name":"echo","params":{"mode":"ok","text":"a\n\tb"}}`)); w.Code != http.StatusOK {
		t.Fatalf("multi-line param: %d %s", w.Code, w.Body)
	}
}
