// openai-sdk talks to crispy's /v1 with the official OpenAI Go SDK and a tenant key: a streamed
// answer, then a function call (tools) answered and sent back.
//
//	CRISPY_API_KEY=... go run ./openai-sdk -url http://localhost:8080/v1 -model openai:gpt-4o-mini
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

func main() {
	base := flag.String("url", "http://localhost:8080/v1", "crispy's OpenAI-compatible base URL")
	key := flag.String("key", os.Getenv("CRISPY_API_KEY"), "the tenant's API key (default $CRISPY_API_KEY)")
	model := flag.String("model", "openai:gpt-4o-mini", "provider:model, an alias, or a bare model name")
	flag.Parse()
	client := openai.NewClient(option.WithBaseURL(*base), option.WithAPIKey(*key), option.WithMaxRetries(2))
	ctx := context.Background()

	// A streamed answer, token by token.
	stream := client.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{
		Model:    *model,
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Say hello in five words.")},
	})
	for stream.Next() {
		if ch := stream.Current().Choices; len(ch) > 0 {
			fmt.Print(ch[0].Delta.Content)
		}
	}
	if err := stream.Err(); err != nil {
		fail(err)
	}
	fmt.Println()

	// Tools: the model asks for get_weather, we answer, and it finishes.
	params := openai.ChatCompletionNewParams{
		Model:    *model,
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("What is the weather in Lisbon?")},
		Tools: []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(openai.FunctionDefinitionParam{
			Name:        "get_weather",
			Description: openai.String("The current weather of a city"),
			Parameters: openai.FunctionParameters{
				"type":       "object",
				"properties": map[string]any{"city": map[string]string{"type": "string"}},
				"required":   []string{"city"},
			},
		})},
	}
	res, err := client.Chat.Completions.New(ctx, params)
	if err != nil {
		fail(err)
	}
	msg := res.Choices[0].Message
	if len(msg.ToolCalls) == 0 {
		fmt.Println(msg.Content)
		return
	}
	params.Messages = append(params.Messages, msg.ToParam())
	for _, call := range msg.ToolCalls {
		var args struct{ City string }
		_ = json.Unmarshal([]byte(call.Function.Arguments), &args)
		params.Messages = append(params.Messages, openai.ToolMessage(fmt.Sprintf(`{"city":%q,"celsius":21}`, args.City), call.ID))
	}
	res, err = client.Chat.Completions.New(ctx, params)
	if err != nil {
		fail(err)
	}
	fmt.Println(res.Choices[0].Message.Content)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "openai-sdk:", err)
	os.Exit(1)
}
