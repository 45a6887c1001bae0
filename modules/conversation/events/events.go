// Package events holds the conversation module's events, recorded in t-{tenant}.session-{sessionId}.
// A session's history is the fold of these events. It is the only conversation package other modules
// may import (the observability module builds usage and cost projections on AssistantMessageCompleted
// and AssistantMessageFailed). Fields are only ever added, never renamed or reused.
package events

// Event types.
const (
	TypeSessionStarted            = "conversation.SessionStarted"
	TypeUserMessageAdded          = "conversation.UserMessageAdded"
	TypeAssistantMessageCompleted = "conversation.AssistantMessageCompleted"
	TypeAssistantMessageFailed    = "conversation.AssistantMessageFailed"
	TypeSessionDeleted            = "conversation.SessionDeleted"
	TypeSessionExpired            = "conversation.SessionExpired"
)

// SessionCategory is the stream category of a session: t-{tenant}.session-{sessionId}.
const SessionCategory = "session"

// Failure codes of AssistantMessageFailed.Code.
const (
	CodeCancelled       = "cancelled"         // the client disconnected and did not resume in time
	CodeAllModelsFailed = "all_models_failed" // every model in the fallback chain failed before its first token
	CodeStreamFailed    = "stream_failed"     // the answering model failed after its first token
	CodeToolFailed      = "tool_failed"       // the requested tool failed; no model was called
	CodeBudgetExceeded  = "budget_exceeded"   // reserved for refusals recorded after the user message
	CodeTimeout         = "timeout"           // the model did not finish within the turn's deadline
	CodeSessionGone     = "session_gone"      // the session was deleted or expired while the model answered
	// CodeUpstreamTruncated: the model's answer ended before the upstream said it was complete (no
	// "data: [DONE]"/finish_reason, the connection cut); the partial answer is not history.
	CodeUpstreamTruncated = "upstream_truncated"
	// CodeShuttingDown: the server shut down during the turn; the partial answer is discarded
	// (Cancelled is true).
	CodeShuttingDown = "shutting_down"
	// CodeInterrupted: the server stopped mid-turn without recording an outcome (a crash, kill -9);
	// the next start records this for it.
	CodeInterrupted = "interrupted"
)

// SessionStarted is the first event of a session stream.
type SessionStarted struct {
	SessionID string `json:"sessionId"`
	Tenant    string `json:"tenant"`
	UserID    string `json:"userId,omitempty"`
	// Title is derived from the first user message (at most 80 characters).
	Title string `json:"title"`
}

// UserMessageAdded records the user's message of a turn. TurnID ties it to the assistant's outcome.
type UserMessageAdded struct {
	SessionID string `json:"sessionId"`
	TurnID    string `json:"turnId"`
	Content   string `json:"content"`
	UserID    string `json:"userId,omitempty"`
	// RequestedModel is the request's modelId, if any; ChosenModel the model precedence picked.
	RequestedModel string `json:"requestedModel,omitempty"`
	ChosenModel    string `json:"chosenModel,omitempty"`
	ToolName       string `json:"toolName,omitempty"`
	RAG            bool   `json:"rag,omitempty"`
	Source         string `json:"source,omitempty"` // "chat" or "openai" (/v1/chat/completions)
}

// Usage is the token count of one model call. Estimated is true when the provider did not report
// usage and the numbers were estimated from the text (about 4 characters a token).
type Usage struct {
	PromptTokens     int  `json:"promptTokens"`
	CompletionTokens int  `json:"completionTokens"`
	TotalTokens      int  `json:"totalTokens"`
	CachedTokens     int  `json:"cachedTokens,omitempty"`
	ReasoningTokens  int  `json:"reasoningTokens,omitempty"`
	Estimated        bool `json:"estimated,omitempty"`
}

// Citation is a retrieved passage the answer was given with (numbered [n] in the prompt, n = Index).
type Citation struct {
	Index   int     `json:"index"`
	DocID   string  `json:"docId"`
	ChunkID string  `json:"chunkId"`
	Title   string  `json:"title,omitempty"`
	Source  string  `json:"source,omitempty"`
	URL     string  `json:"url,omitempty"`
	Score   float64 `json:"score"`
}

// FallbackAttempt is one model tried before the one that answered (or before all failed).
type FallbackAttempt struct {
	Model string `json:"model"`
	// Reason: "breaker_open", "timeout", "unavailable" (5xx, connection refused), "error".
	Reason  string `json:"reason"`
	Message string `json:"message,omitempty"`
}

// ToolCall is the tool run before the model call (tool_name/tool_params of the request).
type ToolCall struct {
	Name       string  `json:"name"`
	Succeeded  bool    `json:"succeeded"`
	DurationMs float64 `json:"durationMs"`
	ErrorCode  string  `json:"errorCode,omitempty"`
}

// AssistantMessageCompleted records a complete answer.
type AssistantMessageCompleted struct {
	SessionID string `json:"sessionId"`
	TurnID    string `json:"turnId"`
	Content   string `json:"content"`
	// Model is the "provider:model" that answered (after fallbacks).
	Model     string            `json:"model"`
	Usage     Usage             `json:"usage"`
	LatencyMs float64           `json:"latencyMs"` // request received → last token
	TTFTMs    float64           `json:"ttftMs"`    // request received → first token
	Citations []Citation        `json:"citations,omitempty"`
	Fallbacks []FallbackAttempt `json:"fallbacks,omitempty"` // models tried and skipped, in order
	Tool      *ToolCall         `json:"tool,omitempty"`
	UserID    string            `json:"userId,omitempty"`
	Source    string            `json:"source,omitempty"`  // "chat" or "openai"
	Offline   bool              `json:"offline,omitempty"` // answered by the built-in offline model
}

// AssistantMessageFailed records a turn that did not complete. The user's message stays in history.
// Code is one of the Code* constants; Cancelled is true for a client that disconnected and did not
// resume (Code "cancelled"). PartialContentLength is how many bytes of answer had streamed before the
// failure; the partial content itself is not history.
type AssistantMessageFailed struct {
	SessionID            string            `json:"sessionId"`
	TurnID               string            `json:"turnId"`
	Code                 string            `json:"code"`
	Message              string            `json:"message"`
	Cancelled            bool              `json:"cancelled,omitempty"`
	PartialContentLength int               `json:"partialContentLength"`
	Model                string            `json:"model,omitempty"` // the model that was streaming, if any
	Usage                Usage             `json:"usage"`           // tokens consumed anyway (estimated when unknown)
	LatencyMs            float64           `json:"latencyMs"`
	TTFTMs               float64           `json:"ttftMs,omitempty"`
	Fallbacks            []FallbackAttempt `json:"fallbacks,omitempty"`
	Tool                 *ToolCall         `json:"tool,omitempty"`
	UserID               string            `json:"userId,omitempty"`
	Source               string            `json:"source,omitempty"`
}

// SessionDeleted records a DELETE /chat/{sessionId}; the content before it is made unreadable.
type SessionDeleted struct {
	SessionID string `json:"sessionId"`
	RequestID string `json:"requestId,omitempty"`
}

// SessionExpired records that a session idled past the tenant's sessionRetentionDays; the content
// before it is made unreadable.
type SessionExpired struct {
	SessionID     string `json:"sessionId"`
	RetentionDays int    `json:"retentionDays"`
	LastActivity  string `json:"lastActivity"` // RFC 3339
}
