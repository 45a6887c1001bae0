package conversation_test

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"testing"

	"github.com/crispy-enigma/crispy/platform/ai/aitest"
)

// The /v1 body is validated by the operation (a fast walk for the common shapes, huma's validator
// for the rest) with the answers huma's own validation gave: the status, the code and the field
// at fault, in OpenAI's envelope. Bodies the fast walk reads and bodies it leaves to the validator
// (escapes, case variants of a field, numbers that are not plain, logit_bias) alike.
func TestV1BodyValidation(t *testing.T) {
	t.Parallel()
	up := &aitest.Upstream{}
	e := upstreamEnv(t, up, opts{})
	const msgs = `"messages":[{"role":"user","content":"hi"}]`
	for _, c := range []struct {
		body, contentType string
		status            int
		code, param       string
	}{
		{body: `{"model":"fake:m",` + msgs + `}`, status: 200},
		{body: ` {"model":"fake:m",` + msgs + `} ` + "\n", status: 200},
		{body: `{"model":"fake:m",` + msgs + `}`, contentType: "application/json; charset=utf-8", status: 200},
		{body: `{"model":"fake\u003am",` + msgs + `}`, status: 200},
		{body: `{"model":"nope:m","model":"fake:m",` + msgs + `}`, status: 200},
		{body: `{"model":"fake:m",` + msgs + `,"Model":"nope:m"}`, status: 404, code: "model_not_found"},
		{body: `{"model":"fake:m",` + msgs + `,"stream":false,"n":1,"max_tokens":0,"max_completion_tokens":5,"temperature":2,"top_p":0.5,"seed":-7,` +
			`"user":"u1","stop":["x"],"tool_choice":null,"parallel_tool_calls":true,"response_format":{"type":"text"},"logprobs":false,"top_logprobs":20,` +
			`"frequency_penalty":-2,"presence_penalty":1.5e0,"logit_bias":{"50256":-100},"vendor":{"a":[1]}}`, status: 200},
		{body: `{"model":"fake:m","messages":[{"role":"user","content":[{"type":"text","text":"hi"}],"name":"ann","extra":1}]}`, status: 200},
		{body: `{"model":"fake:m",` + msgs + `,"n":0}`, status: 422, code: "validation_failed", param: "n"},
		{body: `{"model":"fake:m",` + msgs + `,"max_tokens":-1}`, status: 422, code: "validation_failed", param: "max_tokens"},
		{body: `{"model":"fake:m",` + msgs + `,"temperature":2.5}`, status: 422, code: "validation_failed", param: "temperature"},
		{body: `{"model":"fake:m",` + msgs + `,"seed":1.5}`, status: 422, code: "validation_failed", param: "seed"},
		{body: `{"model":"fake:m",` + msgs + `,"stream":null,"user":null}`, status: 200}, // huma's validator lets an optional field be null
		{body: `{"model":"fake:m",` + msgs + `,"stream_options":{"include_usage":1}}`, status: 422, code: "validation_failed", param: "stream_options.include_usage"},
		{body: `{"model":"fake:m",` + msgs + `,"tools":[1]}`, status: 422, code: "validation_failed", param: "tools[0]"},
		{body: `{"model":"fake:m",` + msgs + `,"logit_bias":{"1":"x"}}`, status: 422, code: "validation_failed", param: "logit_bias.1"},
		{body: `{"model":"fake:m","messages":[{"role":"robot","content":"hi"}]}`, status: 422, code: "validation_failed", param: "messages[0].role"},
		{body: `{"model":"fake:m","messages":[{"content":"hi"}]}`, status: 422, code: "validation_failed", param: "messages[0]"},
		{body: `{"model":"fake:m","messages":[{"role":"user","content":"hi","name":5}]}`, status: 422, code: "validation_failed", param: "messages[0].name"},
		{body: `{"model":"fake:m","messages":[]}`, status: 422, code: "validation_failed", param: "messages"},
		{body: `{"model":"fake:m","messages":null}`, status: 422, code: "validation_failed", param: "messages"},
		{body: `{"model":"fake:m"}`, status: 422, code: "validation_failed"},
		{body: `{"model":"fake:m",` + msgs + `,"user":"two\nlines"}`, status: 422, code: "validation_failed", param: "user"},
		{body: `{"model":"fake:m","messages":[{"role":"user","content":"   "}]}`, status: 422, code: "validation_failed", param: "messages[0].content"},
		{body: `{"model":"fake:m",` + msgs, status: 400, code: "bad_request"},
		{body: `[1]`, status: 422, code: "validation_failed"},
		{body: `{"model":"fake:m",` + msgs + `}`, contentType: "text/plain", status: 415},
	} {
		r := httptest.NewRequest("POST", "/v1/chat/completions", bytes.NewReader([]byte(c.body)))
		ct := c.contentType
		if ct == "" {
			ct = "application/json"
		}
		r.Header.Set("Content-Type", ct)
		r.Header.Set("x-tenant-id", "acme")
		w := httptest.NewRecorder()
		e.h.ServeHTTP(w, r)
		got := resp{status: w.Code, raw: w.Body.String(), header: w.Header()}
		_ = json.Unmarshal(w.Body.Bytes(), &got.body)
		switch {
		case c.status == 200:
			if got.status != 200 {
				t.Errorf("%s: %d %s", c.body, got.status, got.raw)
			}
		case c.code == "":
			if got.status != c.status {
				t.Errorf("%s (%s): %d %s, want %d", c.body, ct, got.status, got.raw, c.status)
			}
		default:
			t.Run(c.body, func(t *testing.T) { wantOpenAIError(t, got, c.status, c.code, c.param) })
		}
	}
}
