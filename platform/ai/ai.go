// Package ai is the port to chat-completion and speech models: the Provider interface every model
// backend implements (openai/, workersai/, offline/, aitest/), model ids "provider:model", a registry
// of configured providers, and a Router that tries an ordered list of models, each behind its own
// circuit breaker. It knows nothing of tenants, sessions or budgets.
package ai

import (
	"context"
	"io"
	"time"
)

// Roles of a message.
const (
	RoleSystem    = "system"
	RoleUser      = "user"
	RoleAssistant = "assistant"
)

// Message is one chat message.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// Document is a numbered piece of context (a retrieved passage or a tool result) that is also
// rendered into the messages. Providers that answer from context without a language model (offline)
// read it here instead of parsing the prompt.
type Document struct {
	N     int    // the [n] a citation refers to; 0 for a tool result
	Title string // a passage's title, or the tool's name
	Text  string
	Tool  bool // a tool result rather than a passage
}

// Request is one chat completion. Model is the provider's own model name (without "provider:").
type Request struct {
	Model       string
	Messages    []Message
	Documents   []Document
	MaxTokens   int     // 0: the provider's default
	Temperature float64 // 0: the provider's default
	// Pass, when set, is an OpenAI chat completions request to send as the client wrote it (the /v1
	// endpoint): Router.Pass uses it instead of Messages, MaxTokens and Temperature.
	Pass *PassRequest
	// Retry, when set, overrides the router's per-model retries (the tenant's policy).
	Retry *RetryPolicy
}

// Usage is what a call consumed. Reported is false when the provider gave no numbers (the caller
// estimates then).
type Usage struct {
	PromptTokens     int
	CompletionTokens int
	TotalTokens      int
	CachedTokens     int
	ReasoningTokens  int
	Reported         bool
}

// Result is a finished completion.
type Result struct {
	Content      string
	Usage        Usage
	FinishReason string // "stop", "length", … ("stop" when the provider says nothing)
}

// Emit receives one token delta of a streamed completion. An error from it ends the call with that
// error (the consumer went away).
type Emit func(delta string) error

// Provider is a chat-completion backend.
type Provider interface {
	// Stream runs a streamed completion, calling emit for every non-empty delta in order, and returns
	// the full result once the model has finished.
	Stream(ctx context.Context, req Request, emit Emit) (Result, error)
	// Complete runs a non-streamed completion.
	Complete(ctx context.Context, req Request) (Result, error)
}

// SpeechRequest is one text-to-speech call.
type SpeechRequest struct {
	Text   string
	Voice  string  // "" : the provider's default
	Format string  // mp3 (default), wav, opus
	Speed  float64 // 0 or 1.0: normal
}

// Audio is a speech answer: read it, then close it.
type Audio struct {
	Body        io.ReadCloser
	ContentType string
}

// Speaker turns text into speech.
type Speaker interface {
	Speak(ctx context.Context, req SpeechRequest) (Audio, error)
}

// ContentTypeOf maps a speech format to its content type.
func ContentTypeOf(format string) string {
	switch format {
	case "wav":
		return "audio/wav"
	case "opus":
		return "audio/ogg"
	default:
		return "audio/mpeg"
	}
}

// RetryPolicy is how often one model is retried before the next one is tried, for a failure that
// says "try again" (429, 5xx, a refused or reset connection) before its first token.
type RetryPolicy struct {
	Attempts int           // retries after the first try (0: none)
	Backoff  time.Duration // the first wait, doubled each retry and jittered ±50%; a retry-after wins
}
