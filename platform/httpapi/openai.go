package httpapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"github.com/danielgtaylor/huma/v2"
)

// OpenAI's clients read errors as {"error":{"message","type","param","code"}}, so every error
// answer under /v1/ (a handler's, a validation's, the guard's 401 and 429, an unknown route's 404)
// is written in that envelope instead of problem JSON: same status, same headers (x-request-id,
// retry-after), same code. The problem machinery stays the one source; openAIErrors only re-shapes
// what it wrote, so no error path can forget to.

// OpenAIPrefix is the path prefix whose errors take OpenAI's envelope.
const OpenAIPrefix = "/v1/"

// OpenAIError is OpenAI's error object.
type OpenAIError struct {
	Message string  `json:"message" doc:"What went wrong, for a person"`
	Type    string  `json:"type" doc:"invalid_request_error, authentication_error, permission_error, not_found_error, rate_limit_error, server_error" example:"invalid_request_error"`
	Param   *string `json:"param" doc:"The request field at fault, if any"`
	Code    string  `json:"code" doc:"Stable machine-readable code, as in problem JSON" example:"model_not_found"`
}

// OpenAIErrorBody is OpenAI's error envelope.
type OpenAIErrorBody struct {
	Error OpenAIError `json:"error"`
}

// OpenAIErrorType is OpenAI's error type for an HTTP status.
func OpenAIErrorType(status int) string {
	switch {
	case status == http.StatusUnauthorized:
		return "authentication_error"
	case status == http.StatusForbidden:
		return "permission_error"
	case status == http.StatusNotFound:
		return "not_found_error"
	case status == http.StatusTooManyRequests:
		return "rate_limit_error"
	case status >= 500:
		return "server_error"
	default:
		return "invalid_request_error"
	}
}

// OpenAIErrorOf is the envelope of a problem.
func OpenAIErrorOf(p *Problem) OpenAIErrorBody {
	e := OpenAIError{Message: p.Detail, Type: OpenAIErrorType(p.Status), Code: p.Code}
	if e.Message == "" {
		e.Message = p.Title
	}
	if len(p.Errors) > 0 && p.Errors[0].Location != "" {
		// huma's locations are body.messages[0].content; OpenAI's params name the body's field.
		param := strings.TrimPrefix(strings.TrimPrefix(p.Errors[0].Location, "body."), "body")
		if param != "" {
			e.Param = &param
		}
	}
	return OpenAIErrorBody{Error: e}
}

// OpenAIErrorJSON is the envelope of err as the request in hctx sees it (for an error event of a
// stream that has begun).
func OpenAIErrorJSON(hctx huma.Context, err error) []byte {
	b, _ := json.Marshal(OpenAIErrorOf(ProblemFor(hctx.Context(), err).bound()))
	return b
}

// WriteError answers err as problem JSON from inside a streamed response that has not begun (on
// /v1/ it is re-shaped like any other error).
func WriteError(hctx huma.Context, err error) {
	p := ProblemFor(hctx.Context(), err).bound()
	setRetryAfter(hctx, p)
	if p.Instance == "" {
		p.Instance = hctx.URL().Path
	}
	hctx.SetHeader("Content-Type", "application/problem+json")
	hctx.SetStatus(p.Status)
	_ = json.NewEncoder(hctx.BodyWriter()).Encode(p)
}

// openAIErrors re-shapes problem answers under /v1/ into OpenAI's envelope.
func (s *Server) openAIErrors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, OpenAIPrefix) {
			next.ServeHTTP(w, r)
			return
		}
		ow := &openAIWriter{ResponseWriter: w}
		next.ServeHTTP(ow, r)
		ow.finish()
	})
}

// openAIWriter passes every answer through, but holds back a problem's body to re-shape it.
type openAIWriter struct {
	http.ResponseWriter
	problem bool
	status  int
	buf     bytes.Buffer
	wrote   bool
}

func (o *openAIWriter) WriteHeader(code int) {
	if o.wrote {
		return
	}
	o.wrote = true
	if strings.HasPrefix(o.Header().Get("Content-Type"), "application/problem+json") {
		o.problem, o.status = true, code
		return // written by finish
	}
	o.ResponseWriter.WriteHeader(code)
}

func (o *openAIWriter) Write(b []byte) (int, error) {
	if !o.wrote {
		o.WriteHeader(http.StatusOK)
	}
	if o.problem {
		if o.buf.Len() < 1<<20 { // problems are bounded; this only keeps a runaway one from growing
			o.buf.Write(b)
		}
		return len(b), nil
	}
	return o.ResponseWriter.Write(b)
}

func (o *openAIWriter) Flush() {
	if o.problem {
		return
	}
	if f, ok := o.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (o *openAIWriter) Unwrap() http.ResponseWriter { return o.ResponseWriter }

func (o *openAIWriter) finish() {
	if !o.problem {
		return
	}
	var p Problem
	if err := json.Unmarshal(o.buf.Bytes(), &p); err != nil || p.Status == 0 {
		p = Problem{Status: o.status, Title: http.StatusText(o.status), Code: defaultCode(o.status)}
	}
	p.Status = o.status
	body, _ := json.Marshal(OpenAIErrorOf(&p))
	h := o.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)+1))
	o.ResponseWriter.WriteHeader(o.status)
	_, _ = o.ResponseWriter.Write(append(body, '\n'))
}
