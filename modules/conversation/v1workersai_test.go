package conversation_test

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/crispy-enigma/crispy/platform/ai/aitest"
	"github.com/crispy-enigma/crispy/platform/ai/workersai"
)

// workersEnv serves /v1 with a Workers AI provider under "fake", its base URL an Upstream speaking
// Workers AI's REST format (POST /accounts/{account}/ai/run/{model}: SSE {"response":…} chunks, a
// usage chunk and [DONE]; or {"result":{"response","usage"},"success":true}).
func workersEnv(t *testing.T, up *aitest.Upstream) *env {
	t.Helper()
	srv := httptest.NewServer(up)
	t.Cleanup(srv.Close)
	p, err := workersai.New(workersai.Config{AccountID: "acct", APIToken: "cf-token", BaseURL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	return newEnv(t, opts{provider: p})
}

// Workers AI through /v1: a text call's sampling fields that its models take under OpenAI's names
// (temperature, max_tokens, top_p, seed, the penalties) reach it; its answer comes back as OpenAI's
// chunks with its reported usage. What the adapter cannot send (tools, tool messages,
// response_format, stop, n > 1, logprobs, images) is a 400 in OpenAI's shape naming the field,
// and Workers AI is not called.
func TestV1WorkersAIPassesWhatItTakesAndRefusesTheRest(t *testing.T) {
	t.Parallel()
	up := &aitest.Upstream{Tokens: []string{"Hel", "lo"}}
	e := workersEnv(t, up)
	msg := []map[string]any{{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}}
	r := e.do("POST", "/v1/chat/completions", "acme", map[string]any{"model": "fake:@cf/meta/llama-3.1-8b-instruct", "messages": msg, "stream": true,
		"stream_options": map[string]any{"include_usage": true}, "temperature": 0.3, "max_tokens": 50, "top_p": 0.9, "seed": 42,
		"frequency_penalty": 0.5, "presence_penalty": 0.25, "user": "u-1", "n": 1})
	d := sseData(t, r.raw)
	if r.status != 200 || len(d) < 5 || d[len(d)-1] != "[DONE]" {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	var content strings.Builder
	finish, total := "", 0
	for _, data := range d[:len(d)-1] {
		var c struct {
			Object  string `json:"object"`
			Choices []struct {
				Delta        struct{ Content string } `json:"delta"`
				FinishReason *string                  `json:"finish_reason"`
			} `json:"choices"`
			Usage *struct {
				TotalTokens int `json:"total_tokens"`
			} `json:"usage"`
		}
		if err := json.Unmarshal([]byte(data), &c); err != nil || c.Object != "chat.completion.chunk" {
			t.Fatalf("chunk %s: %v", data, err)
		}
		for _, ch := range c.Choices {
			content.WriteString(ch.Delta.Content)
			if ch.FinishReason != nil {
				finish = *ch.FinishReason
			}
		}
		if c.Usage != nil {
			total = c.Usage.TotalTokens
		}
	}
	if content.String() != "Hello" || finish != "stop" || total != 7 {
		t.Fatalf("content %q finish %q usage %d: %s", content.String(), finish, total, r.raw)
	}
	bodies := up.Bodies()
	jsonEqual(t, "workers ai request", bodies[0], `{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"hi"}],"stream":true,`+
		`"max_tokens":50,"temperature":0.3,"top_p":0.9,"seed":42,"frequency_penalty":0.5,"presence_penalty":0.25}`)
	if recs := v1Records(t, e, "acme"); len(recs) != 1 || recs[0].Usage.TotalTokens != 7 || recs[0].Usage.Estimated {
		t.Fatalf("usage %+v", recs)
	}

	// Not streamed: one chat.completion.
	r = e.do("POST", "/v1/chat/completions", "acme", map[string]any{"model": "fake:@cf/meta/llama-3.1-8b-instruct", "messages": msg, "seed": 7})
	var c struct {
		Object  string `json:"object"`
		Choices []struct {
			Message struct{ Content string } `json:"message"`
		} `json:"choices"`
	}
	if err := json.Unmarshal([]byte(r.raw), &c); r.status != 200 || err != nil || c.Object != "chat.completion" || c.Choices[0].Message.Content != "Hello" {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	jsonEqual(t, "workers ai request", up.Bodies()[1], `{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"hi"}],"seed":7}`)

	calls := up.Calls()
	tool := map[string]any{"type": "function", "function": map[string]any{"name": "weather", "parameters": map[string]any{"type": "object"}}}
	user := map[string]any{"role": "user", "content": "hi"}
	for _, tc := range []struct {
		field string
		value any
		param string
	}{
		{"tools", []any{tool}, "tools"},
		{"tool_choice", "auto", "tool_choice"},
		{"response_format", map[string]any{"type": "json_object"}, "response_format"},
		{"stop", []string{"\n"}, "stop"},
		{"logprobs", true, "logprobs"},
		{"n", 2, "n"},
		{"messages", []any{user, map[string]any{"role": "assistant", "tool_calls": []any{map[string]any{"id": "c1", "type": "function",
			"function": map[string]any{"name": "weather", "arguments": "{}"}}}}, map[string]any{"role": "tool", "tool_call_id": "c1", "content": "21C"}}, "messages[1]"},
		{"messages", []any{map[string]any{"role": "user", "content": []any{map[string]any{"type": "image_url", "image_url": map[string]any{"url": "https://x/y.png"}}}}}, "messages[0].content"},
	} {
		body := map[string]any{"model": "fake:@cf/meta/llama-3.1-8b-instruct", "messages": []any{user}, "stream": true}
		body[tc.field] = tc.value
		r := e.do("POST", "/v1/chat/completions", "acme", body)
		wantOpenAIError(t, r, 400, "unsupported_field", tc.param)
		if !strings.Contains(r.raw, "text-only adapter") && !strings.Contains(r.raw, "one choice") && !strings.Contains(r.raw, "tool calls") && !strings.Contains(r.raw, "text only") {
			t.Fatalf("%s: the message does not say why: %s", tc.field, r.raw)
		}
	}
	if up.Calls() != calls {
		t.Fatalf("Workers AI was called %d times for refused requests", up.Calls()-calls)
	}
}
