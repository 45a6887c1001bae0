// Package httpapi is the HTTP floor: a Huma v2 API on the standard library mux, the middleware every
// request passes (request id, panic recovery, body limit, tenant guard, access log), and the one error
// shape (problem.go). Modules mount their operations on Server.API; they never see net/http.
package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"reflect"
	"regexp"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"
	"github.com/google/uuid"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/request"
	"github.com/crispy-enigma/crispy/platform/tenant"
	"github.com/crispy-enigma/crispy/platform/tracing"
)

// MaxBodyBytes is the largest request body the API accepts (SPEC §2).
const MaxBodyBytes = 1 << 20

// Config configures the HTTP API.
type Config struct {
	Title   string
	Version string
	// MaxBodyBytes defaults to 1 MiB.
	MaxBodyBytes int64
	// BodyLimits override MaxBodyBytes for some routes, keyed "METHOD /path" (the exact path, as
	// the request names it): an upload (POST /documents) is larger than any JSON request, and the
	// operation streams it rather than holding it whole.
	BodyLimits map[string]int64
	// Timeouts bound slow and idle clients (HTTPServer); zero fields take DefaultTimeouts.
	Timeouts Timeouts
}

func (c *Config) defaults() {
	if c.Title == "" {
		c.Title = "Crispy Enigma API"
	}
	if c.Version == "" {
		c.Version = "1.0.0"
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = MaxBodyBytes
	}
	c.Timeouts.defaults()
}

// Validate checks the configuration.
func (c Config) Validate() error {
	if c.MaxBodyBytes < 0 {
		return fmt.Errorf("httpapi: MaxBodyBytes %d is negative", c.MaxBodyBytes)
	}
	for route, n := range c.BodyLimits {
		if n <= 0 {
			return fmt.Errorf("httpapi: body limit %d of %s is not positive", n, route)
		}
	}
	return c.Timeouts.Validate()
}

// Admission is what the guard sees of a request: the credentials and hints that select a tenant.
type Admission struct {
	TenantHeader string // x-tenant-id
	Host         string // Host header, without port
	APIKey       string // x-api-key, or the bearer token of Authorization
	UserID       string // x-user-id
	Origin       string // Origin, for CORS
}

// Admitted is the guard's answer.
type Admitted struct {
	Tenant tenant.ID
	// Credential is the id of what authenticated the request, recorded as the actor of the events it
	// appends: "key:<id>" for an API key, never the key. Empty means the tenant was admitted without
	// a credential; the actor is then "anonymous:<tenant>".
	Credential string
	// Headers go on the response whatever the outcome (x-ratelimit-*, retry-after, CORS).
	Headers http.Header
}

// Guard resolves, authenticates and rate-limits a tenant-scoped request. The tenancy module provides
// it; httpapi only calls it. A refusal is an *apperr.Error (404 tenant_not_found, 401, 429 …); the
// returned Admitted.Headers are written in either case.
type Guard interface {
	Admit(ctx context.Context, a Admission) (Admitted, error)
}

// Preflighter is what a Guard may also implement to answer CORS preflight requests (OPTIONS with
// Origin and Access-Control-Request-Method), which carry no tenant header and no key: it reports
// whether a browser on origin may call the API at host.
type Preflighter interface {
	AllowsOrigin(host, origin string) bool
}

// Check reports one backend's health for GET /health.
type Check func(ctx context.Context) error

// RequestRecord describes a finished request, for metrics.
type RequestRecord struct {
	Method   string
	Route    string // the operation's path template, or "unmatched"
	Status   int
	Duration time.Duration
	Tenant   tenant.ID
}

// Deps are the server's collaborators.
type Deps struct {
	Log   *slog.Logger
	Guard Guard
	// Checks named by backend ("eventstore", "bus", "search" …) for GET /health.
	Checks map[string]Check
	// OnRequest, when set, is called after every request (metrics).
	OnRequest func(RequestRecord)
	// Tracer, when set, puts every request in a server span (the root of its trace, or the child
	// of an incoming W3C traceparent) with a "guard" child span for tenant admission.
	Tracer trace.TracerProvider
	Now    func() time.Time
}

// Server is the HTTP API.
type Server struct {
	API     huma.API
	mux     *http.ServeMux
	handler http.Handler
	deps    Deps
	cfg     Config
}

const metaPublic = "crispy.public"

// Public marks an operation that needs no tenant (liveness, metrics).
func Public(op *huma.Operation) {
	if op.Metadata == nil {
		op.Metadata = map[string]any{}
	}
	op.Metadata[metaPublic] = true
}

func isPublic(op *huma.Operation) bool {
	if op == nil {
		return true
	}
	v, _ := op.Metadata[metaPublic].(bool)
	return v
}

// New builds the server: the mux, the Huma API and the middleware.
func New(cfg Config, deps Deps) (*Server, error) {
	cfg.defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Log == nil {
		deps.Log = slog.New(slog.DiscardHandler)
	}
	if deps.Guard == nil {
		return nil, fmt.Errorf("httpapi: a Guard is required")
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	// A backend that is not configured (no Redis, say) passes a nil check: it is not reported.
	checks := make(map[string]Check, len(deps.Checks))
	for name, c := range deps.Checks {
		if c != nil {
			checks[name] = c
		}
	}
	deps.Checks = checks
	useProblemShape()
	mux := http.NewServeMux()
	hc := huma.DefaultConfig(cfg.Title, cfg.Version)
	hc.CreateHooks = nil // no $schema links: response bodies are exactly the SPEC's shapes
	hc.DocsPath = ""     // registerDocs serves /docs from embedded assets instead of a CDN
	hc.OpenAPI.Info.Description = "Multi-tenant AI platform: chat with persisted sessions, retrieval-augmented search, " +
		"tool plugins, usage and audit replay. Every tenant-scoped call names its tenant with x-tenant-id, its Host, or " +
		"an x-api-key; errors are RFC 9457 problem JSON with a requestId."
	describeContract(&hc)
	hc.Transformers = append(hc.Transformers, emptySlices)
	hc.OnAddOperation = append(hc.OnAddOperation, func(oapi *huma.OpenAPI, op *huma.Operation) {
		rejectNullArrays(oapi, op)
		// An operation that reads a body reads it within the server's read timeout, unless it
		// chose its own.
		if op.BodyReadTimeout == humaDefaultBodyReadTimeout {
			op.BodyReadTimeout = cfg.Timeouts.Read
		}
		defer contractOperation(oapi, op)
		if isPublic(op) {
			return
		}
		op.Parameters = append(op.Parameters,
			&huma.Param{Name: "x-tenant-id", In: "header", Description: "Tenant id; otherwise resolved from Host or x-api-key.", Schema: &huma.Schema{Type: "string", Pattern: `^[a-z0-9][a-z0-9-]{0,62}$`}},
			&huma.Param{Name: "x-user-id", In: "header", Description: "End user, for the per-user rate limit; recorded as the events' user, unverified (the actor is the credential that authenticated). Never erased (it is in every event's hash): send a pseudonymous id, not an e-mail address or a name.", Schema: &huma.Schema{Type: "string", MaxLength: ptr(256)}},
		)
		addErrorResponses(oapi, op)
	})
	api := humago.New(mux, hc)
	s := &Server{API: api, mux: mux, deps: deps, cfg: cfg}
	api.UseMiddleware(s.guardMiddleware, s.checkText)
	mux.HandleFunc("/", s.notFound)
	s.registerHealth()
	s.registerDocs()
	s.handler = s.requestID(s.openAIErrors(s.accessLog(s.recoverPanics(s.limitBody(s.preflight(mux))))))
	if deps.Tracer != nil {
		s.handler = tracing.Server(deps.Tracer, s.handler)
	}
	return s, nil
}

func ptr[T any](v T) *T { return &v }

// Arrays are never null in this API: request bodies refuse null for them (rejectNullArrays) and
// responses send a nil slice as [] (emptySlices), so the schemas say "array", not "array or null".
// huma keeps this setting globally; every server of this package wants the same.
func init() { huma.DefaultArrayNullable = false }

// rejectNullArrays makes every array a request body may hold refuse null (422 "expected array").
// huma documents and validates Go slices as nullable by default, so "messages": null passed
// validation as "no messages", and a handler that trusted minItems:"1" indexed an empty slice
// (500). Objects and scalars are already refused when null; leaving an optional array out is still
// fine. Responses keep huma's default (a nil slice is encoded as null), except where a type is
// shared with a request body.
func rejectNullArrays(oapi *huma.OpenAPI, op *huma.Operation) {
	if op.RequestBody == nil {
		return
	}
	seen := map[*huma.Schema]bool{}
	var walk func(sc *huma.Schema)
	walk = func(sc *huma.Schema) {
		for sc != nil && sc.Ref != "" {
			sc = oapi.Components.Schemas.SchemaFromRef(sc.Ref)
		}
		if sc == nil || seen[sc] {
			return
		}
		seen[sc] = true
		if sc.Type == huma.TypeArray {
			sc.Nullable = false
		}
		walk(sc.Items)
		for _, p := range sc.Properties {
			walk(p)
		}
		if ap, ok := sc.AdditionalProperties.(*huma.Schema); ok {
			walk(ap)
		}
		for _, group := range [][]*huma.Schema{sc.OneOf, sc.AnyOf, sc.AllOf} {
			for _, sub := range group {
				walk(sub)
			}
		}
	}
	for _, mt := range op.RequestBody.Content {
		if mt != nil {
			walk(mt.Schema)
		}
	}
}

// ProblemResponse documents an error answer of an operation (op.Responses["404"] = …): problem JSON
// in the one shape of the API.
func ProblemResponse(desc string) *huma.Response {
	return &huma.Response{Description: desc, Content: map[string]*huma.MediaType{
		"application/problem+json": {Schema: &huma.Schema{Ref: problemRef}},
	}}
}

const problemRef = "#/components/schemas/Problem"

func addErrorResponses(oapi *huma.OpenAPI, op *huma.Operation) {
	// Registering the type makes the component that problemRef names exist, whichever operation
	// comes first.
	oapi.Components.Schemas.Schema(reflect.TypeFor[Problem](), true, "Problem")
	if op.Responses == nil {
		op.Responses = map[string]*huma.Response{}
	}
	for code, desc := range map[string]string{
		"401": "Missing or wrong API key", "403": "The API key lacks the route's scope (scope_required), or has a USD budget and the call would reach a model without a price (model_unpriced)",
		"404": "Unknown tenant or resource", "413": "Body over 1 MiB", "429": "Rate limited (see retry-after)",
	} {
		if _, ok := op.Responses[code]; ok {
			continue
		}
		op.Responses[code] = ProblemResponse(desc)
	}
}

// Handler is the root http.Handler.
func (s *Server) Handler() http.Handler { return s.handler }

// Mux lets cmd/crispy mount non-API handlers (for example /metrics) beside the API.
func (s *Server) Mux() *http.ServeMux { return s.mux }

// state is the mutable per-request record the middleware share.
type state struct {
	mu     sync.Mutex
	tenant tenant.ID
	route  string
	cause  error
}

type stateKey struct{}

func stateFrom(ctx context.Context) *state {
	st, _ := ctx.Value(stateKey{}).(*state)
	return st
}

func noteCause(ctx context.Context, errs []error) {
	st := stateFrom(ctx)
	if st == nil {
		return
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, e := range errs {
		if e != nil {
			st.cause = e
			return
		}
	}
}

// Header names in their canonical form: net/http canonicalizes a name at every lookup and
// allocates the result when it differs (x-request-id), several times per request.
const (
	hdrRequestID = "X-Request-Id"
	hdrUserID    = "X-User-Id"
	hdrTenantID  = "X-Tenant-Id"
	hdrAPIKey    = "X-Api-Key"
)

var validRequestID = regexp.MustCompile(`^[A-Za-z0-9._:\-]{1,128}$`)

func (s *Server) requestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(hdrRequestID)
		if !validRequestID.MatchString(id) {
			u, err := uuid.NewV7()
			if err != nil {
				u = uuid.New()
			}
			id = u.String()
		}
		w.Header().Set(hdrRequestID, id)
		// The actor stays "anonymous" until the guard has authenticated the request (public
		// operations never get further); the asserted user is kept apart from it.
		ctx := request.With(r.Context(), request.Info{ID: id, Actor: "anonymous", User: userOf(r)})
		ctx = context.WithValue(ctx, stateKey{}, &state{})
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// userOf is the user id the client asserted. The guard refuses an x-user-id that is too long or
// holds control characters; this bound only keeps an unguarded (public) request's context small.
func userOf(r *http.Request) string {
	if u := r.Header.Get(hdrUserID); len(u) <= 256 {
		return u
	}
	return ""
}

// actorFor is the actor of an admitted request: the credential the guard authenticated, or the
// tenant itself when it was admitted without one.
func actorFor(adm Admitted) string {
	if adm.Credential != "" {
		return adm.Credential
	}
	return "anonymous:" + adm.Tenant.String()
}

// recoverPanics turns a panic in a handler into a 500 problem with the request id. A panic after
// the response has begun cannot become a problem any more: the connection is aborted
// (http.ErrAbortHandler), so the client sees a broken response instead of a cut one that looks
// complete. A handler's own http.ErrAbortHandler passes through, unlogged, as net/http intends.
func (s *Server) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if err, ok := v.(error); ok && errors.Is(err, http.ErrAbortHandler) {
				panic(v)
			}
			s.deps.Log.ErrorContext(r.Context(), "panic in handler", "panic", clip(fmt.Sprint(v), 2000), "stack", string(debug.Stack()))
			if rw, ok := w.(*recorder); ok && rw.wrote {
				panic(http.ErrAbortHandler)
			}
			s.writeProblem(w, r, &Problem{Title: "Internal Server Error", Status: 500, Detail: "unexpected error; quote the request id when reporting it", Code: "internal_error"})
		}()
		next.ServeHTTP(w, r)
	})
}

// corsAllowHeaders are the request headers a browser may send.
const corsAllowHeaders = "content-type, authorization, x-api-key, x-tenant-id, x-user-id, x-request-id, last-event-id"

// preflight answers CORS preflights: 204, with the allow headers when the Guard says a tenant allows
// the origin, and without them (so the browser refuses) otherwise. Preflights are never rate limited.
func (s *Server) preflight(next http.Handler) http.Handler {
	pf, _ := s.deps.Guard.(Preflighter)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if r.Method != http.MethodOptions || origin == "" || r.Header.Get("Access-Control-Request-Method") == "" {
			next.ServeHTTP(w, r)
			return
		}
		h := w.Header()
		h.Add("Vary", "Origin")
		if pf != nil && pf.AllowsOrigin(hostOnly(r.Host), origin) {
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Allow-Methods", "GET, POST, PUT, DELETE, OPTIONS")
			h.Set("Access-Control-Allow-Headers", corsAllowHeaders)
			h.Set("Access-Control-Max-Age", "600")
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

func (s *Server) limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		limit := s.cfg.MaxBodyBytes
		if n, ok := s.cfg.BodyLimits[r.Method+" "+r.URL.Path]; ok {
			limit = n
		}
		if r.ContentLength > limit {
			s.writeProblem(w, r, &Problem{Title: "Request Entity Too Large", Status: 413, Code: "body_too_large",
				Detail: fmt.Sprintf("request body is %d bytes; the limit is %d", r.ContentLength, limit)})
			return
		}
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = &bodyReader{ReadCloser: http.MaxBytesReader(w, r.Body, limit)}
		}
		next.ServeHTTP(w, r)
	})
}

// bodyReader marks every failure to read the request body (a malformed chunk, a body cut short,
// one over the limit) as the client's, so the error shape can answer 400 or 413 where huma, which
// cannot tell a broken client from a broken server, answers 500.
type bodyReader struct{ io.ReadCloser }

func (b *bodyReader) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		err = &bodyError{err: err}
	}
	return n, err
}

// bodyError is a failure to read the request body.
type bodyError struct{ err error }

func (e *bodyError) Error() string { return "read request body: " + e.err.Error() }
func (e *bodyError) Unwrap() error { return e.err }

func (e *bodyError) problem(ctx context.Context) *Problem {
	rid := request.From(ctx).ID
	var tooLarge *http.MaxBytesError
	if errors.As(e.err, &tooLarge) {
		return &Problem{Title: http.StatusText(413), Status: 413, Code: "body_too_large", RequestID: rid,
			Detail: fmt.Sprintf("request body is over the limit of %d bytes", tooLarge.Limit)}
	}
	var ne net.Error
	if errors.As(e.err, &ne) && ne.Timeout() {
		return &Problem{Title: http.StatusText(408), Status: 408, Code: "body_timeout", RequestID: rid,
			Detail: "the request body did not arrive in time"}
	}
	return &Problem{Title: http.StatusText(400), Status: 400, Code: "malformed_body", RequestID: rid,
		Detail: "the request body could not be read: its framing is malformed (chunked encoding) or it was cut short"}
}

// recorder captures the status for the access log while keeping Flush (SSE) and Unwrap
// (http.ResponseController) working.
type recorder struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (r *recorder) WriteHeader(code int) {
	if !r.wrote {
		r.status, r.wrote = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if !r.wrote {
		r.status, r.wrote = http.StatusOK, true
	}
	return r.ResponseWriter.Write(b)
}

func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (s *Server) accessLog(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := s.deps.Now()
		rec := &recorder{ResponseWriter: w, status: http.StatusOK}
		// Deferred, so a request whose connection was aborted (http.ErrAbortHandler) is logged and
		// counted too.
		defer func() {
			if v := recover(); v != nil {
				s.logRequest(r, rec, start, true)
				panic(v)
			}
			s.logRequest(r, rec, start, false)
		}()
		next.ServeHTTP(rec, r)
	})
}

func (s *Server) logRequest(r *http.Request, rec *recorder, start time.Time, aborted bool) {
	dur := s.deps.Now().Sub(start)
	st := stateFrom(r.Context())
	st.mu.Lock()
	tid, route, cause := st.tenant, st.route, st.cause
	st.mu.Unlock()
	if route == "" {
		route = "unmatched"
	}
	level := slog.LevelInfo
	if rec.status >= 500 {
		level = slog.LevelError
	}
	attrs := []slog.Attr{
		slog.String("method", r.Method), slog.String("route", route), slog.String("path", r.URL.Path),
		slog.Int("status", rec.status), slog.Float64("durationMs", float64(dur.Microseconds())/1000),
	}
	if !tid.IsZero() {
		attrs = append(attrs, slog.String("tenant", tid.String()))
	}
	if cause != nil {
		attrs = append(attrs, slog.String("error", clip(cause.Error(), 2000)))
	}
	if aborted {
		attrs = append(attrs, slog.Bool("aborted", true))
	}
	s.deps.Log.LogAttrs(r.Context(), level, "request", attrs...)
	if s.deps.OnRequest != nil {
		s.deps.OnRequest(RequestRecord{Method: r.Method, Route: route, Status: rec.status, Duration: dur, Tenant: tid})
	}
}

// guardMiddleware runs inside huma, so it knows the operation: public operations pass, every other
// one is admitted by the Guard first.
func (s *Server) guardMiddleware(hctx huma.Context, next func(huma.Context)) {
	op := hctx.Operation()
	ctx := hctx.Context()
	st := stateFrom(ctx)
	if st != nil && op != nil {
		st.mu.Lock()
		st.route = op.Method + " " + op.Path
		st.mu.Unlock()
	}
	if isPublic(op) {
		if op != nil {
			tracing.Route(ctx, op.Method, op.Path, "", request.From(ctx).ID)
		}
		next(hctx)
		return
	}
	a := Admission{
		TenantHeader: hctx.Header(hdrTenantID),
		Host:         hostOnly(hctx.Host()),
		APIKey:       apiKeyOf(hctx),
		UserID:       hctx.Header(hdrUserID),
		Origin:       hctx.Header("Origin"),
	}
	adm, err := s.admit(ctx, a)
	for k, vs := range adm.Headers {
		for _, v := range vs {
			hctx.AppendHeader(k, v)
		}
	}
	if err != nil {
		if _, ok := apperr.As(err); !ok {
			s.deps.Log.ErrorContext(ctx, "guard failed", "error", err)
		}
		p := ProblemFor(ctx, err)
		p.Instance = hctx.URL().Path
		setRetryAfter(hctx, p)
		_ = huma.WriteErr(s.API, hctx, p.Status, p.Detail, p)
		return
	}
	if st != nil {
		st.mu.Lock()
		st.tenant = adm.Tenant
		st.mu.Unlock()
	}
	info := request.From(ctx)
	info.Actor = actorFor(adm)
	if op != nil {
		tracing.Route(ctx, op.Method, op.Path, adm.Tenant.String(), info.ID)
	}
	ctx = request.With(tenant.WithID(ctx, adm.Tenant), info)
	next(huma.WithContext(hctx, ctx))
}

// admit runs the Guard inside a "guard" span (tenant resolution, authentication, rate limit).
func (s *Server) admit(ctx context.Context, a Admission) (Admitted, error) {
	if s.deps.Tracer == nil {
		return s.deps.Guard.Admit(ctx, a)
	}
	gctx, span := tracing.StartSpan(ctx, s.deps.Tracer.Tracer(tracing.InstrumentationName), "guard", "")
	adm, err := s.deps.Guard.Admit(gctx, a)
	if !adm.Tenant.IsZero() {
		span.SetAttributes(attribute.String(tracing.AttrTenant, adm.Tenant.String()))
	}
	tracing.End(span, err, apperr.CodeOf(err))
	return adm, err
}

func apiKeyOf(hctx huma.Context) string {
	if k := hctx.Header(hdrAPIKey); k != "" {
		return k
	}
	if auth := hctx.Header("Authorization"); len(auth) > 7 && strings.EqualFold(auth[:7], "bearer ") {
		return strings.TrimSpace(auth[7:])
	}
	return ""
}

func hostOnly(h string) string {
	if strings.HasPrefix(h, "[") {
		if i := strings.Index(h, "]"); i > 0 {
			return strings.ToLower(h[1:i])
		}
	}
	if i := strings.LastIndexByte(h, ':'); i >= 0 {
		h = h[:i]
	}
	return strings.ToLower(h)
}

// notFound answers what no route matched: 405 with Allow when the path has routes for other
// methods, 404 otherwise. The mux sends both here, because "/" catches every method and path.
func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	if allow := s.allowedMethods(r); len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		s.writeProblem(w, r, &Problem{Title: "Method Not Allowed", Status: http.StatusMethodNotAllowed, Code: "method_not_allowed",
			Detail: fmt.Sprintf("%s is not allowed here; this path allows %s", clip(r.Method, 16), strings.Join(allow, ", "))})
		return
	}
	s.writeProblem(w, r, &Problem{Title: "Not Found", Status: 404, Code: "route_not_found",
		Detail: fmt.Sprintf("no route %s %s; see /openapi.yaml for the API", clip(r.Method, 16), clip(r.URL.Path, 200))})
}

// routeMethods are the methods a route of this API can have.
var routeMethods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

// allowedMethods asks the mux which methods have a route for r's path (other than the catch-all).
func (s *Server) allowedMethods(r *http.Request) []string {
	var allow []string
	for _, m := range routeMethods {
		if m == r.Method {
			continue
		}
		probe := &http.Request{Method: m, URL: r.URL, Host: r.Host, Header: http.Header{}}
		if _, pattern := s.mux.Handler(probe); pattern != "" && pattern != "/" {
			allow = append(allow, m)
		}
	}
	return allow
}

func (s *Server) writeProblem(w http.ResponseWriter, r *http.Request, p *Problem) {
	p.RequestID = request.From(r.Context()).ID
	if p.Instance == "" {
		p.Instance = r.URL.Path
	}
	p.bound()
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}
