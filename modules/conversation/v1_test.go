package conversation_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/modules/conversation"
	"github.com/crispy-enigma/crispy/modules/conversation/events"
	tenancyevents "github.com/crispy-enigma/crispy/modules/tenancy/events"
	"github.com/crispy-enigma/crispy/platform/ai"
	"github.com/crispy-enigma/crispy/platform/ai/aitest"
	"github.com/crispy-enigma/crispy/platform/ai/openai"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// upstreamEnv serves the module with an OpenAI-compatible fake upstream as the "fake" provider.
func upstreamEnv(t *testing.T, up *aitest.Upstream, o opts) *env {
	t.Helper()
	srv := httptest.NewServer(up)
	t.Cleanup(srv.Close)
	p, err := openai.New(openai.Config{BaseURL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	o.provider = p
	return newEnv(t, o)
}

// wantOpenAIError checks an error answer of /v1: OpenAI's envelope, with the status, code and
// param, and the request id header.
func wantOpenAIError(t testing.TB, r resp, status int, code, param string) {
	t.Helper()
	var env struct {
		Error struct {
			Message string  `json:"message"`
			Type    string  `json:"type"`
			Param   *string `json:"param"`
			Code    string  `json:"code"`
		} `json:"error"`
	}
	if err := json.Unmarshal([]byte(r.raw), &env); err != nil || r.status != status || env.Error.Code != code || env.Error.Message == "" || env.Error.Type == "" {
		t.Fatalf("got %d %s, want %d %s in OpenAI's envelope", r.status, r.raw, status, code)
	}
	if param != "" && (env.Error.Param == nil || *env.Error.Param != param) {
		t.Fatalf("param %v, want %s: %s", env.Error.Param, param, r.raw)
	}
	if r.header.Get("x-request-id") == "" {
		t.Fatalf("no x-request-id: %v", r.header)
	}
	var keys map[string]map[string]any
	_ = json.Unmarshal([]byte(r.raw), &keys)
	if len(keys) != 1 || len(keys["error"]) != 4 {
		t.Fatalf("envelope is not exactly {error:{message,type,param,code}}: %s", r.raw)
	}
}

func jsonEqual(t testing.TB, what string, got []byte, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("%s: %v: %s", what, err, got)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("%s: want: %v", what, err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("%s:\n got %s\nwant %s", what, got, want)
	}
}

const everyField = `{
	"model": "fake:gpt-4o-mini",
	"messages": [{"role":"user","content":"weather in Paris?"},
		{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"weather","arguments":"{\"city\":\"Paris\"}"}}]},
		{"role":"tool","tool_call_id":"call_1","content":"{\"temp\":21}"},
		{"role":"user","content":[{"type":"text","text":"and tomorrow?"}]}],
	"tools": [{"type":"function","function":{"name":"weather","description":"Weather of a city","strict":true,
		"parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"],"additionalProperties":false}}}],
	"tool_choice": {"type":"function","function":{"name":"weather"}},
	"parallel_tool_calls": false,
	"response_format": {"type":"json_schema","json_schema":{"name":"w","strict":true,"schema":{"type":"object","properties":{"t":{"type":"number"}}}}},
	"temperature": 0.3, "top_p": 0.9, "max_tokens": 77, "max_completion_tokens": 66, "stop": ["END"], "seed": 42, "n": 2,
	"user": "u-1", "logprobs": true, "top_logprobs": 3, "frequency_penalty": 0.5, "presence_penalty": -0.5, "logit_bias": {"50256": -100},
	"vendor_extension": {"top_k": 40}
}`

const toolCompletion = `{"id":"chatcmpl-up","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_1",` +
	`"choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"call_2","type":"function","function":{"name":"weather","arguments":"{\"city\":\"Paris\",\"day\":\"tomorrow\"}"}}],"refusal":null},"logprobs":{"content":[]},"finish_reason":"tool_calls"},` +
	`{"index":1,"message":{"role":"assistant","content":"{\"t\":20}"},"logprobs":null,"finish_reason":"stop"}],` +
	`"usage":{"prompt_tokens":120,"completion_tokens":30,"total_tokens":150,"prompt_tokens_details":{"cached_tokens":64}}}`

// Every standard field, and an unknown one, reaches the upstream as the client wrote it (model
// resolved, nothing injected), and the upstream's answer (tool calls, two choices, logprobs,
// usage) comes back byte for byte; the call's usage is recorded from the upstream's numbers.
func TestV1PassesEveryFieldThroughAndTheAnswerBack(t *testing.T) {
	t.Parallel()
	up := &aitest.Upstream{Completion: toolCompletion}
	e := upstreamEnv(t, up, opts{})
	var body map[string]any
	if err := json.Unmarshal([]byte(everyField), &body); err != nil {
		t.Fatal(err)
	}
	r := e.do("POST", "/v1/chat/completions", "acme", body)
	if r.status != 200 || r.raw != toolCompletion || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("%d %s\n%s", r.status, r.header, r.raw)
	}
	bodies := up.Bodies()
	if len(bodies) != 1 {
		t.Fatalf("%d upstream calls", len(bodies))
	}
	want := strings.Replace(everyField, `"fake:gpt-4o-mini"`, `"gpt-4o-mini"`, 1)
	jsonEqual(t, "upstream body", bodies[0], want)

	recs := v1Records(t, e, "acme")
	if len(recs) != 1 || recs[0].Usage.TotalTokens != 150 || recs[0].Usage.CachedTokens != 64 || recs[0].Usage.Estimated || recs[0].Model != "fake:gpt-4o-mini" {
		t.Fatalf("usage %+v", recs)
	}
}

// v1Records reads the tenant's CompletionRecorded events.
func v1Records(t testing.TB, e *env, tenantID string) []events.CompletionRecorded {
	t.Helper()
	all, err := e.store.ReadTenant(context.Background(), tenant.MustParse(tenantID), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []events.CompletionRecorded
	for _, ev := range all {
		if ev.Type != events.TypeCompletionRecorded {
			continue
		}
		var c events.CompletionRecorded
		if err := json.Unmarshal(ev.Data, &c); err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

var toolChunks = []string{
	`{"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"weather","arguments":""}}]},"logprobs":null,"finish_reason":null}],"usage":null}`,
	`{"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]},"logprobs":null,"finish_reason":null}],"usage":null}`,
	`{"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_b","type":"function","function":{"name":"time","arguments":"{}"}}]},"logprobs":null,"finish_reason":null}],"usage":null}`,
	`{"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]},"logprobs":null,"finish_reason":null}],"usage":null}`,
	`{"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}],"usage":null}`,
	`{"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":11,"completion_tokens":7,"total_tokens":18}}`,
}

// sseData is the data of every event of a streamed answer.
func sseData(t testing.TB, raw string) []string {
	t.Helper()
	var out []string
	sc := bufio.NewScanner(strings.NewReader(raw))
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			out = append(out, d)
		}
	}
	return out
}

// A streamed answer's chunks (tool call deltas with their indices and arguments, finish_reason,
// the usage chunk) reach the client as the upstream sent them, then [DONE]; the upstream is asked
// for usage either way, and a client that did not ask for it does not get the usage chunk.
func TestV1StreamsTheUpstreamChunksAsTheyAre(t *testing.T) {
	t.Parallel()
	up := &aitest.Upstream{Chunks: toolChunks}
	e := upstreamEnv(t, up, opts{})
	req := map[string]any{"model": "fake:gpt-4o-mini", "stream": true, "stream_options": map[string]any{"include_usage": true},
		"messages": []map[string]any{{"role": "user", "content": "weather?"}}, "tools": []any{map[string]any{"type": "function", "function": map[string]any{"name": "weather"}}}}
	r := e.do("POST", "/v1/chat/completions", "acme", req)
	if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	if got, want := sseData(t, r.raw), append(append([]string{}, toolChunks...), "[DONE]"); !reflect.DeepEqual(got, want) {
		t.Fatalf("chunks:\n got %q\nwant %q", got, want)
	}
	jsonEqual(t, "upstream body", up.Bodies()[0], `{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},`+
		`"messages":[{"role":"user","content":"weather?"}],"tools":[{"type":"function","function":{"name":"weather"}}]}`)

	delete(req, "stream_options")
	r = e.do("POST", "/v1/chat/completions", "acme", req)
	if got, want := sseData(t, r.raw), append(append([]string{}, toolChunks[:5]...), "[DONE]"); !reflect.DeepEqual(got, want) {
		t.Fatalf("without include_usage:\n got %q\nwant %q", got, want)
	}
	jsonEqual(t, "upstream body without include_usage", up.Bodies()[1], `{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},`+
		`"messages":[{"role":"user","content":"weather?"}],"tools":[{"type":"function","function":{"name":"weather"}}]}`)
	recs := v1Records(t, e, "acme")
	if len(recs) != 2 || recs[1].Usage.TotalTokens != 18 || recs[1].Usage.Estimated {
		t.Fatalf("usage %+v", recs)
	}
}

// Nothing is injected unless the tenant configures a system prompt; then it goes first.
func TestV1SendsOnlyTheTenantsSystemPrompt(t *testing.T) {
	t.Parallel()
	up := &aitest.Upstream{}
	e := upstreamEnv(t, up, opts{tenants: map[string]tenancyevents.TenantConfig{"acme": {ID: "acme", SystemPrompt: "Answer in French."}}})
	msg := []map[string]any{{"role": "user", "content": "hi"}}
	for _, tn := range []string{"acme", "globex"} {
		if r := e.do("POST", "/v1/chat/completions", tn, map[string]any{"model": "fake:m", "messages": msg}); r.status != 200 {
			t.Fatalf("%s: %d %s", tn, r.status, r.raw)
		}
	}
	b := up.Bodies()
	jsonEqual(t, "acme", b[0], `{"model":"m","messages":[{"role":"system","content":"Answer in French."},{"role":"user","content":"hi"}]}`)
	jsonEqual(t, "globex", b[1], `{"model":"m","messages":[{"role":"user","content":"hi"}]}`)
}

// A field a model cannot honour is refused in OpenAI's shape, naming it; a malformed tool is
// refused before any model is called.
func TestV1RefusesWhatTheModelCannotHonourAndMalformedTools(t *testing.T) {
	t.Parallel()
	up := &aitest.Upstream{}
	e := upstreamEnv(t, up, opts{})
	msg := []map[string]any{{"role": "user", "content": "hi"}}
	tool := map[string]any{"type": "function", "function": map[string]any{"name": "weather"}}
	wantOpenAIError(t, e.do("POST", "/v1/chat/completions", "acme", map[string]any{"model": "builtin:offline", "messages": msg, "tools": []any{tool}}),
		400, "unsupported_field", "tools")
	wantOpenAIError(t, e.do("POST", "/v1/chat/completions", "acme", map[string]any{"model": "builtin:offline", "messages": msg, "stream": true, "response_format": map[string]any{"type": "json_object"}}),
		400, "unsupported_field", "response_format")
	wantOpenAIError(t, e.do("POST", "/v1/chat/completions", "acme", map[string]any{"model": "builtin:offline", "messages": msg, "vendor_extension": 1}),
		400, "unsupported_field", "vendor_extension")
	for _, bad := range []struct {
		tool  any
		param string
	}{
		{map[string]any{"type": "function", "function": map[string]any{"name": "bad name!"}}, "tools[0].function.name"},
		{map[string]any{"type": "retrieval"}, "tools[0].type"},
		{map[string]any{"type": "function", "function": map[string]any{"name": "w", "parameters": map[string]any{"type": "objekt"}}}, "tools[0].function.parameters"},
		{map[string]any{"type": "function", "function": map[string]any{"name": "w", "parameters": map[string]any{"type": "object", "required": "city"}}}, "tools[0].function.parameters"},
	} {
		wantOpenAIError(t, e.do("POST", "/v1/chat/completions", "acme", map[string]any{"model": "fake:m", "messages": msg, "tools": []any{bad.tool}}),
			400, "invalid_tool", bad.param)
	}
	if up.Calls() != 0 {
		t.Fatalf("%d upstream calls for refused requests", up.Calls())
	}
	// The offline model answers plain text calls, in OpenAI's shapes.
	r := e.do("POST", "/v1/chat/completions", "acme", map[string]any{"model": "builtin:offline", "messages": msg, "temperature": 0.2, "stream": true})
	if d := sseData(t, r.raw); r.status != 200 || len(d) < 3 || d[len(d)-1] != "[DONE]" || !strings.Contains(d[len(d)-2], `"finish_reason":"stop"`) {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	// A field the upstream refuses is the client's 400, in the upstream's words.
	up.Fail = []int{0, 400}
	up.Fail[0] = 400
	wantOpenAIError(t, e.do("POST", "/v1/chat/completions", "acme", map[string]any{"model": "fake:m", "messages": msg}), 400, "upstream_bad_request", "")
}

// Errors of /v1 are OpenAI's envelope with the status and the request id, those of the floor too.
func TestV1ErrorsAreOpenAIsEnvelope(t *testing.T) {
	t.Parallel()
	e := upstreamEnv(t, &aitest.Upstream{}, opts{})
	msg := []map[string]any{{"role": "user", "content": "hi"}}
	wantOpenAIError(t, e.do("POST", "/v1/chat/completions", "acme", map[string]any{"model": "nope:m", "messages": msg}), 404, "model_not_found", "")
	wantOpenAIError(t, e.do("POST", "/v1/chat/completions", "acme", map[string]any{"model": "fake:m", "messages": []any{}}), 422, "validation_failed", "messages")
	wantOpenAIError(t, e.do("POST", "/v1/chat/completions", "", map[string]any{"model": "fake:m", "messages": msg}), 404, "tenant_not_found", "")
	wantOpenAIError(t, e.do("GET", "/v1/nothing-here", "acme", nil), 404, "route_not_found", "")
}

// Model names: provider:model, the tenant's alias, the server's, a bare name one configured model
// carries; ambiguous and unknown names are refused naming the choices. Tenant B can neither use
// nor see A's aliases and models.
func TestV1ModelNamesAndTenantIsolation(t *testing.T) {
	t.Parallel()
	up := &aitest.Upstream{}
	tenants := map[string]tenancyevents.TenantConfig{
		"acme":   {ID: "acme", Models: tenancyevents.Models{Chat: "fake:acme-model", Aliases: map[string]string{"smart": "fake:acme-secret"}}},
		"globex": {ID: "globex", Models: tenancyevents.Models{Allowed: []string{"fake:m", "builtin:offline"}}},
	}
	e := upstreamEnv(t, up, opts{tenants: tenants, config: conversation.Config{ModelAliases: map[string]string{"fast": "fake:m"}}})
	msg := []map[string]any{{"role": "user", "content": "hi"}}
	call := func(tn, model string) resp {
		return e.do("POST", "/v1/chat/completions", tn, map[string]any{"model": model, "messages": msg})
	}
	for name, upstream := range map[string]string{"smart": "acme-secret", "fast": "m", "acme-model": "acme-model", "default": "acme-model", "fake:x": "x"} {
		n := up.Calls()
		if r := call("acme", name); r.status != 200 {
			t.Fatalf("%s: %d %s", name, r.status, r.raw)
		}
		var b struct{ Model string }
		_ = json.Unmarshal(up.Bodies()[n], &b)
		if b.Model != upstream {
			t.Fatalf("%s reached the upstream as %q, want %q", name, b.Model, upstream)
		}
	}
	// Two configured providers could serve a bare name nobody configured: ambiguous.
	wantOpenAIError(t, call("acme", "gpt-unknown"), 400, "model_ambiguous", "model")
	// globex cannot use acme's alias or model, nor see them.
	wantOpenAIError(t, call("globex", "smart"), 400, "model_ambiguous", "model")
	wantOpenAIError(t, call("globex", "fake:acme-secret"), 403, "model_not_allowed", "")
	wantOpenAIError(t, call("globex", "acme-model"), 400, "model_ambiguous", "")
	for tn, want := range map[string][]string{"acme": {"fake:acme-model", "fast", "fake:m", "smart"}, "globex": {"builtin:offline", "fast", "fake:m"}} {
		r := e.do("GET", "/v1/models", tn, nil)
		var list struct {
			Object string
			Data   []struct{ ID, Object, OwnedBy string }
		}
		_ = json.Unmarshal([]byte(r.raw), &list)
		var got []string
		for _, m := range list.Data {
			got = append(got, m.ID)
		}
		if r.status != 200 || list.Object != "list" || strings.Contains(tn, "globex") && strings.Contains(r.raw, "acme") {
			t.Fatalf("%s: %d %s", tn, r.status, r.raw)
		}
		for _, w := range want {
			if !strings.Contains(strings.Join(got, " ")+" ", w+" ") {
				t.Fatalf("%s: models %v, want %v among them", tn, got, want)
			}
		}
	}
}

// Retries on the same model for 429/5xx before the first token, honouring retry-after, then the
// fallback; the waits are the router's (recorded here, not slept).
func TestV1RetriesThenFallsBack(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var waits []time.Duration
	sleep := func(ctx context.Context, d time.Duration) error {
		mu.Lock()
		waits = append(waits, d)
		mu.Unlock()
		return nil
	}
	up := &aitest.Upstream{Fail: []int{503, 429}, RetryAfter: "2"}
	tenants := map[string]tenancyevents.TenantConfig{"acme": {ID: "acme", Models: tenancyevents.Models{Retry: &tenancyevents.Retry{Attempts: 2, BackoffMs: 100}}}}
	e := upstreamEnv(t, up, opts{tenants: tenants, router: ai.RouterConfig{Sleep: sleep}})
	msg := []map[string]any{{"role": "user", "content": "hi"}}
	r := e.do("POST", "/v1/chat/completions", "acme", map[string]any{"model": "fake:m", "messages": msg, "stream": true})
	if r.status != 200 || up.Calls() != 3 || !strings.Contains(r.raw, "[DONE]") {
		t.Fatalf("%d after %d calls: %s", r.status, up.Calls(), r.raw)
	}
	if len(waits) != 2 || waits[0] != 2*time.Second || waits[1] != 2*time.Second {
		t.Fatalf("waits %v, want the retry-after twice", waits)
	}
	// A tenant without retries (and the router's default of none) falls back at once.
	up2 := &aitest.Upstream{Fail: []int{503, 503, 503}}
	e2 := upstreamEnv(t, up2, opts{tenants: map[string]tenancyevents.TenantConfig{"acme": {ID: "acme", Models: tenancyevents.Models{Fallbacks: []string{"builtin:offline"}}}}})
	r = e2.do("POST", "/v1/chat/completions", "acme", map[string]any{"model": "fake:m", "messages": msg})
	if r.status != 200 || up2.Calls() != 1 || !strings.Contains(r.raw, "builtin:offline") {
		t.Fatalf("%d after %d calls: %s", r.status, up2.Calls(), r.raw)
	}
	recs := v1Records(t, e2, "acme")
	if len(recs) != 1 || len(recs[0].Fallbacks) != 1 || recs[0].Fallbacks[0].Reason != "unavailable" {
		t.Fatalf("%+v", recs)
	}
}

// A model that sends nothing within the first-byte timeout is left for the next; one that stops
// mid-answer for longer than the idle timeout ends the stream with an error event.
func TestV1FirstByteAndIdleTimeouts(t *testing.T) {
	t.Parallel()
	msg := []map[string]any{{"role": "user", "content": "hi"}}
	hang := &aitest.Upstream{HangFirst: true}
	e := upstreamEnv(t, hang, opts{router: ai.RouterConfig{FirstTokenTimeout: 50 * time.Millisecond},
		tenants: map[string]tenancyevents.TenantConfig{"acme": {ID: "acme", Models: tenancyevents.Models{Fallbacks: []string{"builtin:offline"}}}}})
	r := e.do("POST", "/v1/chat/completions", "acme", map[string]any{"model": "fake:m", "messages": msg, "stream": true})
	if r.status != 200 || !strings.Contains(r.raw, "builtin:offline") || !strings.Contains(r.raw, "[DONE]") {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	idle := &aitest.Upstream{End: aitest.EndHang}
	e2 := upstreamEnv(t, idle, opts{router: ai.RouterConfig{IdleTimeout: 50 * time.Millisecond}})
	r = e2.do("POST", "/v1/chat/completions", "acme", map[string]any{"model": "fake:m", "messages": msg, "stream": true})
	d := sseData(t, r.raw)
	if r.status != 200 || len(d) < 2 || !strings.Contains(d[len(d)-1], `"error"`) || !strings.Contains(d[len(d)-1], "stream_failed") || strings.Contains(r.raw, "[DONE]") {
		t.Fatalf("%d %q", r.status, d)
	}
}
