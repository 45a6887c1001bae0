package conversation_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/crispy-enigma/crispy/platform/httpapi/httpapitest"
)

// chatOps are the conversation operations that take a JSON body.
var chatOps = []string{"/chat", "/v1/chat/completions", "/tts"}

// FuzzChatRequests sends arbitrary bodies to POST /chat, /v1/chat/completions and /tts through the
// real handler stack on embedded fakes: whatever arrives, the answer is never a 5xx, and every error
// is a problem JSON with its status, code and requestId within 8 KB.
func FuzzChatRequests(f *testing.F) {
	s := "0b0f6a52-6f7e-4c55-9a8e-3f3d2f1c9b10"
	for _, b := range []string{
		`{"sessionId":"` + s + `","message":"hi","stream":false}`,
		`{"sessionId":"` + s + `","message":"hi"}`,
		`{"sessionId":"` + s + `","message":"  ","stream":false}`,
		`{"sessionId":"` + s + `","message":"hi\u0000","stream":false}`,
		`{"sessionId":"` + s + `","message":"hi","stream":false,"modelId":"nope:x","rag":true,"userId":"u"}`,
		`{"sessionId":"` + s + `","message":"hi","stream":false,"tool_name":"summarize","tool_params":{"text":"x"}}`,
		`{"sessionId":"` + strings.ToUpper(s) + `","message":"hi","stream":false}`,
		`{"sessionId":null,"message":null,"stream":null,"tool_params":null}`,
		`{"sessionId":1,"message":["a"],"stream":"yes"}`,
		`{"model":"fake:m","messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"fake:m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"system","content":"s"},{"role":"user","content":[{"type":"text","text":"hi"}]}]}`,
		`{"model":"fake:m","messages":null}`, `{"model":"fake:m","messages":[]}`, `{"model":"fake:m","messages":[null]}`,
		`{"model":"fake:m","messages":[{"role":"user","content":{"a":1}}]}`, `{"model":"fake:m","messages":[{"role":"assistant","content":"x"}]}`,
		`{"model":"default","messages":[{"role":"user","content":"hi"}],"temperature":9,"max_tokens":-1}`,
		`{"text":"hello","format":"wav","speed":1.5}`, `{"text":"","speed":99}`,
		`null`, `[]`, `"x"`, `{`, ``, "{\"message\":\"\xff\"}", `{"a":` + strings.Repeat("[", 200) + strings.Repeat("]", 200) + `}`,
	} {
		for op := range chatOps {
			f.Add(uint8(op), []byte(b))
		}
	}
	// A server with tools and retrieval, as crispy serve has: without them a turn that asks for one is
	// a 503 of the server's making, not the client's.
	e := newEnv(f, opts{tools: fakeTools{}, retr: &fakeRetriever{}})
	f.Fuzz(func(t *testing.T, op uint8, body []byte) {
		path := chatOps[int(op)%len(chatOps)]
		w := httpapitest.Send(e.h, http.MethodPost, path, "acme", body)
		if err := httpapitest.CheckRecorded(w); err != nil {
			t.Fatalf("POST %s %.200q: %v", path, body, err)
		}
	})
}

// FuzzResumeAndListParams sends arbitrary session ids, Last-Event-ID headers, cursors and limits to
// the resume, history and session-list operations (the SSE resume and cursor parsers): never a 5xx,
// errors are bounded problem JSON.
func FuzzResumeAndListParams(f *testing.F) {
	e := newEnv(f, opts{})
	s := sid()
	if r := e.chatJSON("acme", s, "hello"); r.status != http.StatusOK {
		f.Fatalf("seed turn: %d %s", r.status, r.raw)
	}
	for _, c := range [][3]string{
		{s, "", ""}, {s, "0", "20"}, {s, "1", "1"}, {s, "-1", "0"}, {s, " 3 ", "101"}, {s, "99999999999999999999", "-5"},
		{s, "1e3", "x"}, {s, "\xff", "\x00"}, {strings.ToUpper(s), "2", "2"}, {"not-a-uuid", "1", ""}, {"", "", ""},
		{"%00", "", ""}, {"../../x", "", ""}, {strings.Repeat("a", 5000), strings.Repeat("9", 5000), strings.Repeat("z", 5000)},
	} {
		f.Add(c[0], c[1], c[2])
	}
	f.Fuzz(func(t *testing.T, session, lastEventID, cursor string) {
		if !validHeaderValue(lastEventID) || session == "" {
			return
		}
		p := url.PathEscape(session)
		for _, req := range []struct {
			target string
			hdr    []string
		}{
			{"/chat/" + p + "/stream", []string{"Last-Event-ID", lastEventID}},
			{"/chat/" + p + "/history", nil},
			{"/sessions?cursor=" + url.QueryEscape(cursor) + "&limit=" + url.QueryEscape(lastEventID), nil},
		} {
			w := httpapitest.Send(e.h, http.MethodGet, req.target, "acme", nil, req.hdr...)
			if err := httpapitest.CheckRecorded(w); err != nil {
				t.Fatalf("GET %.200s (Last-Event-ID %.100q): %v", req.target, lastEventID, err)
			}
		}
	})
}

func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}
