// Package httpapi mounts the conversation endpoints of SPEC §2 on the Huma API: chat (SSE or JSON),
// resume, history, deletion, the session list, the OpenAI-compatible chat completions and speech.
package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/crispy-enigma/crispy/modules/conversation/internal/app"
	"github.com/crispy-enigma/crispy/platform/ai"
	"github.com/crispy-enigma/crispy/platform/apperr"
	platformhttp "github.com/crispy-enigma/crispy/platform/httpapi"
	"github.com/crispy-enigma/crispy/platform/request"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

const tag = "chat"

// ChatInput is POST /chat.
type ChatInput struct {
	Body struct {
		SessionID  string          `json:"sessionId" format:"uuid" pattern:"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$" patternDescription:"a lowercase hyphenated UUID" doc:"The session (a UUID chosen by the client, lowercase and hyphenated: other spellings are refused; a new id starts a session)" example:"0b0f6a52-6f7e-4c55-9a8e-3f3d2f1c9b10"`
		Message    string          `json:"message" minLength:"1" maxLength:"10000" doc:"The user's message" example:"What does our refund policy say?"`
		Stream     *bool           `json:"stream,omitempty" doc:"Stream the answer as server-sent events (default true); false answers JSON"`
		ModelID    string          `json:"modelId,omitempty" maxLength:"240" doc:"provider:model; otherwise the server or tenant default" example:"openai:gpt-4o-mini"`
		UserID     string          `json:"userId,omitempty" maxLength:"256" doc:"End user (default: x-user-id)"`
		ToolName   string          `json:"tool_name,omitempty" maxLength:"64" doc:"Run this tool first and give its result to the model" example:"summarize"`
		ToolParams json.RawMessage `json:"tool_params,omitempty" doc:"The tool's params"`
		RAG        *bool           `json:"rag,omitempty" doc:"Retrieve passages from the tenant's documents (default: the tenant's features.rag)"`
	}
}

// Resolve adds the per-field text rules the schema cannot say: a message of only spaces is blank, and
// the ids are one line. (The floor has already refused invalid UTF-8 and control characters.)
func (in *ChatInput) Resolve(huma.Context) []error {
	b := &in.Body
	return platformhttp.FieldErrors(platformhttp.Prose("body.message", b.Message), platformhttp.Line("body.modelId", b.ModelID),
		platformhttp.Line("body.userId", b.UserID), platformhttp.Line("body.tool_name", b.ToolName))
}

// ChatResponse is the JSON answer of POST /chat with "stream": false.
type ChatResponse struct {
	SessionID string             `json:"sessionId"`
	Response  string             `json:"response"`
	Model     string             `json:"model" doc:"The model that answered (after fallbacks)"`
	Usage     app.UsageData      `json:"usage"`
	Citations []app.CitationData `json:"citations"`
	RequestID string             `json:"requestId"`
}

// SessionPath addresses a session.
type SessionPath struct {
	SessionID string `path:"sessionId" pattern:"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$" patternDescription:"a lowercase hyphenated UUID" doc:"The session id (a UUID, lowercase and hyphenated)"`
}

// ResumeInput is GET /chat/{sessionId}/stream.
type ResumeInput struct {
	SessionPath
	LastEventID string `header:"Last-Event-ID" doc:"The id of the last event received; the stream resumes after it"`
}

// HistoryMessage is one message of a history.
type HistoryMessage struct {
	Role      string    `json:"role" enum:"user,assistant"`
	Content   string    `json:"content"`
	Timestamp time.Time `json:"timestamp"`
}

// HistoryOutput is GET /chat/{sessionId}/history.
type HistoryOutput struct {
	Body struct {
		SessionID string           `json:"sessionId"`
		Messages  []HistoryMessage `json:"messages" doc:"Oldest first"`
		RequestID string           `json:"requestId"`
	}
}

// DeleteOutput is DELETE /chat/{sessionId}.
type DeleteOutput struct {
	Body struct {
		Status    string `json:"status" example:"deleted"`
		SessionID string `json:"sessionId"`
		RequestID string `json:"requestId"`
	}
}

// ListInput is GET /sessions.
type ListInput struct {
	Limit  int    `query:"limit" minimum:"1" maximum:"100" default:"20" doc:"Page size"`
	Cursor string `query:"cursor" maxLength:"512" doc:"nextCursor of the previous page"`
}

// SessionInfo is one session of the list.
type SessionInfo struct {
	SessionID    string    `json:"sessionId"`
	Title        string    `json:"title"`
	MessageCount int       `json:"messageCount"`
	UpdatedAt    time.Time `json:"updatedAt"`
}

// ListOutput is GET /sessions.
type ListOutput struct {
	Body struct {
		Sessions   []SessionInfo `json:"sessions" doc:"Newest first"`
		NextCursor string        `json:"nextCursor" doc:"Empty on the last page"`
		RequestID  string        `json:"requestId"`
	}
}

// TTSInput is POST /tts.
type TTSInput struct {
	Body struct {
		Text   string  `json:"text" minLength:"1" maxLength:"5000" doc:"Text to speak"`
		Voice  string  `json:"voice,omitempty" maxLength:"64" doc:"Voice (provider-specific)" example:"alloy"`
		Format string  `json:"format,omitempty" enum:"mp3,wav,opus" default:"mp3" doc:"Audio format"`
		Speed  float64 `json:"speed,omitempty" minimum:"0.25" maximum:"4" default:"1" doc:"Speaking speed"`
	}
}

// Resolve refuses blank text to speak and a voice that is not one line.
func (in *TTSInput) Resolve(huma.Context) []error {
	return platformhttp.FieldErrors(platformhttp.Prose("body.text", in.Body.Text), platformhttp.Line("body.voice", in.Body.Voice))
}

// problem documents an error answer in the API's one problem shape.
func problem(desc string) *huma.Response { return platformhttp.ProblemResponse(desc) }

func userOf(ctx context.Context, explicit string) string {
	if explicit != "" {
		return explicit
	}
	return request.From(ctx).User
}

// Register mounts the endpoints.
func Register(api huma.API, svc *app.Service) {
	chatEvents := chatEventStream(api)
	sseContent := map[string]*huma.MediaType{
		"text/event-stream": chatEvents,
		"application/json":  {Schema: api.OpenAPI().Components.Schemas.Schema(reflectType[ChatResponse](), true, "ChatResponse")},
	}
	huma.Register(api, huma.Operation{OperationID: "send-chat-message", Method: http.MethodPost, Path: "/chat", Tags: []string{tag},
		Summary: "Send a chat message",
		Description: "Records the message in the session and answers it: server-sent events by default, JSON with \"stream\": false. " +
			"Model precedence: modelId, the server override, the tenant's models.chat, the server default; fallbacks are the tenant's models.fallbacks. " +
			"All models down: 502 (the message stays in the history). Over the token budget: 429 budget_exceeded. " +
			"Turns of one session are serialised: while a turn of the session runs, another is refused with 409 turn_in_progress " +
			"(nothing is recorded for it; send it again once the first has ended with done or error). " +
			"A model answer that ends before the model says it is complete (no end-of-stream marker, the connection cut) is never kept as an answer: " +
			"before the first token the next model is tried, after it the stream ends with an error event upstream_truncated. " +
			"When the server shuts down mid-turn the stream ends with an error event shutting_down; every turn's outcome is recorded.",
		Responses: map[string]*huma.Response{
			"200": {Description: "The answer, streamed or JSON", Content: sseContent},
			"400": problem("Invalid model id"),
			"403": problem("Model not allowed for this tenant (model_not_allowed), a tool refused, the API key without the chat scope (scope_required), or a model without a price for an API key with a USD budget (model_unpriced)"),
			"409": problem("Another turn of this session is in progress (turn_in_progress)"),
			"422": problem("Invalid body: a session id that is not a lowercase hyphenated UUID, a blank message, …"),
			"502": problem("No model could answer (all_models_failed), or its answer ended before it was complete (upstream_truncated)"),
			"503": problem("The server is shutting down (shutting_down, with retry-after)"),
		}},
		func(ctx context.Context, in *ChatInput) (*huma.StreamResponse, error) {
			t, _ := tenant.FromContext(ctx)
			b := in.Body
			turn, err := svc.Start(ctx, app.TurnInput{Tenant: t, SessionID: b.SessionID, Message: b.Message, ModelID: b.ModelID, UserID: userOf(ctx, b.UserID),
				ToolName: b.ToolName, ToolParams: b.ToolParams, RAG: b.RAG, Source: "chat", Received: time.Now()})
			if err != nil {
				return nil, err
			}
			// Start returns the turn with this request attached as its reader; Detach follows.
			if b.Stream != nil && !*b.Stream {
				defer turn.Detach()
				o, err := turn.Wait(ctx)
				if err != nil {
					return nil, apperr.Wrap(err, apperr.KindTimeout, "client_gone", "the request ended before the answer")
				}
				if o.Err != nil {
					return nil, o.Err
				}
				cites := o.Citations
				if cites == nil {
					cites = []app.CitationData{}
				}
				resp := ChatResponse{SessionID: b.SessionID, Response: o.Content, Model: o.Model, Usage: o.Usage, Citations: cites, RequestID: request.From(ctx).ID}
				return jsonStream(resp), nil
			}
			// Hold the status line until the first token: a turn no model could start is a 502
			// problem, not a 200 stream with an error in it.
			if err := turn.WaitStarted(ctx); err != nil {
				turn.Detach()
				return nil, apperr.Wrap(err, apperr.KindTimeout, "client_gone", "the request ended before the answer")
			}
			if o, done := turn.Outcome(); done && o.Err != nil && !hasTokens(turn) {
				turn.Detach()
				return nil, o.Err
			}
			return sseStream(turn, 0), nil
		})

	huma.Register(api, huma.Operation{OperationID: "resume-chat-stream", Method: http.MethodGet, Path: "/chat/{sessionId}/stream", Tags: []string{tag},
		Summary: "Resume a chat stream",
		Description: "Sends the events of the session's latest turn after Last-Event-ID (all of them without it), without a second model call. " +
			"Available while the turn runs and for a short window after (the resume window, 15 s, within the server's memory budget for finished turns: " +
			"past it the oldest finished turns are dropped first); otherwise 404 turn_not_found: read the history instead.",
		Responses: map[string]*huma.Response{"200": {Description: "The rest of the turn", Content: map[string]*huma.MediaType{"text/event-stream": chatEvents}},
			"404": problem("No such session for this tenant (session_not_found), or no turn of it is kept for resumption any more (turn_not_found)")}},
		func(ctx context.Context, in *ResumeInput) (*huma.StreamResponse, error) {
			t, _ := tenant.FromContext(ctx)
			// The hub is keyed by tenant: another tenant's turn is never found here.
			turn, ok := svc.Hub.Get(t, in.SessionID)
			if ok && !turn.VisibleTo(app.ViewerOf(ctx)) {
				ok = false // another user's session: History answers 404 as for any
			}
			if !ok {
				if _, err := svc.History(ctx, t, in.SessionID); err != nil {
					return nil, err
				}
				return nil, apperr.NotFound("turn_not_found", "no turn of this session can be resumed: it ended and is no longer kept (the resume window passed, "+
					"or the server dropped it to stay within its memory budget); read the history instead")
			}
			after := 0
			if in.LastEventID != "" {
				n, err := strconv.Atoi(strings.TrimSpace(in.LastEventID))
				if err != nil || n < 0 {
					return nil, apperr.Invalid("invalid_last_event_id", "header.Last-Event-ID", "Last-Event-ID must be an event id of this stream")
				}
				after = n
			}
			turn.Attach()
			return sseStream(turn, after), nil
		})

	huma.Register(api, huma.Operation{OperationID: "get-chat-history", Method: http.MethodGet, Path: "/chat/{sessionId}/history", Tags: []string{tag},
		Summary: "Get a session's history", Description: "The session's messages, oldest first. 404 if the session does not exist for this tenant."},
		func(ctx context.Context, in *SessionPath) (*HistoryOutput, error) {
			t, _ := tenant.FromContext(ctx)
			sess, err := svc.History(ctx, t, in.SessionID)
			if err != nil {
				return nil, err
			}
			out := &HistoryOutput{}
			out.Body.SessionID = in.SessionID
			out.Body.Messages = make([]HistoryMessage, 0, len(sess.Messages))
			for _, m := range sess.Messages {
				out.Body.Messages = append(out.Body.Messages, HistoryMessage{Role: m.Role, Content: m.Content, Timestamp: m.Timestamp})
			}
			out.Body.RequestID = request.From(ctx).ID
			return out, nil
		})

	huma.Register(api, huma.Operation{OperationID: "delete-chat-session", Method: http.MethodDelete, Path: "/chat/{sessionId}", Tags: []string{tag},
		Summary: "Delete a session", Description: "Records SessionDeleted and makes the session's content unreadable. 404 if absent."},
		func(ctx context.Context, in *SessionPath) (*DeleteOutput, error) {
			t, _ := tenant.FromContext(ctx)
			if err := svc.Delete(ctx, t, in.SessionID); err != nil {
				return nil, err
			}
			out := &DeleteOutput{}
			out.Body.Status, out.Body.SessionID, out.Body.RequestID = "deleted", in.SessionID, request.From(ctx).ID
			return out, nil
		})

	huma.Register(api, huma.Operation{OperationID: "list-sessions", Method: http.MethodGet, Path: "/sessions", Tags: []string{tag},
		Summary: "List sessions", Description: "The tenant's sessions the caller may see (those started with its user id, x-user-id or the key's user, and those started without one), most recently active first, paginated with nextCursor."},
		func(ctx context.Context, in *ListInput) (*ListOutput, error) {
			t, _ := tenant.FromContext(ctx)
			rows, next, err := svc.List(ctx, t, in.Limit, in.Cursor)
			if err != nil {
				return nil, err
			}
			out := &ListOutput{}
			out.Body.Sessions = make([]SessionInfo, 0, len(rows))
			for _, r := range rows {
				out.Body.Sessions = append(out.Body.Sessions, SessionInfo{SessionID: r.SessionID, Title: r.Title, MessageCount: r.MessageCount, UpdatedAt: r.UpdatedAt})
			}
			out.Body.NextCursor, out.Body.RequestID = next, request.From(ctx).ID
			return out, nil
		})

	huma.Register(api, huma.Operation{OperationID: "create-speech", Method: http.MethodPost, Path: "/tts", Tags: []string{tag},
		Summary: "Text to speech",
		Description: "Speech through the configured provider, streamed back as audio. 403 tts_not_enabled unless the tenant's features.tts; " +
			"503 tts_unavailable when no speech provider is configured.",
		Responses: map[string]*huma.Response{
			"200": {Description: "Audio", Content: map[string]*huma.MediaType{"audio/mpeg": {}, "audio/wav": {}, "audio/ogg": {}}},
			"403": problem("Speech is not enabled for the tenant (tts_not_enabled), or the API key lacks the chat scope (scope_required)"), "503": problem("tts_unavailable"),
		}},
		func(ctx context.Context, in *TTSInput) (*huma.StreamResponse, error) {
			t, _ := tenant.FromContext(ctx)
			a, err := svc.Speak(ctx, t, ai.SpeechRequest{Text: in.Body.Text, Voice: in.Body.Voice, Format: in.Body.Format, Speed: in.Body.Speed})
			if err != nil {
				return nil, err
			}
			return &huma.StreamResponse{Body: func(hctx huma.Context) {
				defer a.Body.Close()
				hctx.SetHeader("Content-Type", a.ContentType)
				hctx.SetStatus(http.StatusOK)
				_, _ = io.Copy(hctx.BodyWriter(), a.Body)
			}}, nil
		})

	registerOpenAI(api, svc)
}

// chatEventStream describes the events of a chat turn (POST /chat, GET /chat/{sessionId}/stream).
func chatEventStream(api huma.API) *huma.MediaType {
	return platformhttp.EventStream(api, "ChatEvent",
		"One event of a chat turn. Every event has an id; done or error ends the stream. Error codes: stream_failed, "+
			"upstream_truncated (the model's answer ended before it was complete), timeout, shutting_down, …",
		[]platformhttp.StreamEvent{
			{Name: "token", Data: app.TokenData{}, Description: "The next piece of the answer."},
			{Name: "tool", Data: app.ToolData{}, Description: "The result of the tool the request named, before the answer."},
			{Name: "citation", Data: app.CitationData{}, Description: "A passage of the tenant's documents given to the model, before the answer."},
			{Name: "done", Data: app.DoneData{}, Description: "The answer is complete: its usage and the model that answered."},
			{Name: "error", Data: app.ErrorData{}, Description: "The turn failed after it started; nothing follows."},
		},
		[]platformhttp.SSEExample{
			{ID: 1, Event: "token", Data: app.TokenData{Token: "Refunds are"}},
			{ID: 2, Event: "token", Data: app.TokenData{Token: " accepted within 30 days."}},
			{ID: 3, Event: "done", Data: app.DoneData{Usage: app.UsageData{PromptTokens: 42, CompletionTokens: 7, TotalTokens: 49},
				Model: "openai:gpt-4o-mini", RequestID: "0193b2c4-5d6e-7f80-9a1b-2c3d4e5f6a7b"}},
		})
}

func hasTokens(t *app.Turn) bool {
	evs, _, _ := t.Next(context.Background(), 0)
	for _, e := range evs {
		if e.Name == "token" {
			return true
		}
	}
	return false
}

func jsonStream(v any) *huma.StreamResponse {
	return &huma.StreamResponse{Body: func(hctx huma.Context) {
		hctx.SetHeader("Content-Type", "application/json")
		hctx.SetStatus(http.StatusOK)
		_ = json.NewEncoder(hctx.BodyWriter()).Encode(v)
	}}
}

func flush(w io.Writer) {
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
		return
	}
	if rw, ok := w.(http.ResponseWriter); ok {
		_ = http.NewResponseController(rw).Flush()
	}
}

// sseStream writes the turn's events after seq `after` until done or error, then detaches.
func sseStream(turn *app.Turn, after int) *huma.StreamResponse {
	return &huma.StreamResponse{Body: func(hctx huma.Context) {
		defer turn.Detach()
		ctx := hctx.Context()
		hctx.SetHeader("Content-Type", "text/event-stream")
		hctx.SetHeader("Cache-Control", "no-cache")
		hctx.SetHeader("X-Accel-Buffering", "no")
		hctx.SetStatus(http.StatusOK)
		w := hctx.BodyWriter()
		buf := make([]byte, 0, 512)
		for {
			evs, done, err := turn.Next(ctx, after)
			if err != nil {
				return // the client went away; the turn waits for a resume
			}
			buf = buf[:0]
			for _, e := range evs {
				data, _ := json.Marshal(e.Data)
				buf = append(buf, "id: "...)
				buf = strconv.AppendInt(buf, int64(e.Seq), 10)
				buf = append(buf, "\nevent: "...)
				buf = append(buf, e.Name...)
				buf = append(buf, "\ndata: "...)
				buf = append(buf, data...)
				buf = append(buf, "\n\n"...)
				after = e.Seq
			}
			if len(buf) > 0 {
				if _, err := w.Write(buf); err != nil {
					return
				}
				// Flush only when nothing more is waiting: a burst of tokens goes out in one
				// write, and a lone token is never held back.
				if done || !turn.Pending(after) {
					flush(w)
				}
			}
			if done {
				return
			}
		}
	}}
}

// ErrFmt formats a model error for the OpenAI-compatible stream.
func errFmt(code, msg string) string {
	return fmt.Sprintf(`{"error":{"message":%q,"type":%q,"code":%q}}`, msg, "server_error", code)
}
