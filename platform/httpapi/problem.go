package httpapi

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync"

	"github.com/danielgtaylor/huma/v2"

	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/request"
)

// Problem is the one error shape of the API: RFC 9457 problem details plus the request id, a stable
// code, and the failing fields of a validation error.
type Problem struct {
	Type      string              `json:"type,omitempty" doc:"A URI reference for the problem type" example:"https://crispy-enigma.dev/problems/tenant_not_found"`
	Title     string              `json:"title" doc:"Short summary of the problem type" example:"Not Found"`
	Status    int                 `json:"status" doc:"HTTP status code" example:"404"`
	Detail    string              `json:"detail,omitempty" doc:"What went wrong, for a person" example:"tenant \"acme\" does not exist"`
	Instance  string              `json:"instance,omitempty" doc:"The request path"`
	Code      string              `json:"code" doc:"Stable machine-readable code" example:"tenant_not_found"`
	RequestID string              `json:"requestId" doc:"The request id, also in the x-request-id header" example:"01935f2e-7c1a-7d4e-9a53-1f0c2b3a4d5e"`
	Errors    []*huma.ErrorDetail `json:"errors,omitempty" doc:"The failing inputs of a validation error: at most 20, each with its location, the rule it broke and a short excerpt of the value"`
	// OmittedErrors counts the failing inputs beyond those listed in errors.
	OmittedErrors int `json:"omittedErrors,omitempty" doc:"How many more failing inputs there were than errors lists" example:"0"`

	retryAfter int
}

func (p *Problem) Error() string             { return p.Detail }
func (p *Problem) GetStatus() int            { return p.Status }
func (p *Problem) ContentType(string) string { return "application/problem+json" }

// GetHeaders lets huma write retry-after with a rate-limit or budget refusal.
func (p *Problem) GetHeaders() http.Header {
	if p.retryAfter <= 0 {
		return nil
	}
	return http.Header{"Retry-After": {strconv.Itoa(p.retryAfter)}}
}

// Status maps an error kind to its HTTP status. It is the only place that does.
func Status(k apperr.Kind) int {
	switch k {
	case apperr.KindInvalid:
		return http.StatusBadRequest
	case apperr.KindNotFound:
		return http.StatusNotFound
	case apperr.KindConflict:
		return http.StatusConflict
	case apperr.KindForbidden:
		return http.StatusForbidden
	case apperr.KindUnauthorized:
		return http.StatusUnauthorized
	case apperr.KindRateLimited:
		return http.StatusTooManyRequests
	case apperr.KindUnavailable:
		return http.StatusServiceUnavailable
	case apperr.KindTimeout:
		return http.StatusGatewayTimeout
	case apperr.KindTooLarge:
		return http.StatusRequestEntityTooLarge
	case apperr.KindBadGateway:
		return http.StatusBadGateway
	default:
		return http.StatusInternalServerError
	}
}

// defaultCode names huma's own errors (validation, body too large, …) by status.
func defaultCode(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "bad_request"
	case http.StatusUnauthorized:
		return "unauthorized"
	case http.StatusForbidden:
		return "forbidden"
	case http.StatusNotFound:
		return "not_found"
	case http.StatusMethodNotAllowed:
		return "method_not_allowed"
	case http.StatusNotAcceptable:
		return "not_acceptable"
	case http.StatusRequestTimeout:
		return "body_timeout"
	case http.StatusRequestEntityTooLarge:
		return "body_too_large"
	case http.StatusUnsupportedMediaType:
		return "unsupported_media_type"
	case http.StatusUnprocessableEntity:
		return "validation_failed"
	case http.StatusTooManyRequests:
		return "rate_limited"
	case http.StatusServiceUnavailable:
		return "unavailable"
	case http.StatusGatewayTimeout:
		return "timeout"
	default:
		if status >= 500 {
			return "internal_error"
		}
		return "error"
	}
}

// ProblemFor builds the problem for err as seen by the request in ctx. Unclassified errors become an
// opaque 500: their text goes to the log, never to the client.
func ProblemFor(ctx context.Context, err error) *Problem {
	var p *Problem
	if errors.As(err, &p) {
		c := *p
		if c.RequestID == "" {
			c.RequestID = request.From(ctx).ID
		}
		return &c
	}
	rid := request.From(ctx).ID
	if e, ok := apperr.As(err); ok {
		st := Status(e.Kind)
		out := &Problem{Title: http.StatusText(st), Status: st, Detail: e.Message, Code: e.Code, RequestID: rid, retryAfter: e.RetryAfterSec}
		for _, f := range e.Fields {
			out.addError(&huma.ErrorDetail{Location: f.Location, Message: f.Message, Value: f.Value})
		}
		return out
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return &Problem{Title: http.StatusText(http.StatusGatewayTimeout), Status: http.StatusGatewayTimeout, Detail: "the request took too long", Code: "timeout", RequestID: rid}
	}
	return &Problem{Title: http.StatusText(500), Status: 500, Detail: "unexpected error; quote the request id when reporting it", Code: "internal_error", RequestID: rid}
}

var installErrorShape sync.Once

// useProblemShape replaces huma's error constructor, once per process: huma offers only this
// package-level hook for its error type, and every API in the process wants the same shape.
func useProblemShape() {
	installErrorShape.Do(func() {
		huma.NewErrorWithContext = func(hctx huma.Context, status int, msg string, errs ...error) huma.StatusError {
			var ctx context.Context = context.Background()
			if hctx != nil {
				ctx = hctx.Context()
			}
			// A handler's classified error arrives here as the only detail of a 500.
			for _, e := range errs {
				_, classified := apperr.As(e)
				var p *Problem
				if classified || errors.As(e, &p) {
					out := ProblemFor(ctx, e)
					setRetryAfter(hctx, out)
					return out.bound()
				}
				// huma answers 500 "cannot read request body" whatever went wrong with the body;
				// the floor's reader marked the error as the client's.
				var be *bodyError
				if errors.As(e, &be) {
					p := be.problem(ctx).bound()
					closeAfter(hctx)
					return p
				}
			}
			p := &Problem{Title: http.StatusText(status), Status: status, Detail: msg, Code: defaultCode(status), RequestID: request.From(ctx).ID}
			if status == http.StatusRequestTimeout || status == http.StatusRequestEntityTooLarge {
				closeAfter(hctx)
			}
			if status >= 500 {
				// Unclassified failure: keep the cause out of the response; it is logged by the
				// request logger from the handler's error.
				p.Detail = "unexpected error; quote the request id when reporting it"
				if hctx != nil {
					noteCause(ctx, errs)
				}
				return p
			}
			// Only the errors that will be listed are converted: a body with a million unknown
			// properties costs a counter, not a million excerpts.
			for _, e := range errs {
				if e == nil {
					continue
				}
				if len(p.Errors) >= MaxProblemErrors {
					p.OmittedErrors++
					continue
				}
				if d, ok := e.(huma.ErrorDetailer); ok {
					p.addError(d.ErrorDetail())
				} else {
					p.addError(&huma.ErrorDetail{Message: e.Error()})
				}
			}
			if status == http.StatusBadRequest || status == http.StatusUnprocessableEntity || status == http.StatusUnsupportedMediaType {
				p.Detail = validationDetail(msg, p.Errors, p.OmittedErrors)
			}
			return p.bound()
		}
		huma.NewError = func(status int, msg string, errs ...error) huma.StatusError {
			return huma.NewErrorWithContext(nil, status, msg, errs...)
		}
	})
}

func validationDetail(msg string, details []*huma.ErrorDetail, omitted int) string {
	if len(details) == 0 {
		return msg
	}
	d := details[0]
	s := msg + ": " + d.Message
	if d.Location != "" {
		s += " (" + d.Location + ")"
	}
	if more := len(details) - 1 + omitted; more > 0 {
		s += " and " + strconv.Itoa(more) + " more"
	}
	return s
}

// closeAfter ends the connection after this answer to a body that was not read to its end (cut
// short, malformed, too slow or too large): what is left of it on the wire must not be read as the
// next request, and net/http would otherwise try to drain it, waiting on a stalled client before
// it sends the answer.
func closeAfter(hctx huma.Context) {
	if hctx != nil {
		hctx.SetHeader("Connection", "close")
	}
}

// setRetryAfter writes retry-after for refusals that carry one; huma does not apply an error's own
// headers when it writes it.
func setRetryAfter(hctx huma.Context, p *Problem) {
	if hctx != nil && p.retryAfter > 0 {
		hctx.SetHeader("Retry-After", strconv.Itoa(p.retryAfter))
	}
}
