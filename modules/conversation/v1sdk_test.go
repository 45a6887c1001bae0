package conversation_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	openaisdk "github.com/sashabaranov/go-openai"

	"github.com/crispy-enigma/crispy/platform/ai/aitest"
)

// An OpenAI client library sends tools and reads the streamed tool calls back: the deltas of two
// calls, merged by their index, give each call's name and whole arguments, then finish_reason
// tool_calls and the usage chunk it asked for. A refusal reaches it as an APIError with its code.
func TestV1ToolCallsThroughAnOpenAIClientLibrary(t *testing.T) {
	t.Parallel()
	e := upstreamEnv(t, &aitest.Upstream{Chunks: toolChunks}, opts{})
	srv := httptest.NewServer(e.h)
	defer srv.Close()
	cfg := openaisdk.DefaultConfig("unused-key")
	cfg.BaseURL = srv.URL + "/v1"
	cfg.HTTPClient = &http.Client{Transport: tenantHeader{"acme"}}
	client := openaisdk.NewClientWithConfig(cfg)
	req := openaisdk.ChatCompletionRequest{Model: "fake:gpt-4o-mini", Stream: true, StreamOptions: &openaisdk.StreamOptions{IncludeUsage: true},
		Messages: []openaisdk.ChatCompletionMessage{{Role: openaisdk.ChatMessageRoleUser, Content: "weather in Paris?"}},
		Tools: []openaisdk.Tool{{Type: openaisdk.ToolTypeFunction, Function: &openaisdk.FunctionDefinition{Name: "weather",
			Parameters: map[string]any{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}}}}}}
	stream, err := client.CreateChatCompletionStream(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	names, args := map[int]string{}, map[int]string{}
	finish, total := "", 0
	for {
		c, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if c.Usage != nil {
			total = c.Usage.TotalTokens
		}
		for _, ch := range c.Choices {
			if ch.FinishReason != "" {
				finish = string(ch.FinishReason)
			}
			for _, tc := range ch.Delta.ToolCalls {
				names[*tc.Index] += tc.Function.Name
				args[*tc.Index] += tc.Function.Arguments
			}
		}
	}
	if names[0] != "weather" || args[0] != `{"city":"Paris"}` || names[1] != "time" || args[1] != "{}" || finish != "tool_calls" || total != 18 {
		t.Fatalf("names %v args %v finish %q usage %d", names, args, finish, total)
	}
	req.Model = "builtin:offline"
	_, err = client.CreateChatCompletion(context.Background(), openaisdk.ChatCompletionRequest{Model: req.Model, Messages: req.Messages, Tools: req.Tools})
	var apiErr *openaisdk.APIError
	if !errors.As(err, &apiErr) || apiErr.HTTPStatusCode != 400 || apiErr.Code != "unsupported_field" || apiErr.Param == nil || *apiErr.Param != "tools" {
		t.Fatalf("%#v", err)
	}
}
