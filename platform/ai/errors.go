package ai

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"

	"github.com/sony/gobreaker/v2"
)

// Error is a provider failure. Retryable failures (5xx, 429, timeouts, refused connections, an open
// breaker) make the Router try the next model when no token has been emitted yet.
type Error struct {
	Model     string // "provider:model"
	Status    int    // HTTP status, 0 when none
	Retryable bool
	Reason    string // "breaker_open", "timeout", "unavailable", "rate_limited", "bad_request", "error"
	Message   string
	Cause     error
	// RetryAfter is the upstream's retry-after (0: none said).
	RetryAfter time.Duration
	// Param names the request field a refusal is about (an unsupported field), if any.
	Param string
}

func (e *Error) Error() string {
	s := fmt.Sprintf("model %s: %s", e.Model, e.Reason)
	if e.Status != 0 {
		s += fmt.Sprintf(" (HTTP %d)", e.Status)
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.Cause != nil {
		s += ": " + e.Cause.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Cause }

// HTTPError classifies an HTTP answer of a provider: 408, 429 and 5xx are retryable.
func HTTPError(model string, status int, body string) *Error {
	e := &Error{Model: model, Status: status, Message: truncate(body, 300)}
	switch {
	case status == 429:
		e.Reason, e.Retryable = "rate_limited", true
	case status == 408 || status == 504:
		e.Reason, e.Retryable = "timeout", true
	case status >= 500:
		e.Reason, e.Retryable = "unavailable", true
	case status == 400 || status == 404 || status == 422:
		e.Reason = "bad_request"
	default:
		e.Reason = "error"
	}
	return e
}

// Classify wraps a transport or context error as an *Error with its retryability. ctx is the call's
// context: when it was cancelled by the caller (not a deadline), the error is not retryable.
func Classify(ctx context.Context, model string, err error) error {
	if err == nil {
		return nil
	}
	var ae *Error
	if errors.As(err, &ae) {
		return err
	}
	e := &Error{Model: model, Cause: err, Reason: "error"}
	var ne net.Error
	switch {
	case ctx.Err() == context.Canceled || errors.Is(err, context.Canceled):
		e.Reason = "cancelled"
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
		e.Reason, e.Retryable = "timeout", true
	case errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests):
		e.Reason, e.Retryable = "breaker_open", true
	case errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET):
		e.Reason, e.Retryable = "unavailable", true
	default:
		var op *net.OpError
		if errors.As(err, &op) {
			e.Reason, e.Retryable = "unavailable", true
		}
	}
	return e
}

// IsRetryable reports whether err may be retried on another model.
func IsRetryable(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		return e.Retryable
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, gobreaker.ErrOpenState) ||
		errors.Is(err, gobreaker.ErrTooManyRequests) || errors.Is(err, syscall.ECONNREFUSED)
}

// ReasonOf returns the failure reason of err ("error" when unclassified).
func ReasonOf(err error) string {
	var e *Error
	if errors.As(err, &e) && e.Reason != "" {
		return e.Reason
	}
	return "error"
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// ReasonTruncated is the reason of an answer that ended before the upstream said it was complete: a
// stream without its terminator ("data: [DONE]", or an OpenAI finish_reason), a body that ended or
// was reset mid-answer. What arrived is not a complete answer. It is retryable: before the first
// token the Router tries the next model, as for a 5xx (the upstream broke, not the request); after
// it, the call fails with what was emitted so far discarded by the caller.
const ReasonTruncated = "upstream_truncated"

// Truncated is the upstream_truncated error of model; cause is the read error, if any.
func Truncated(model, msg string, cause error) *Error {
	return &Error{Model: model, Reason: ReasonTruncated, Retryable: true, Message: msg, Cause: cause}
}

// BodyEnded classifies an error met while reading or decoding an answer's body once the upstream
// had answered 2xx: while ctx is live, a body that ends or breaks early (EOF, unexpected EOF, a
// reset) is a truncated answer; a body that is not the JSON expected, or a cancelled or expired
// ctx, is classified as usual.
func BodyEnded(ctx context.Context, model string, err error) error {
	var ae *Error
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	if ctx.Err() != nil || errors.As(err, &ae) || errors.As(err, &syn) || errors.As(err, &typ) {
		return Classify(ctx, model, err)
	}
	return Truncated(model, "the answer ended before it was complete", err)
}
