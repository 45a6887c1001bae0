// Package events holds the conversation module's events, recorded in t-{tenant}.session-{sessionId}.
// A session's history is the fold of these events. It is the only conversation package other modules
// may import (the observability module builds usage and cost projections on AssistantMessageCompleted,
// AssistantMessageFailed and CompletionRecorded). Fields are only ever added, never renamed or reused.
//
// Two more kinds of stream: t-{tenant}.completions-{yyyymmdd} holds one CompletionRecorded per
// stateless /v1/chat/completions call (usage only, no content), and t-{tenant}.snapshot-session-{id}
// holds a long session's snapshot segments (SessionSnapshotted), which carry message content and are
// made unreadable with the session (SessionSnapshotsDropped).
package events

// Event types.
const (
	TypeSessionStarted            = "conversation.SessionStarted"
	TypeUserMessageAdded          = "conversation.UserMessageAdded"
	TypeAssistantMessageCompleted = "conversation.AssistantMessageCompleted"
	TypeAssistantMessageFailed    = "conversation.AssistantMessageFailed"
	TypeSessionDeleted            = "conversation.SessionDeleted"
	TypeSessionExpired            = "conversation.SessionExpired"
	TypeCompletionRecorded        = "conversation.CompletionRecorded"
	TypeSessionSnapshotted        = "conversation.SessionSnapshotted"
	TypeSessionSnapshotsDropped   = "conversation.SessionSnapshotsDropped"
	TypeRetentionSweepRequested   = "conversation.RetentionSweepRequested"
)

// Register declares the module's event types on the bus's codec (platform/bus/codec): a module
// that consumes these events calls events.Register(consumers.Codec().Add) before the bus runs.
func Register(add func(typeName string, sample any)) {
	add(TypeSessionStarted, SessionStarted{})
	add(TypeUserMessageAdded, UserMessageAdded{})
	add(TypeAssistantMessageCompleted, AssistantMessageCompleted{})
	add(TypeAssistantMessageFailed, AssistantMessageFailed{})
	add(TypeSessionDeleted, SessionDeleted{})
	add(TypeSessionExpired, SessionExpired{})
	add(TypeCompletionRecorded, CompletionRecorded{})
	add(TypeSessionSnapshotted, SessionSnapshotted{})
	add(TypeSessionSnapshotsDropped, SessionSnapshotsDropped{})
	add(TypeRetentionSweepRequested, RetentionSweepRequested{})
}

// SessionCategory is the stream category of a session: t-{tenant}.session-{sessionId}.
const SessionCategory = "session"

// CompletionsCategory is the stream category of a tenant's stateless completions of one UTC day:
// t-{tenant}.completions-{yyyymmdd}.
const CompletionsCategory = "completions"

// RetentionCategory is the stream category of a tenant's retention sweep requests, one stream per
// sweep slot: t-{tenant}.retention-{yyyymmddThhmmssZ}.
const RetentionCategory = "retention"

// SnapshotCategory is the stream category of snapshots; a session's are in
// t-{tenant}.snapshot-session-{sessionId} (entity SnapshotEntityPrefix + the session id).
const (
	SnapshotCategory     = "snapshot"
	SnapshotEntityPrefix = "session-"
)

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
	// Instance names the replica that took the turn (one per data folder, the same across its
	// restarts) and Run the process: a replica's start closes as interrupted the open turns of its
	// own earlier runs, and leaves another replica's recent turns alone (they may be streaming).
	Instance string `json:"instance,omitempty"`
	Run      string `json:"run,omitempty"`
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

// Metered is what the read models of usage, cost and budgets take of an answer
// (AssistantMessageCompleted, whose fields these are): a view of it (bus.ApplyView), decoded
// without the answer's content, which is most of a chat history's bytes and none of what they
// count.
type Metered struct {
	Model     string            `json:"model"`
	Usage     Usage             `json:"usage"`
	LatencyMs float64           `json:"latencyMs"`
	TTFTMs    float64           `json:"ttftMs"`
	Fallbacks []FallbackAttempt `json:"fallbacks,omitempty"`
	UserID    string            `json:"userId,omitempty"`
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

// CompletionRecorded records one stateless POST /v1/chat/completions call (no x-session-id), or one
// model call another module made (Purpose set: a query rewrite, a search answer, a tool's callback,
// embeddings), in t-{tenant}.completions-{yyyymmdd}: what
// usage, cost and the token budget count, and nothing of the prompt or the answer. CallID plays the
// part of a turn id (the budget ledger settles its reservation by it).
type CompletionRecorded struct {
	CallID    string `json:"callId"`
	RequestID string `json:"requestId,omitempty"`
	// Model is the "provider:model" that answered, or the one that was streaming when it failed, or
	// the first one tried when none started.
	Model          string            `json:"model"`
	RequestedModel string            `json:"requestedModel,omitempty"`
	Usage          Usage             `json:"usage"`
	LatencyMs      float64           `json:"latencyMs"`
	TTFTMs         float64           `json:"ttftMs,omitempty"`
	Outcome        string            `json:"outcome"` // "completed", or a failure code (the Code* constants)
	Cancelled      bool              `json:"cancelled,omitempty"`
	Fallbacks      []FallbackAttempt `json:"fallbacks,omitempty"`
	UserID         string            `json:"userId,omitempty"`
	Offline        bool              `json:"offline,omitempty"`
	// Purpose is set on a model call another module made through the metering port (platform/metering:
	// "search.rewrite", "search.answer", "tool.complete", "tool.embeddings", "embeddings.search",
	// "embeddings.ingest", "embeddings"); empty for a stateless /v1/chat/completions call. Such calls
	// count in usage, cost and the token budget, but not in the chat SLIs.
	Purpose string `json:"purpose,omitempty"`
	// Operation is "chat" or "embeddings" (empty: chat).
	Operation string `json:"operation,omitempty"`
}

// OutcomeCompleted is CompletionRecorded.Outcome of a call whose answer completed.
const OutcomeCompleted = "completed"

// SnapshotMessage is one message of a snapshot segment.
type SnapshotMessage struct {
	Role      string `json:"role"`
	Content   string `json:"content"`
	Timestamp int64  `json:"ts"` // Unix nanoseconds
	TurnID    string `json:"turnId,omitempty"`
	Model     string `json:"model,omitempty"`
}

// SnapshotOpenTurn is a turn with a user message and no outcome at the snapshot's revision.
type SnapshotOpenTurn struct {
	TurnID   string `json:"turnId"`
	Since    int64  `json:"since"` // Unix nanoseconds
	Instance string `json:"instance,omitempty"`
	Run      string `json:"run,omitempty"`
}

// SessionSnapshotted is one segment of a session's snapshot: the live session folded through
// revision Through of its stream. A segment holds the state (title, counts, open turns) whole, and of the
// messages only those after the previous segment: the fold's messages are the previous segments'
// first Keep messages followed by Messages (Keep is 0 after the session was started anew). So a long
// session is read back from a few segments and the events after the last one, and each message is
// stored once more, not once per snapshot.
type SessionSnapshotted struct {
	SessionID string `json:"sessionId"`
	// From is the first session revision this segment covers (the previous segment's Through + 1;
	// 0 for a first segment), Through the last.
	From    uint64 `json:"from"`
	Through uint64 `json:"through"`
	Keep    int    `json:"keep"`
	// Life is the revision of the SessionStarted that began the life these segments are of (the
	// session's data key id depends on it); 0 in segments written before sealing.
	Life uint64 `json:"life,omitempty"`
	// The state at Through (segments are written only of a live session).
	Title        string             `json:"title,omitempty"`
	UserID       string             `json:"userId,omitempty"`
	Turns        int                `json:"turns"`
	Failed       int                `json:"failed"`
	CreatedAt    int64              `json:"createdAt"`    // Unix nanoseconds
	LastActivity int64              `json:"lastActivity"` // Unix nanoseconds
	Open         []SnapshotOpenTurn `json:"open,omitempty"`
	Messages     []SnapshotMessage  `json:"messages"`
}

// SessionSnapshotsDropped records that the segments before it were made unreadable because the
// session was deleted or expired (Reason: the type of that event). A snapshot written concurrently
// from an older fold expects the stream's revision before this event, and is refused.
type SessionSnapshotsDropped struct {
	SessionID string `json:"sessionId"`
	Reason    string `json:"reason"`
}

// RetentionSweepRequested asks for a sweep of the tenant's sessions idle past their retention. A
// replica records it in t-{tenant}.retention-{slot} expecting no stream, so there is one per tenant
// and sweep slot however many replicas ask; the retention processor (once per deployment) sweeps.
type RetentionSweepRequested struct {
	Slot          string `json:"slot"` // RFC 3339, the start of the sweep interval
	RetentionDays int    `json:"retentionDays"`
	Instance      string `json:"instance,omitempty"` // the replica that asked
}
