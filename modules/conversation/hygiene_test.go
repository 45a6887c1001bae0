package conversation_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/crispy-enigma/crispy/platform/httpapi/httpapitest"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// Issue 10, item 9: text that is blank, holds control characters or is not UTF-8 is refused with 422
// naming the field, on every conversation operation, and nothing is recorded.
func TestBadTextIsRefusedWith422NamingTheField(t *testing.T) {
	t.Parallel()
	e := newEnv(t, opts{})
	s := sid()
	chat := func(fields string) []byte {
		return []byte(`{"sessionId":"` + s + `","stream":false,` + fields + `}`)
	}
	for _, c := range []struct {
		name, path string
		body       []byte
		loc        string
	}{
		{"whitespace-only message", "/chat", chat(`"message":"  \n\t  "`), "body.message"},
		{"invisible-only message", "/chat", chat(`"message":"\u200b\u00a0\u3000"`), "body.message"},
		{"NUL in the message", "/chat", chat(`"message":"hi\u0000there"`), "body.message"},
		{"escape sequence in the message", "/chat", chat(`"message":"\u001b[2Jhi"`), "body.message"},
		{"invalid UTF-8 in the message", "/chat", chat("\"message\":\"caf\xe9\""), "body.message"},
		{"line break in the model id", "/chat", chat(`"message":"hi","modelId":"fake:m\n"`), "body.modelId"},
		{"blank user id", "/chat", chat(`"message":"hi","userId":"   "`), "body.userId"},
		{"control character in a tool param", "/chat", chat(`"message":"hi","tool_name":"summarize","tool_params":{"text":"\u0007"}`), "body.tool_params.text"},
		{"blank text to speak", "/tts", []byte(`{"text":" \t "}`), "body.text"},
		{"NUL in the voice", "/tts", []byte(`{"text":"hi","voice":"a\u0000"}`), "body.voice"},
		{"blank last message", "/v1/chat/completions", []byte(`{"model":"fake:m","messages":[{"role":"user","content":"   "}]}`), "body.messages[0].content"},
		{"blank last message as parts", "/v1/chat/completions", []byte(`{"model":"fake:m","messages":[{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"text","text":" "}]}]}`), "body.messages[1].content"},
		{"NUL in a content part", "/v1/chat/completions", []byte(`{"model":"fake:m","messages":[{"role":"user","content":[{"type":"text","text":"\u0000"}]}]}`), "body.messages[0].content[0].text"},
		{"null messages", "/v1/chat/completions", []byte(`{"model":"fake:m","messages":null}`), "body.messages"},
		{"tab in the model", "/v1/chat/completions", []byte(`{"model":"fake:\tm","messages":[{"role":"user","content":"hi"}]}`), "body.model"},
		{"invalid UTF-8 in the user", "/v1/chat/completions", []byte("{\"model\":\"fake:m\",\"user\":\"\xff\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}"), "body.user"},
	} {
		t.Run(c.name, func(t *testing.T) {
			httpapitest.WantField(t, httpapitest.Send(e.h, http.MethodPost, c.path, "acme", c.body), c.loc)
		})
	}
	// Nothing was recorded: the session was never started.
	evs, err := e.store.ReadTenant(context.Background(), tenant.MustParse("acme"), 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 0 {
		t.Fatalf("%d events were recorded for refused requests, the first %s", len(evs), evs[0].Type)
	}
	// Multi-line text with tabs is fine.
	if w := httpapitest.Send(e.h, http.MethodPost, "/chat", "acme", chat(`"message":"line one\n\tline two\r\n"`)); w.Code != http.StatusOK {
		t.Fatalf("multi-line message: %d %s", w.Code, w.Body)
	}
}
