// Package events holds the tooling module's audit events, recorded in t-{tenant}.tool-audit. Params are
// recorded only as their SHA-256, never in the clear.
package events

// Event types.
const (
	TypeToolInvoked   = "tooling.ToolInvoked"
	TypeToolSucceeded = "tooling.ToolSucceeded"
	TypeToolFailed    = "tooling.ToolFailed"
)

// Register adds these events to an event codec (platform/bus/codec: pass its Add), so the bus
// decodes them once and typed handlers receive them.
func Register(add func(typeName string, sample any)) {
	add(TypeToolInvoked, ToolInvoked{})
	add(TypeToolSucceeded, ToolSucceeded{})
	add(TypeToolFailed, ToolFailed{})
}

// AuditCategory is the stream category of a tenant's tool audit: t-{tenant}.tool-audit.
const AuditCategory = "tool-audit"

// ToolInvoked is recorded before a tool runs (or is refused).
type ToolInvoked struct {
	InvocationID string `json:"invocationId"`
	Tenant       string `json:"tenant"`
	Tool         string `json:"tool"`
	Version      string `json:"version"`
	RequestID    string `json:"requestId"`
	UserID       string `json:"userId,omitempty"`
	// ParamsHMAC is hex HMAC-SHA256 of the params as received, keyed with the tenant's secret
	// (keystore id "tenant/hmac"): only that secret confirms which params were passed.
	ParamsHMAC string `json:"paramsHmac,omitempty"`
	// ParamsSHA256 is the unkeyed hash that events recorded before ParamsHMAC carry; no longer
	// written, as it let a reader of the audit confirm guessed params.
	ParamsSHA256 string `json:"paramsSha256,omitempty"`
}

// ToolSucceeded is recorded when a call returned output that matched the tool's output schema.
type ToolSucceeded struct {
	InvocationID string  `json:"invocationId"`
	Tenant       string  `json:"tenant"`
	Tool         string  `json:"tool"`
	Version      string  `json:"version"`
	RequestID    string  `json:"requestId"`
	UserID       string  `json:"userId,omitempty"`
	ParamsHMAC   string  `json:"paramsHmac,omitempty"`   // as ToolInvoked.ParamsHMAC
	ParamsSHA256 string  `json:"paramsSha256,omitempty"` // as ToolInvoked.ParamsSHA256: older events only
	Success      bool    `json:"success"`                // always true
	DurationMs   float64 `json:"durationMs"`
}

// ToolFailed is recorded when a call was refused or failed. ErrorCode is the public code
// (VALIDATION_FAILED, PERMISSION_DENIED, EXECUTION_TIMEOUT, EXECUTION_ERROR).
type ToolFailed struct {
	InvocationID string  `json:"invocationId"`
	Tenant       string  `json:"tenant"`
	Tool         string  `json:"tool"`
	Version      string  `json:"version"`
	RequestID    string  `json:"requestId"`
	UserID       string  `json:"userId,omitempty"`
	ParamsHMAC   string  `json:"paramsHmac,omitempty"`   // as ToolInvoked.ParamsHMAC
	ParamsSHA256 string  `json:"paramsSha256,omitempty"` // as ToolInvoked.ParamsSHA256: older events only
	Success      bool    `json:"success"`                // always false
	DurationMs   float64 `json:"durationMs"`
	ErrorCode    string  `json:"errorCode"`
}

// CallersFault reports whether the call was refused for the caller's own fault rather than failed
// by the tool: params that fail the input schema, a tool the tenant may not run, an unknown tool,
// the tenant's budget or rate limit, a client that went away. Such a call counts as a call, never
// as a failure of the tool (statistics, SLIs). A tool's own failure, timeout or bad output
// (EXECUTION_ERROR, EXECUTION_TIMEOUT) is not.
func (e ToolFailed) CallersFault() bool {
	switch e.ErrorCode {
	case "VALIDATION_FAILED", "PERMISSION_DENIED", "TOOL_NOT_FOUND", "budget_exceeded", "rate_limited", "CANCELLED":
		return true
	}
	return false
}
