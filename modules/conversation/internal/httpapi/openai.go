package httpapi

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"reflect"
	"regexp"
	"sort"
	"strconv"
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

// CompletionsInput is POST /v1/chat/completions as huma binds it: the x-session-id header and the
// raw body. The body is documented field by field by completionsBody (the operation's request
// schema, set at registration) and decoded and validated by Resolve, not by huma (see v1body.go);
// the pass-through sends every field on as the client wrote it (RawBody), not as re-encoded.
type CompletionsInput struct {
	SessionID string `header:"x-session-id" pattern:"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$" patternDescription:"a lowercase hyphenated UUID" doc:"Record the exchange in this session (a UUID, lowercase and hyphenated): its history and resumption, as POST /chat. Without it the call is stateless and passed through to the model: only its usage is recorded"`
	RawBody   []byte
	body      completionsBody
	// fields are the body's top-level fields (slices of RawBody), when decodeFast split them.
	fields map[string]json.RawMessage
}

// completionsBody is the body of POST /v1/chat/completions. An alias of an unnamed struct, as the
// Body of an Input type is: the schema is named after the operation (CreateChatCompletionInput).
type completionsBody = struct {
	_                   struct{}           `additionalProperties:"true"`
	Model               string             `json:"model" maxLength:"240" doc:"provider:model, an alias (the tenant's models.aliases, then the server's), a bare model name that one configured provider serves, or \"default\" for the tenant's model" example:"builtin:offline"`
	Messages            []OAIMessage       `json:"messages" minItems:"1" maxItems:"1000" doc:"The conversation, passed on as written"`
	Stream              bool               `json:"stream,omitempty"`
	StreamOptions       *StreamOptions     `json:"stream_options,omitempty"`
	MaxTokens           int                `json:"max_tokens,omitempty" minimum:"0"`
	MaxCompletionTokens int                `json:"max_completion_tokens,omitempty" minimum:"0"`
	Temperature         float64            `json:"temperature,omitempty" minimum:"0" maximum:"2"`
	TopP                float64            `json:"top_p,omitempty" minimum:"0" maximum:"1"`
	N                   int                `json:"n,omitempty" minimum:"1" maximum:"128"`
	Stop                any                `json:"stop,omitempty" doc:"A string or up to 4 strings"`
	Seed                int64              `json:"seed,omitempty"`
	User                string             `json:"user,omitempty" maxLength:"256"`
	Tools               []map[string]any   `json:"tools,omitempty" maxItems:"128" doc:"{type: function, function: {name, description, parameters (a JSON Schema object), strict}}; a malformed one is a 400 invalid_tool"`
	ToolChoice          any                `json:"tool_choice,omitempty" doc:"none, auto, required, or {type: function, function: {name}}"`
	ParallelToolCalls   *bool              `json:"parallel_tool_calls,omitempty"`
	ResponseFormat      map[string]any     `json:"response_format,omitempty" doc:"{type: text}, {type: json_object} or {type: json_schema, json_schema: {...}}"`
	Logprobs            bool               `json:"logprobs,omitempty"`
	TopLogprobs         int                `json:"top_logprobs,omitempty" minimum:"0" maximum:"20"`
	FrequencyPenalty    float64            `json:"frequency_penalty,omitempty" minimum:"-2" maximum:"2"`
	PresencePenalty     float64            `json:"presence_penalty,omitempty" minimum:"-2" maximum:"2"`
	LogitBias           map[string]float64 `json:"logit_bias,omitempty"`
}

// completionsRequestBody is the operation's request body as huma made it when CompletionsInput had
// a Body field: required, JSON by completionsBody's schema (and the raw body's octet-stream).
func completionsRequestBody(api huma.API) *huma.RequestBody {
	f := reflect.StructField{Name: "Body", Type: reflect.TypeFor[completionsBody]()}
	return &huma.RequestBody{Required: true, Content: map[string]*huma.MediaType{
		"application/json": {Schema: huma.SchemaFromField(api.OpenAPI().Components.Schemas, f, "CompletionsInputBody")},
	}}
}

// Resolve decodes and validates the body (decodeFast, else huma's validator through the
// operation's bodyCheck), then checks what the schema cannot: the last message has visible text,
// and the model, user and names are one line. ("messages": null is refused by the schema, as for
// every array of a request body.)
func (in *CompletionsInput) Resolve(hctx huma.Context) []error {
	var errs []error
	if ct := hctx.Header("Content-Type"); !in.decodeFast(ct) {
		in.body, in.fields = completionsBody{}, nil // what the fast walk filled before it gave up
		if op := hctx.Operation(); op != nil {
			if c, ok := op.Metadata[bodyCheckKey].(*bodyCheck); ok {
				errs = c.decode(ct, in)
			}
		}
	}
	b := &in.body
	checks := []*huma.ErrorDetail{platformhttp.Line("body.model", b.Model), platformhttp.Line("body.user", b.User)}
	for i, m := range b.Messages {
		if m.Name != "" { // an empty name passes; its location is not built for nothing
			checks = append(checks, platformhttp.Line("body.messages["+itoa(i)+"].name", m.Name))
		}
	}
	if n := len(b.Messages); n > 0 {
		// Only the last message is the question; an earlier assistant turn may be empty. Content that
		// is neither a string nor text parts is the handler's invalid_content.
		if text, err := contentText(b.Messages[n-1].Content); err == nil {
			checks = append(checks, platformhttp.Prose("body.messages["+itoa(n-1)+"].content", text))
		}
	}
	return append(errs, platformhttp.FieldErrors(checks...)...)
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
	registerOpenAIModels(api, svc)
	reqBody := completionsRequestBody(api)
	check := &bodyCheck{api: api, schema: reqBody.Content["application/json"].Schema}
	huma.Register(api, huma.Operation{OperationID: "create-chat-completion", Method: http.MethodPost, Path: "/v1/chat/completions", Tags: []string{"openai"},
		// The body is validated and decoded by CompletionsInput.Resolve (v1body.go). The limits are
		// what huma gives an operation with a Body (the server makes the timeout its read timeout).
		RequestBody: reqBody, SkipValidateBody: true, MaxBodyBytes: 1 << 20, BodyReadTimeout: 5 * time.Second,
		Metadata: map[string]any{bodyCheckKey: check},
		Summary:  "OpenAI-compatible chat completions",
		Description: "The OpenAI chat completions API (streamed and not), tenant-scoped, with the same model rules and budgets as /chat: " +
			"existing OpenAI SDKs work with this server's base URL and the tenant's API key. Without x-session-id the call is passed through: every field reaches the model as written " +
			"(tools, tool_choice, response_format, sampling, unknown fields too) and its answer comes back as the model wrote it (tool_calls, finish_reason, usage with stream_options.include_usage); " +
			"only the model name is resolved and the tenant's systemPrompt, when configured, sent first. A model that cannot honour a field (the offline model: text only) answers 400 unsupported_field; Workers AI models are called through Workers AI's OpenAI-compatible endpoint, so their refusals are Workers AI's (upstream_bad_request); " +
			"nothing is kept but the call's usage. With x-session-id the exchange is a chat turn of that session, as POST /chat records it, and only model, messages, stream, stream_options and user are honoured (400 for any other field). " +
			"Errors are OpenAI's {error: {message, type, param, code}}.",
		Responses: map[string]*huma.Response{"200": {Description: "A chat.completion, or chat.completion.chunk events", Content: completionContent(api)},
			"400": problem("A field the model cannot honour (unsupported_field), a malformed tool (invalid_tool), an ambiguous model name (model_ambiguous), or a request the model refused (upstream_bad_request)"),
			"403": problem("The API key lacks the chat scope (scope_required), the model is not allowed for the tenant (model_not_allowed), or it has no price and the API key a USD budget (model_unpriced)"),
			"404": problem("No configured model, alias or provider has that name (model_not_found)"),
			"409": problem("Another turn of the x-session-id session is in progress (turn_in_progress)"),
			"422": problem("Invalid body, or an x-session-id that is not a lowercase hyphenated UUID"),
			"502": problem("No model could answer, or its answer ended before it was complete (upstream_truncated)"),
			"503": problem("The server is shutting down (shutting_down)"),
		}},
		func(ctx context.Context, in *CompletionsInput) (*huma.StreamResponse, error) {
			if in.SessionID != "" {
				return sessionCompletion(ctx, svc, in)
			}
			return passCompletion(ctx, svc, in)
		})
}

// passCompletion is a stateless call: the client's request goes to the model as written.
func passCompletion(ctx context.Context, svc *app.Service, in *CompletionsInput) (*huma.StreamResponse, error) {
	t, _ := tenant.FromContext(ctx)
	b := &in.body
	// The body was decoded (and validated) already: its fields are split off it as they are,
	// without a second decode copying every value (decodeFast split them already). RawBody lives
	// until the stream is written.
	fields := in.fields
	if fields == nil {
		var ok bool
		if fields, ok = ai.SplitFields(in.RawBody); !ok {
			if err := json.Unmarshal(in.RawBody, &fields); err != nil {
				return nil, apperr.Invalid("malformed_body", "body", "the body is not a JSON object")
			}
		}
	}
	delete(fields, "model")
	delete(fields, "stream")
	if err := checkTools(b.Tools); err != nil {
		return nil, err
	}
	pr := &ai.PassRequest{Fields: fields, Stream: b.Stream, IncludeUsage: b.StreamOptions != nil && b.StreamOptions.IncludeUsage,
		MaxTokens: b.MaxCompletionTokens}
	if pr.MaxTokens == 0 {
		pr.MaxTokens = b.MaxTokens
	}
	call, err := svc.PrepareProxy(ctx, app.ProxyInput{Tenant: t, Model: b.Model, Pass: pr, UserID: userOf(ctx, b.User),
		PromptBytes: len(fields["messages"]), Received: time.Now()})
	if err != nil {
		return nil, err
	}
	return &huma.StreamResponse{Body: func(hctx huma.Context) {
		r := &relay{hctx: hctx, w: hctx.BodyWriter(), stream: pr.Stream}
		r.frame = r.buf[:0]
		if pr.Stream {
			pr.Flush = r.flush
		}
		err := call.Run(hctx.Context(), r.out)
		switch {
		case err == nil && pr.Stream:
			// Not flushed here: the server flushes it with the chunked body's end as the handler
			// returns, one write instead of two.
			_, _ = r.w.Write(doneEvent)
		case err != nil && r.started && pr.Stream:
			_, _ = r.w.Write(append(append([]byte("data: "), platformhttp.OpenAIErrorJSON(hctx, err)...), '\n', '\n'))
			flush(r.w)
		case err != nil && !r.started:
			platformhttp.WriteError(hctx, err)
		}
	}}, nil
}

// relay writes a passed-through answer to the client: the status and headers with its first
// piece, then a non-streamed body as it is, or each streamed chunk as one event written at once.
// One allocation per call holds what closures and the variables they captured took apart.
type relay struct {
	hctx    huma.Context
	w       io.Writer
	stream  bool
	started bool
	frame   []byte    // one event (reused)
	buf     [512]byte // frame's first array: a chunk is a few hundred bytes
}

// out is the call's ai.Chunks.
func (r *relay) out(data []byte) error {
	if !r.started {
		r.started = true
		if r.stream {
			r.hctx.SetHeader("Content-Type", "text/event-stream")
			r.hctx.SetHeader("Cache-Control", "no-cache")
		} else {
			r.hctx.SetHeader("Content-Type", "application/json")
		}
		r.hctx.SetStatus(http.StatusOK)
	}
	if !r.stream {
		_, err := r.w.Write(data)
		return err
	}
	// Written unflushed into the response's buffer: the provider flushes (pr.Flush) before it
	// waits for the upstream.
	r.frame = append(append(append(r.frame[:0], dataPrefix...), data...), eventEnd...)
	_, err := r.w.Write(r.frame)
	return err
}

// flush sends on what the events written so far hold, once the answer has begun (PassRequest.Flush).
func (r *relay) flush() {
	if r.started {
		flush(r.w)
	}
}

var doneEvent = []byte("data: [DONE]\n\n")

var dataPrefix, eventEnd = []byte("data: "), []byte("\n\n")

// toolName is OpenAI's rule for a function's name.
var toolName = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)

// checkTools refuses a malformed tool (400 invalid_tool naming it) before any model is called: a
// function without a valid name, or parameters that are not a JSON Schema object.
func checkTools(tools []map[string]any) error {
	for i, t := range tools {
		at := "body.tools[" + itoa(i) + "]"
		if typ, _ := t["type"].(string); typ != "function" {
			return apperr.Invalid("invalid_tool", at+".type", "a tool's type must be \"function\"")
		}
		fn, ok := t["function"].(map[string]any)
		if !ok {
			return apperr.Invalid("invalid_tool", at+".function", "a tool needs a function object")
		}
		if name, _ := fn["name"].(string); !toolName.MatchString(name) {
			return apperr.Invalid("invalid_tool", at+".function.name", "a function name is 1-64 letters, digits, _ and -")
		}
		if d, ok := fn["description"]; ok && d != nil {
			if _, ok := d.(string); !ok {
				return apperr.Invalid("invalid_tool", at+".function.description", "a function description is a string")
			}
		}
		p, ok := fn["parameters"]
		if !ok || p == nil {
			continue
		}
		if msg := schemaProblem(p); msg != "" {
			return apperr.Invalid("invalid_tool", at+".function.parameters", "invalid JSON Schema: "+msg)
		}
	}
	return nil
}

var schemaTypes = map[string]bool{"object": true, "array": true, "string": true, "number": true, "integer": true, "boolean": true, "null": true}

// schemaProblem checks the shape of a JSON Schema as far as a model's tool call depends on it: an
// object, known types, properties an object of schemas, required a list of names, items a schema.
func schemaProblem(v any) string {
	s, ok := v.(map[string]any)
	if !ok {
		return "a schema is an object"
	}
	switch typ := s["type"].(type) {
	case nil:
	case string:
		if !schemaTypes[typ] {
			return "unknown type " + strconv.Quote(typ)
		}
	case []any:
		for _, x := range typ {
			if n, ok := x.(string); !ok || !schemaTypes[n] {
				return "type lists unknown types"
			}
		}
	default:
		return "type is a string or a list of strings"
	}
	if props, ok := s["properties"]; ok {
		m, ok := props.(map[string]any)
		if !ok {
			return "properties is an object"
		}
		for k, sub := range m {
			if msg := schemaProblem(sub); msg != "" {
				return "properties." + k + ": " + msg
			}
		}
	}
	if req, ok := s["required"]; ok {
		l, ok := req.([]any)
		if !ok {
			return "required is a list of property names"
		}
		for _, x := range l {
			if _, ok := x.(string); !ok {
				return "required is a list of property names"
			}
		}
	}
	if items, ok := s["items"]; ok {
		if _, isBool := items.(bool); !isBool {
			if msg := schemaProblem(items); msg != "" {
				return "items: " + msg
			}
		}
	}
	return ""
}

// sessionFields are what a call recorded in a session (x-session-id) honours: it is a chat turn
// of the session, answered as POST /chat answers; any other field is refused, not dropped.
var sessionFields = map[string]bool{"model": true, "messages": true, "stream": true, "stream_options": true, "user": true}

// sessionCompletion records the exchange in the x-session-id session, as POST /chat does.
func sessionCompletion(ctx context.Context, svc *app.Service, in *CompletionsInput) (*huma.StreamResponse, error) {
	t, _ := tenant.FromContext(ctx)
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(in.RawBody, &fields); err != nil {
		return nil, apperr.Invalid("malformed_body", "body", "the body is not a JSON object")
	}
	names := make([]string, 0, len(fields))
	for k, v := range fields {
		if !sessionFields[k] && string(v) != "null" {
			names = append(names, k)
		}
	}
	if len(names) > 0 {
		sort.Strings(names)
		return nil, apperr.Invalid("unsupported_field", "body."+names[0], "a call recorded in a session (x-session-id) is a chat turn and honours only model, messages, stream, stream_options and user; "+
			"send "+strings.Join(names, ", ")+" without x-session-id (a stateless call passes every field to the model)")
	}
	b := in.body
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
	model, err := svc.ResolveModel(ctx, t, b.Model)
	if err != nil {
		return nil, err
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
}

// OAIModel is one entry of GET /v1/models.
type OAIModel struct {
	ID      string `json:"id" doc:"What to send as model: provider:model or an alias" example:"openai:gpt-4o-mini"`
	Object  string `json:"object" enum:"model"`
	Created int64  `json:"created" doc:"Always 0: the server does not know when a provider made the model"`
	OwnedBy string `json:"owned_by" doc:"The provider that serves it" example:"openai"`
}

// ModelsOutput is GET /v1/models.
type ModelsOutput struct {
	Body struct {
		Object string     `json:"object" enum:"list"`
		Data   []OAIModel `json:"data"`
	}
}

func registerOpenAIModels(api huma.API, svc *app.Service) {
	huma.Register(api, huma.Operation{OperationID: "list-models", Method: http.MethodGet, Path: "/v1/models", Tags: []string{"openai"},
		Summary: "OpenAI-compatible model list",
		Description: "The models this tenant may name in /v1/chat/completions: its allowed models (with no allow-list, the models it is configured with and the server's default) " +
			"and the aliases (the tenant's models.aliases, then the server's) whose model it may use. Another tenant's models and aliases never appear."},
		func(ctx context.Context, _ *struct{}) (*ModelsOutput, error) {
			t, _ := tenant.FromContext(ctx)
			ms, err := svc.Models(ctx, t)
			if err != nil {
				return nil, err
			}
			out := &ModelsOutput{}
			out.Body.Object = "list"
			out.Body.Data = make([]OAIModel, 0, len(ms))
			for _, m := range ms {
				out.Body.Data = append(out.Body.Data, OAIModel{ID: m.ID, Object: "model", OwnedBy: m.OwnedBy})
			}
			return out, nil
		})
}

func itoa(i int) string { return strconv.Itoa(i) }

// ChatCompletion documents the JSON answer of POST /v1/chat/completions: OpenAI's chat.completion as
// the model wrote it (passed through, so a provider's extra fields come back too).
type ChatCompletion struct {
	ID      string             `json:"id" example:"chatcmpl-0193b2c4"`
	Object  string             `json:"object" example:"chat.completion"`
	Created int64              `json:"created" example:"1764424800"`
	Model   string             `json:"model" example:"openai:gpt-4o-mini"`
	Choices []CompletionChoice `json:"choices"`
	Usage   *CompletionUsage   `json:"usage,omitempty"`
}

// ChatCompletionChunk documents one streamed event's data: OpenAI's chat.completion.chunk.
type ChatCompletionChunk struct {
	ID      string             `json:"id" example:"chatcmpl-0193b2c4"`
	Object  string             `json:"object" example:"chat.completion.chunk"`
	Created int64              `json:"created" example:"1764424800"`
	Model   string             `json:"model" example:"openai:gpt-4o-mini"`
	Choices []CompletionChoice `json:"choices"`
	Usage   *CompletionUsage   `json:"usage,omitempty" doc:"On the last chunk, with stream_options.include_usage"`
}

// CompletionChoice is one choice of a completion (message) or of a chunk (delta).
type CompletionChoice struct {
	Index        int                `json:"index"`
	Message      *CompletionMessage `json:"message,omitempty" doc:"In a chat.completion"`
	Delta        *CompletionMessage `json:"delta,omitempty" doc:"In a chat.completion.chunk"`
	FinishReason *string            `json:"finish_reason,omitempty" enum:"stop,length,tool_calls,content_filter" doc:"Set on the choice's last chunk"`
}

// CompletionMessage is an assistant message or a piece of one.
type CompletionMessage struct {
	Role      string           `json:"role,omitempty" example:"assistant"`
	Content   string           `json:"content,omitempty" example:"Refunds are accepted within 30 days."`
	ToolCalls []map[string]any `json:"tool_calls,omitempty" doc:"Function calls the model asks for, with their ids, indices and arguments"`
}

// CompletionUsage is a completion's token usage.
type CompletionUsage struct {
	PromptTokens     int `json:"prompt_tokens" example:"42"`
	CompletionTokens int `json:"completion_tokens" example:"7"`
	TotalTokens      int `json:"total_tokens" example:"49"`
}

// completionContent describes the answer: JSON, or chunk events ending with data: [DONE].
func completionContent(api huma.API) map[string]*huma.MediaType {
	reg := api.OpenAPI().Components.Schemas
	js := reg.Schema(reflect.TypeFor[ChatCompletion](), true, "ChatCompletion")
	stop := "stop"
	chunk := ChatCompletionChunk{ID: "chatcmpl-0193b2c4", Object: "chat.completion.chunk", Created: 1764424800, Model: "openai:gpt-4o-mini",
		Choices: []CompletionChoice{{Index: 0, Delta: &CompletionMessage{Role: "assistant", Content: "Refunds are accepted"}}}}
	last := chunk
	last.Choices = []CompletionChoice{{Index: 0, Delta: &CompletionMessage{Content: " within 30 days."}, FinishReason: &stop}}
	sse := platformhttp.EventStream(api, "ChatCompletionStreamEvent",
		"OpenAI's stream: data-only events, each a chat.completion.chunk as the model wrote it, then data: [DONE].",
		[]platformhttp.StreamEvent{
			{Data: ChatCompletionChunk{}, Schema: "ChatCompletionChunkEvent", Description: "A chat.completion.chunk."},
			{Data: "", Schema: "ChatCompletionDoneEvent", Description: "The end of the stream: data is the text [DONE]."},
		},
		[]platformhttp.SSEExample{{Data: chunk}, {Data: last}, {Data: "[DONE]"}})
	// Passed through: a provider's fields beyond OpenAI's come back as they are.
	for _, name := range []string{"ChatCompletion", "ChatCompletionChunk", "CompletionChoice", "CompletionMessage", "CompletionUsage"} {
		if sc := reg.Map()[name]; sc != nil {
			sc.AdditionalProperties = true
		}
	}
	return map[string]*huma.MediaType{"application/json": {Schema: js}, "text/event-stream": sse}
}
