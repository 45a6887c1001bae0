package openai_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/platform/ai"
	"github.com/crispy-enigma/crispy/platform/ai/openai"
)

// TestIntegrationOpenAICompatible streams a short answer from a real OpenAI-compatible server
// (OpenAI, Ollama, vLLM, llama.cpp).
func TestIntegrationOpenAICompatible(t *testing.T) {
	base, model := os.Getenv("CRISPY_OPENAI_BASE_URL"), os.Getenv("CRISPY_TEST_OPENAI_MODEL")
	if base == "" || model == "" {
		t.Skip("no OpenAI-compatible server: set CRISPY_OPENAI_BASE_URL, CRISPY_OPENAI_API_KEY and CRISPY_TEST_OPENAI_MODEL")
	}
	p, err := openai.New(openai.Config{BaseURL: base, APIKey: os.Getenv("CRISPY_OPENAI_API_KEY")})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var b strings.Builder
	res, err := p.Stream(ctx, ai.Request{Model: model, MaxTokens: 20, Messages: []ai.Message{{Role: "user", Content: "Say hello in one word."}}},
		func(d string) error { b.WriteString(d); return nil })
	if err != nil || b.Len() == 0 || res.Content != b.String() {
		t.Fatalf("%+v %q %v", res, b.String(), err)
	}
}
