// Package openaisdk drives the real crispy binary's /v1 API with the official OpenAI Go SDK
// (github.com/openai/openai-go/v3), as an API consumer would: chat plain and streamed with tools
// and usage, /v1/models, /v1/embeddings, and OpenAI-shaped errors. It is a module of its own so
// that the SDK (and the newer golang.org/x modules it requires) stays out of the server's build;
// `task test` runs it. The model behind the server is a loopback upstream answering with
// OpenAI's recorded wire format.
package openaisdk

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/packages/param"
)

var crispyBin string

func TestMain(m *testing.M) {
	os.Exit(func() int {
		dir, err := os.MkdirTemp("", "crispy-openai-sdk-")
		if err != nil {
			fmt.Println(err)
			return 1
		}
		defer os.RemoveAll(dir)
		crispyBin = filepath.Join(dir, "crispy")
		build := exec.Command("go", "build", "-o", crispyBin, "./cmd/crispy")
		build.Dir = filepath.Join("..", "..")
		if out, err := build.CombinedOutput(); err != nil {
			fmt.Printf("go build ./cmd/crispy: %v\n%s", err, out)
			return 1
		}
		return m.Run()
	}())
}

const key = "sdk-e2e-key"

// The upstream's answers, as OpenAI's API writes them (captured shapes: a role chunk, content
// deltas, tool-call deltas whose arguments arrive in pieces under their index, the finish_reason
// chunk, then the usage chunk with empty choices when stream_options.include_usage is set).
const chunkHead = `{"id":"chatcmpl-up1","object":"chat.completion.chunk","created":1764424800,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_560af6e559",`

var textChunks = []string{
	chunkHead + `"choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}`,
	chunkHead + `"choices":[{"index":0,"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null}],"usage":null}`,
	chunkHead + `"choices":[{"index":0,"delta":{"content":" there"},"logprobs":null,"finish_reason":null}],"usage":null}`,
	chunkHead + `"choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}`,
}

var toolChunks = []string{
	chunkHead + `"choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_w1","type":"function","function":{"name":"get_weather","arguments":""}}],"refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}`,
	chunkHead + `"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"ci"}}]},"logprobs":null,"finish_reason":null}],"usage":null}`,
	chunkHead + `"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"ty\":\"Lisbon\"}"}}]},"logprobs":null,"finish_reason":null}],"usage":null}`,
	chunkHead + `"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_t2","type":"function","function":{"name":"get_time","arguments":""}}]},"logprobs":null,"finish_reason":null}],"usage":null}`,
	chunkHead + `"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"{\"tz\":\"WET\"}"}}]},"logprobs":null,"finish_reason":null}],"usage":null}`,
	chunkHead + `"choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}],"usage":null}`,
}

const usageChunk = chunkHead + `"choices":[],"usage":{"prompt_tokens":31,"completion_tokens":9,"total_tokens":40,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}`

const textCompletion = `{"id":"chatcmpl-up2","object":"chat.completion","created":1764424800,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"Hello there","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":2,"total_tokens":14},"service_tier":"default","system_fingerprint":"fp_560af6e559"}`

const toolCompletion = `{"id":"chatcmpl-up3","object":"chat.completion","created":1764424800,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"call_w1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Lisbon\"}"}}],"refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":31,"completion_tokens":9,"total_tokens":40}}`

// upstream answers POST /v1/chat/completions with the recorded answers (tool calls when the
// request has tools) and keeps the bodies it was sent.
type upstream struct {
	mu     sync.Mutex
	bodies []map[string]json.RawMessage
}

func (u *upstream) last() map[string]json.RawMessage {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.bodies) == 0 {
		return nil
	}
	return u.bodies[len(u.bodies)-1]
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/chat/completions" || r.Header.Get("Authorization") != "Bearer sk-upstream" {
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"error":{"message":"not found","type":"invalid_request_error","param":null,"code":null}}`)
		return
	}
	var body map[string]json.RawMessage
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	u.mu.Lock()
	u.bodies = append(u.bodies, body)
	u.mu.Unlock()
	_, tools := body["tools"]
	if string(body["stream"]) != "true" {
		w.Header().Set("Content-Type", "application/json")
		if tools {
			fmt.Fprint(w, toolCompletion)
		} else {
			fmt.Fprint(w, textCompletion)
		}
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	chunks := textChunks
	if tools {
		chunks = toolChunks
	}
	if strings.Contains(string(body["stream_options"]), `"include_usage":true`) {
		chunks = append(chunks[:len(chunks):len(chunks)], usageChunk)
	}
	for _, c := range append(chunks, "[DONE]") {
		fmt.Fprintf(w, "data: %s\n\n", c)
		w.(http.Flusher).Flush()
	}
}

// server is the real binary on loopback, its OpenAI provider pointed at the upstream.
type server struct {
	base string
	logs *strings.Builder
}

func start(t *testing.T, upstreamURL string) *server {
	t.Helper()
	dir := t.TempDir()
	sum := sha256.Sum256([]byte(key))
	tenants := filepath.Join(dir, "tenants.yaml")
	cfg := "tenants:\n  - id: sdk\n    rateLimit: {perMinute: 6000, burst: 1000}\n    apiKeys: [\"sha256:" + hex.EncodeToString(sum[:]) + "\"]\n"
	if err := os.WriteFile(tenants, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(crispyBin, "serve", "--addr", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "data"), "--tenants", tenants)
	cmd.Env = append(os.Environ(), "CRISPY_LOG_LEVEL=info", "CRISPY_OPENAI_BASE_URL="+upstreamURL+"/v1", "CRISPY_OPENAI_API_KEY=sk-upstream")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{logs: &strings.Builder{}}
	var mu sync.Mutex
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			mu.Lock()
			s.logs.WriteString(sc.Text() + "\n")
			mu.Unlock()
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == "listening" {
				if a, ok := m["addr"].(string); ok {
					select {
					case addr <- a:
					default:
					}
				}
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	logs := func() string { mu.Lock(); defer mu.Unlock(); return s.logs.String() }
	select {
	case a := <-addr:
		s.base = "http://" + a
	case err := <-done:
		t.Fatalf("crispy serve exited before listening: %v\n%s", err, logs())
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("crispy serve did not listen within 60s\n%s", logs())
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Errorf("crispy serve did not stop within 60s of SIGTERM")
		}
		if t.Failed() {
			t.Logf("server log:\n%s", logs())
		}
	})
	return s
}

func TestOfficialSDKAgainstTheServer(t *testing.T) {
	up := &upstream{}
	upSrv := httptest.NewServer(up)
	defer upSrv.Close()
	srv := start(t, upSrv.URL)
	client := openai.NewClient(option.WithBaseURL(srv.base+"/v1"), option.WithAPIKey(key), option.WithMaxRetries(0),
		option.WithRequestTimeout(30*time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	weather := openai.ChatCompletionFunctionTool(openai.FunctionDefinitionParam{
		Name:        "get_weather",
		Description: openai.String("The current weather of a city"),
		Parameters: openai.FunctionParameters{"type": "object", "required": []string{"city"},
			"properties": map[string]any{"city": map[string]string{"type": "string"}}},
	})
	clock := openai.ChatCompletionFunctionTool(openai.FunctionDefinitionParam{
		Name:       "get_time",
		Parameters: openai.FunctionParameters{"type": "object", "properties": map[string]any{"tz": map[string]string{"type": "string"}}},
	})

	t.Run("plain chat passes the sampling fields and answers as the model did", func(t *testing.T) {
		res, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
			Model:       "openai:gpt-4o-mini",
			Messages:    []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("Be brief."), openai.UserMessage("Say hello.")},
			Temperature: openai.Float(0.2), TopP: openai.Float(0.9), Seed: openai.Int(7), MaxCompletionTokens: openai.Int(64),
			Stop: openai.ChatCompletionNewParamsStopUnion{OfStringArray: []string{"\n\n"}},
			User: openai.String("u-1"),
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Choices) != 1 || res.Choices[0].Message.Content != "Hello there" || res.Choices[0].FinishReason != "stop" || res.Usage.TotalTokens != 14 {
			t.Fatalf("answer %s", res.RawJSON())
		}
		got := up.last()
		for field, want := range map[string]string{"model": `"gpt-4o-mini"`, "temperature": "0.2", "top_p": "0.9", "seed": "7",
			"max_completion_tokens": "64", "stop": `["\n\n"]`, "user": `"u-1"`} {
			if string(got[field]) != want {
				t.Errorf("upstream got %s = %s, want %s", field, got[field], want)
			}
		}
		var msgs []map[string]any
		_ = json.Unmarshal(got["messages"], &msgs)
		if len(msgs) != 2 || msgs[0]["role"] != "system" || msgs[0]["content"] != "Be brief." {
			t.Errorf("upstream got messages %s: nothing may be added or dropped", got["messages"])
		}
	})

	t.Run("streamed text with stream_options.include_usage", func(t *testing.T) {
		stream := client.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{
			Model:         "openai:gpt-4o-mini",
			Messages:      []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Say hello.")},
			StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
		})
		acc := openai.ChatCompletionAccumulator{}
		var deltas []string
		for stream.Next() {
			c := stream.Current()
			acc.AddChunk(c)
			if len(c.Choices) > 0 && c.Choices[0].Delta.Content != "" {
				deltas = append(deltas, c.Choices[0].Delta.Content)
			}
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		if strings.Join(deltas, "|") != "Hello| there" || acc.Choices[0].FinishReason != "stop" || acc.Usage.TotalTokens != 40 || acc.Usage.PromptTokens != 31 {
			t.Fatalf("deltas %q, finish %q, usage %+v", deltas, acc.Choices[0].FinishReason, acc.Usage)
		}
	})

	t.Run("streamed tool calls: deltas by index, finish_reason tool_calls, usage", func(t *testing.T) {
		stream := client.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{
			Model:             "openai:gpt-4o-mini",
			Messages:          []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Weather and time in Lisbon?")},
			Tools:             []openai.ChatCompletionToolUnionParam{weather, clock},
			ToolChoice:        openai.ChatCompletionToolChoiceOptionUnionParam{OfAuto: openai.String("auto")},
			ParallelToolCalls: openai.Bool(true),
			StreamOptions:     openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
		})
		acc := openai.ChatCompletionAccumulator{}
		var finished []openai.FinishedChatCompletionToolCall
		for stream.Next() {
			acc.AddChunk(stream.Current())
			if tc, ok := acc.JustFinishedToolCall(); ok {
				finished = append(finished, tc)
			}
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		calls := acc.Choices[0].Message.ToolCalls
		if len(calls) != 2 || calls[0].ID != "call_w1" || calls[0].Function.Name != "get_weather" || calls[0].Function.Arguments != `{"city":"Lisbon"}` ||
			calls[1].ID != "call_t2" || calls[1].Function.Name != "get_time" || calls[1].Function.Arguments != `{"tz":"WET"}` {
			t.Fatalf("tool calls %+v", calls)
		}
		if len(finished) != 2 || acc.Choices[0].FinishReason != "tool_calls" || acc.Usage.TotalTokens != 40 {
			t.Fatalf("finished %d, finish %q, usage %+v", len(finished), acc.Choices[0].FinishReason, acc.Usage)
		}
		got := up.last()
		var tools []map[string]any
		_ = json.Unmarshal(got["tools"], &tools)
		if len(tools) != 2 || string(got["tool_choice"]) != `"auto"` || string(got["parallel_tool_calls"]) != "true" {
			t.Fatalf("upstream got tools %s, tool_choice %s, parallel_tool_calls %s", got["tools"], got["tool_choice"], got["parallel_tool_calls"])
		}
	})

	t.Run("a tool call answered and sent back, not streamed", func(t *testing.T) {
		params := openai.ChatCompletionNewParams{
			Model:          "openai:gpt-4o-mini",
			Messages:       []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Weather in Lisbon?")},
			Tools:          []openai.ChatCompletionToolUnionParam{weather},
			ResponseFormat: openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONObject: &openai.ResponseFormatJSONObjectParam{}},
		}
		res, err := client.Chat.Completions.New(ctx, params)
		if err != nil {
			t.Fatal(err)
		}
		msg := res.Choices[0].Message
		if res.Choices[0].FinishReason != "tool_calls" || len(msg.ToolCalls) != 1 || msg.ToolCalls[0].Function.Arguments != `{"city":"Lisbon"}` {
			t.Fatalf("answer %s", res.RawJSON())
		}
		if string(up.last()["response_format"]) != `{"type":"json_object"}` {
			t.Fatalf("upstream got response_format %s", up.last()["response_format"])
		}
		params.Messages = append(params.Messages, msg.ToParam(), openai.ToolMessage(`{"celsius":21}`, msg.ToolCalls[0].ID))
		if _, err := client.Chat.Completions.New(ctx, params); err != nil {
			t.Fatal(err)
		}
		var msgs []map[string]any
		_ = json.Unmarshal(up.last()["messages"], &msgs)
		if len(msgs) != 3 || msgs[1]["tool_calls"] == nil || msgs[2]["role"] != "tool" || msgs[2]["tool_call_id"] != "call_w1" {
			t.Fatalf("upstream got messages %s", up.last()["messages"])
		}
	})

	t.Run("/v1/models lists what the tenant may name", func(t *testing.T) {
		page, err := client.Models.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Data) == 0 {
			t.Fatalf("no models: %s", page.RawJSON())
		}
		for _, m := range page.Data {
			if m.Object != "model" || m.ID == "" || m.OwnedBy == "" {
				t.Fatalf("model %s", m.RawJSON())
			}
		}
	})

	t.Run("/v1/embeddings, floats and base64", func(t *testing.T) {
		res, err := client.Embeddings.New(ctx, openai.EmbeddingNewParams{Model: "default",
			Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"refund policy", "shipping times"}}})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Data) != 2 || len(res.Data[0].Embedding) == 0 || len(res.Data[0].Embedding) != len(res.Data[1].Embedding) || res.Data[1].Index != 1 || res.Model == "" {
			t.Fatalf("embeddings %.300s", res.RawJSON())
		}
		b64, err := client.Embeddings.New(ctx, openai.EmbeddingNewParams{Model: "default", EncodingFormat: openai.EmbeddingNewParamsEncodingFormatBase64,
			Input: openai.EmbeddingNewParamsInputUnion{OfString: param.NewOpt("refund policy")}})
		if err != nil {
			t.Fatal(err)
		}
		if len(b64.Data) != 1 {
			t.Fatalf("base64 embeddings %.300s", b64.RawJSON())
		}
	})

	t.Run("errors are OpenAI's: *openai.Error with status, type, code and param", func(t *testing.T) {
		_, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "nosuch:model",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}})
		var oe *openai.Error
		if !errors.As(err, &oe) || oe.StatusCode != http.StatusNotFound || oe.Code != "model_not_found" || oe.Type == "" || oe.Message == "" {
			t.Fatalf("unknown model: %#v", err)
		}
		// The offline model reads text only: a request with tools is refused, naming the field.
		_, err = client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "builtin:offline",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}, Tools: []openai.ChatCompletionToolUnionParam{weather}})
		if !errors.As(err, &oe) || oe.StatusCode != http.StatusBadRequest || oe.Code != "unsupported_field" || oe.Param != "tools" || oe.Type != "invalid_request_error" {
			t.Fatalf("tools on the offline model: %#v", err)
		}
		// A malformed tool schema is refused before any model is called.
		bad := openai.ChatCompletionFunctionTool(openai.FunctionDefinitionParam{Name: "bad name!", Parameters: openai.FunctionParameters{"type": "object"}})
		_, err = client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "openai:gpt-4o-mini",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}, Tools: []openai.ChatCompletionToolUnionParam{bad}})
		if !errors.As(err, &oe) || oe.StatusCode != http.StatusBadRequest || oe.Code != "invalid_tool" {
			t.Fatalf("malformed tool: %#v", err)
		}
		// A wrong key: 401 in the same envelope.
		anon := openai.NewClient(option.WithBaseURL(srv.base+"/v1"), option.WithAPIKey("wrong"), option.WithMaxRetries(0))
		_, err = anon.Models.List(ctx)
		if !errors.As(err, &oe) || oe.StatusCode != http.StatusUnauthorized || oe.Message == "" {
			t.Fatalf("wrong key: %#v", err)
		}
	})
}
