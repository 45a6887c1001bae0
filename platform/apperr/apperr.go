// Package apperr is the one error vocabulary of the platform. An Error has a kind (what went wrong, in
// terms a client can act on), a stable public code, a public message, and an optional cause that is
// logged but never shown to the client. Only platform/httpapi maps kinds to HTTP statuses.
package apperr

import (
	"errors"
	"fmt"
)

// Kind classifies an error for the client.
type Kind int

const (
	KindInternal Kind = iota
	KindInvalid
	KindNotFound
	KindConflict
	KindForbidden
	KindUnauthorized
	KindRateLimited
	KindUnavailable
	KindTimeout
	KindTooLarge
	KindBadGateway
)

func (k Kind) String() string {
	switch k {
	case KindInvalid:
		return "invalid"
	case KindNotFound:
		return "not_found"
	case KindConflict:
		return "conflict"
	case KindForbidden:
		return "forbidden"
	case KindUnauthorized:
		return "unauthorized"
	case KindRateLimited:
		return "rate_limited"
	case KindUnavailable:
		return "unavailable"
	case KindTimeout:
		return "timeout"
	case KindTooLarge:
		return "too_large"
	case KindBadGateway:
		return "bad_gateway"
	default:
		return "internal"
	}
}

// FieldError names one invalid input location (a JSON pointer-ish path such as "body.topK").
type FieldError struct {
	Location string `json:"location"`
	Message  string `json:"message"`
	Value    any    `json:"value,omitempty"`
}

// Error is a classified error.
type Error struct {
	Kind    Kind
	Code    string // stable public code, e.g. "tenant_not_found", "TOOL_NOT_FOUND"
	Message string // public message, safe to show the client
	Fields  []FieldError
	// RetryAfterSec is set on rate-limit and budget refusals.
	RetryAfterSec int
	Cause         error // logged, never sent
}

func (e *Error) Error() string {
	if e.Cause != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Cause)
	}
	return e.Code + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Cause }

// New builds an error of kind with a public code and message.
func New(kind Kind, code, message string) *Error {
	return &Error{Kind: kind, Code: code, Message: message}
}

// Wrap builds an error of kind that keeps cause for the log.
func Wrap(cause error, kind Kind, code, message string) *Error {
	return &Error{Kind: kind, Code: code, Message: message, Cause: cause}
}

// WithFields returns a copy of e with field errors attached.
func (e *Error) WithFields(f ...FieldError) *Error {
	c := *e
	c.Fields = append(append([]FieldError(nil), e.Fields...), f...)
	return &c
}

// Invalid is a shorthand for a validation failure on one field.
func Invalid(code, location, message string) *Error {
	return &Error{Kind: KindInvalid, Code: code, Message: message, Fields: []FieldError{{Location: location, Message: message}}}
}

// NotFound is a shorthand for a missing resource. Use it also for another tenant's resource: never
// confirm that it exists.
func NotFound(code, message string) *Error { return New(KindNotFound, code, message) }

// As returns the *Error in err's chain, if any.
func As(err error) (*Error, bool) {
	var e *Error
	if errors.As(err, &e) {
		return e, true
	}
	return nil, false
}

// KindOf returns the kind of err, KindInternal for unclassified errors.
func KindOf(err error) Kind {
	if e, ok := As(err); ok {
		return e.Kind
	}
	return KindInternal
}

// CodeOf returns the public code of err, "" for unclassified errors.
func CodeOf(err error) string {
	if e, ok := As(err); ok {
		return e.Code
	}
	return ""
}

// CatchingUp is the refusal of a request that needs derived state (an index, a read model) while it
// is being rebuilt: 503 with code catching_up and retry-after, never a partial answer.
func CatchingUp(what string, retryAfterSec int) *Error {
	if retryAfterSec < 1 {
		retryAfterSec = 1
	}
	return &Error{Kind: KindUnavailable, Code: "catching_up", RetryAfterSec: retryAfterSec,
		Message: what + " is catching up after a start; retry shortly"}
}
