package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/crispy-enigma/crispy/modules/conversation/internal/app"
	"github.com/crispy-enigma/crispy/platform/ai"
	"github.com/crispy-enigma/crispy/platform/apperr"
	platformhttp "github.com/crispy-enigma/crispy/platform/httpapi"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// OAIMessage is an OpenAI chat message. Content is a string or an array of {type:"text", text} parts.
type OAIMessage struct {
	_       struct{}        `additionalProperties:"true"`
	Role    string          `json:"role" enum:"system,developer,user,assistant,tool" doc:"Author of the message"`
	Content json.RawMessage `json:"content,omitempty" doc:"A string, or an array of text parts"`
	Name    string          `json:"name,omitempty"`
}

// StreamOptions are OpenAI's stream options.
type StreamOptions struct {
	_            struct{} `additionalProperties:"true"`
	IncludeUsage bool     `json:"include_usage,omitempty" doc:"Send a last chunk with the usage"`
}

// CompletionsInput is POST /v1/chat/completions.
type CompletionsInput struct {
	SessionID string `header:"x-session-id" pattern:"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$" patternDescription:"a lowercase hyphenated UUID" doc:"Record the exchange in this session (a UUID, lowercase and hyphenated): its history and resumption, as POST /chat. Without it the call is stateless: only its usage is recorded"`
	Body      struct {
		_             struct{}       `additionalProperties:"true"`
		Model         string         `json:"model" maxLength:"240" doc:"provider:model, or \"default\" for the tenant's model" example:"builtin:offline"`
		Messages      []OAIMessage   `json:"messages" minItems:"1" maxItems:"1000" doc:"The conversation; the last one must be from the user"`
		Stream        bool           `json:"stream,omitempty"`
		StreamOptions *StreamOptions `json:"stream_options,omitempty"`
		MaxTokens     int            `json:"max_tokens,omitempty" minimum:"0"`
		Temperature   float64        `json:"temperature,omitempty" minimum:"0" maximum:"2"`
		User          string         `json:"user,omitempty" maxLength:"256"`
	}
}

// Resolve checks what the schema cannot: the last message has visible text, and the model, user and
// names are one line. ("messages": null is refused by the floor for every array of a request body.)
func (in *CompletionsInput) Resolve(huma.Context) []error {
	b := &in.Body
	checks := []*huma.ErrorDetail{platformhttp.Line("body.model", b.Model), platformhttp.Line("body.user", b.User)}
	for i, m := range b.Messages {
		checks = append(checks, platformhttp.Line("body.messages["+itoa(i)+"].name", m.Name))
	}
	if n := len(b.Messages); n > 0 {
		// Only the last message is the question; an earlier assistant turn may be empty. Content that
		// is neither a string nor text parts is the handler's invalid_content.
		if text, err := contentText(b.Messages[n-1].Content); err == nil {
			checks = append(checks, platformhttp.Prose("body.messages["+itoa(n-1)+"].content", text))
		}
	}
	return platformhttp.FieldErrors(checks...)
}

type oaiUsage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

type oaiChoice struct {
	Index        int         `json:"index"`
	Message      *oaiMsgOut  `json:"message,omitempty"`
	Delta        *oaiMsgOut  `json:"delta,omitempty"`
	FinishReason *string     `json:"finish_reason"`
	Logprobs     interface{} `json:"logprobs"`
}

type oaiMsgOut struct {
	Role    string `json:"role,omitempty"`
	Content string `json:"content"`
}

type oaiCompletion struct {
	ID      string      `json:"id"`
	Object  string      `json:"object"`
	Created int64       `json:"created"`
	Model   string      `json:"model"`
	Choices []oaiChoice `json:"choices"`
	Usage   *oaiUsage   `json:"usage"`
}

func contentText(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(raw, &parts); err != nil {
		return "", err
	}
	var b strings.Builder
	for _, p := range parts {
		if p.Type == "text" {
			b.WriteString(p.Text)
		}
	}
	return b.String(), nil
}

func registerOpenAI(api huma.API, svc *app.Service) {
	huma.Register(api, huma.Operation{OperationID: "create-chat-completion", Method: http.MethodPost, Path: "/v1/chat/completions", Tags: []string{"openai"},
		Summary: "OpenAI-compatible chat completions",
		Description: "The OpenAI chat completions API (streamed and not), tenant-scoped, with the same model rules and budgets as /chat: " +
			"existing OpenAI SDKs work with this server's base URL and the tenant's API key. Models are provider:model. " +
			"Stateless unless x-session-id names a session: without it nothing is kept but the call's usage (tokens, model, latency, outcome; " +
			"no prompt or answer), which /usage, cost and the token budget count; with it the exchange is recorded in that session of the tenant, as POST /chat records it.",
		Responses: map[string]*huma.Response{"200": {Description: "A chat.completion, or chat.completion.chunk events", Content: map[string]*huma.MediaType{
			"application/json": {}, "text/event-stream": {}}},
			"409": problem("Another turn of the x-session-id session is in progress (turn_in_progress)"),
			"422": problem("Invalid body, or an x-session-id that is not a lowercase hyphenated UUID"),
			"502": problem("No model could answer, or its answer ended before it was complete (upstream_truncated)"),
			"503": problem("The server is shutting down (shutting_down)"),
		}},
		func(ctx context.Context, in *CompletionsInput) (*huma.StreamResponse, error) {
			t, _ := tenant.FromContext(ctx)
			b := in.Body
			msgs := make([]ai.Message, 0, len(b.Messages))
			for i, m := range b.Messages {
				text, err := contentText(m.Content)
				if err != nil {
					return nil, apperr.Invalid("invalid_content", "body.messages["+itoa(i)+"].content", "content must be a string or an array of text parts")
				}
				role := m.Role
				if role == "developer" {
					role = ai.RoleSystem
				}
				msgs = append(msgs, ai.Message{Role: role, Content: text})
			}
			last := msgs[len(msgs)-1]
			if last.Role != ai.RoleUser || last.Content == "" {
				return nil, apperr.Invalid("invalid_messages", "body.messages", "the last message must be a non-empty user message")
			}
			model := b.Model
			if model == "default" {
				model = ""
			}
			turn, err := svc.Start(ctx, app.TurnInput{Tenant: t, SessionID: in.SessionID, Stateless: in.SessionID == "", Message: last.Content, ModelID: model,
				UserID: userOf(ctx, b.User), Source: "openai", Context: msgs[:len(msgs)-1], Received: time.Now()})
			if err != nil {
				return nil, err
			}
			// Start returns the turn with this request attached as its reader; Detach follows.
			id := "chatcmpl-" + turn.ID
			created := time.Now().Unix()
			if !b.Stream {
				defer turn.Detach()
				o, err := turn.Wait(ctx)
				if err != nil {
					return nil, apperr.Wrap(err, apperr.KindTimeout, "client_gone", "the request ended before the answer")
				}
				if o.Err != nil {
					return nil, o.Err
				}
				stop := "stop"
				return jsonStream(oaiCompletion{ID: id, Object: "chat.completion", Created: created, Model: o.Model,
					Choices: []oaiChoice{{Message: &oaiMsgOut{Role: "assistant", Content: o.Content}, FinishReason: &stop}},
					Usage:   &oaiUsage{PromptTokens: o.Usage.PromptTokens, CompletionTokens: o.Usage.CompletionTokens, TotalTokens: o.Usage.TotalTokens}}), nil
			}
			if err := turn.WaitStarted(ctx); err != nil {
				turn.Detach()
				return nil, apperr.Wrap(err, apperr.KindTimeout, "client_gone", "the request ended before the answer")
			}
			if o, done := turn.Outcome(); done && o.Err != nil && !hasTokens(turn) {
				turn.Detach()
				return nil, o.Err
			}
			includeUsage := b.StreamOptions != nil && b.StreamOptions.IncludeUsage
			return &huma.StreamResponse{Body: func(hctx huma.Context) {
				defer turn.Detach()
				hctx.SetHeader("Content-Type", "text/event-stream")
				hctx.SetHeader("Cache-Control", "no-cache")
				hctx.SetStatus(http.StatusOK)
				w := hctx.BodyWriter()
				write := func(v any) bool {
					data, _ := json.Marshal(v)
					if _, err := w.Write(append(append([]byte("data: "), data...), '\n', '\n')); err != nil {
						return false
					}
					return true
				}
				model := turn.Model
				first := true
				after := 0
				for {
					evs, done, err := turn.Next(hctx.Context(), after)
					if err != nil {
						return
					}
					for _, e := range evs {
						after = e.Seq
						switch d := e.Data.(type) {
						case app.TokenData:
							delta := &oaiMsgOut{Content: d.Token}
							if first {
								delta.Role, first = "assistant", false
							}
							if !write(oaiCompletion{ID: id, Object: "chat.completion.chunk", Created: created, Model: model, Choices: []oaiChoice{{Delta: delta}}}) {
								return
							}
						case app.DoneData:
							stop := "stop"
							write(oaiCompletion{ID: id, Object: "chat.completion.chunk", Created: created, Model: d.Model,
								Choices: []oaiChoice{{Delta: &oaiMsgOut{}, FinishReason: &stop}}})
							if includeUsage {
								write(oaiCompletion{ID: id, Object: "chat.completion.chunk", Created: created, Model: d.Model, Choices: []oaiChoice{},
									Usage: &oaiUsage{PromptTokens: d.Usage.PromptTokens, CompletionTokens: d.Usage.CompletionTokens, TotalTokens: d.Usage.TotalTokens}})
							}
							_, _ = w.Write([]byte("data: [DONE]\n\n"))
						case app.ErrorData:
							_, _ = w.Write([]byte("data: " + errFmt(d.Code, d.Message) + "\n\n"))
						}
					}
					flush(w)
					if done {
						return
					}
				}
			}}, nil
		})
}

func itoa(i int) string { return jsonInt(i) }

func jsonInt(i int) string { b, _ := json.Marshal(i); return string(b) }
