package conversation_test

import (
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/crispy-enigma/crispy/platform/ai/aitest"
	"github.com/crispy-enigma/crispy/platform/ai/workersai"
)

// workersEnv serves /v1 with a Workers AI provider under "fake", its base URL (or, with gateway,
// its AI Gateway URL) an Upstream speaking Workers AI's OpenAI-compatible API
// (…/ai/v1/chat/completions) and its REST format (…/ai/run/{model}).
func workersEnv(t *testing.T, up *aitest.Upstream, gateway bool) *env {
	t.Helper()
	srv := httptest.NewServer(up)
	t.Cleanup(srv.Close)
	cfg := workersai.Config{AccountID: "acct", APIToken: "cf-token", BaseURL: srv.URL}
	if gateway {
		cfg.GatewayID, cfg.GatewayURL = "gw", srv.URL
	}
	p, err := workersai.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return newEnv(t, opts{provider: p})
}

// Workers AI through /v1 is a pass-through to its OpenAI-compatible endpoint: every field reaches
// the model as the client wrote it (tools, tool messages, response_format, stop… with the model
// name resolved), and the streamed tool calls come back as Workers AI sent them, with the call's
// usage recorded; a field a model refuses is Workers AI's 400, in OpenAI's shape. Directly and
// through AI Gateway. Before, the adapter translated to its REST format and refused tools,
// tool messages, response_format, stop, n > 1, logprobs and images with 400 unsupported_field.
func TestV1WorkersAIPassesEveryFieldThroughItsOpenAIEndpoint(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		gateway bool
		path    string
	}{{false, "/accounts/acct/ai/v1/chat/completions"}, {true, "/acct/gw/workers-ai/v1/chat/completions"}} {
		up := &aitest.Upstream{Chunks: toolChunks}
		e := workersEnv(t, up, tc.gateway)
		tool := map[string]any{"type": "function", "function": map[string]any{"name": "weather", "parameters": map[string]any{"type": "object"}}}
		msgs := []any{map[string]any{"role": "user", "content": "weather?"},
			map[string]any{"role": "assistant", "tool_calls": []any{map[string]any{"id": "c1", "type": "function", "function": map[string]any{"name": "weather", "arguments": "{}"}}}},
			map[string]any{"role": "tool", "tool_call_id": "c1", "content": "21C"}}
		r := e.do("POST", "/v1/chat/completions", "acme", map[string]any{"model": "fake:@cf/meta/llama-3.3-70b-instruct-fp8-fast", "messages": msgs,
			"stream": true, "tools": []any{tool}, "tool_choice": "auto", "response_format": map[string]any{"type": "json_object"}, "stop": []string{"END"}, "seed": 7})
		if r.status != 200 {
			t.Fatalf("gateway %v: %d %s", tc.gateway, r.status, r.raw)
		}
		if got, want := sseData(t, r.raw), append(append([]string{}, toolChunks[:5]...), "[DONE]"); !reflect.DeepEqual(got, want) {
			t.Fatalf("gateway %v: chunks:\n got %q\nwant %q", tc.gateway, got, want)
		}
		if p := up.Paths(); len(p) != 1 || p[0] != tc.path {
			t.Fatalf("gateway %v: called %v, want %s", tc.gateway, p, tc.path)
		}
		jsonEqual(t, "workers ai request", up.Bodies()[0], `{"model":"@cf/meta/llama-3.3-70b-instruct-fp8-fast","stream":true,"stream_options":{"include_usage":true},`+
			`"messages":[{"role":"user","content":"weather?"},{"role":"assistant","tool_calls":[{"id":"c1","type":"function","function":{"name":"weather","arguments":"{}"}}]},`+
			`{"role":"tool","tool_call_id":"c1","content":"21C"}],"tools":[{"type":"function","function":{"name":"weather","parameters":{"type":"object"}}}],`+
			`"tool_choice":"auto","response_format":{"type":"json_object"},"stop":["END"],"seed":7}`)
		if recs := v1Records(t, e, "acme"); len(recs) != 1 || recs[0].Usage.TotalTokens != 18 || recs[0].Usage.Estimated {
			t.Fatalf("gateway %v: usage %+v", tc.gateway, recs)
		}
	}

	// What a model refuses is Workers AI's answer, in OpenAI's shape.
	up := &aitest.Upstream{Fail: []int{400}}
	e := workersEnv(t, up, false)
	r := e.do("POST", "/v1/chat/completions", "acme", map[string]any{"model": "fake:@cf/meta/llama-3.1-8b-instruct",
		"messages": []any{map[string]any{"role": "user", "content": "hi"}}, "logprobs": true})
	wantOpenAIError(t, r, 400, "upstream_bad_request", "")
	if !strings.Contains(r.raw, "scripted failure 400") || up.Calls() != 1 {
		t.Fatalf("Workers AI's refusal is not passed on (%d calls): %s", up.Calls(), r.raw)
	}
}

// A chat turn (POST /chat) still runs the model through Workers AI's REST endpoint.
func TestWorkersAIChatTurnUsesItsRESTEndpoint(t *testing.T) {
	t.Parallel()
	up := &aitest.Upstream{}
	e := workersEnv(t, up, false)
	r := e.chatJSON("acme", sid(), "hi")
	if r.status != 200 || r.body["response"] != "Hello" {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	if p := up.Paths(); len(p) != 1 || p[0] != "/accounts/acct/ai/run/m" {
		t.Fatalf("called %v", p)
	}
}
