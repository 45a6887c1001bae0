package ai

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	"github.com/sony/gobreaker/v2"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/crispy-enigma/crispy/platform/tracing"
)

// RouterConfig tunes fallbacks and breakers. Zero values take the defaults.
type RouterConfig struct {
	// FirstTokenTimeout abandons an attempt that has produced no token by then (a non-streamed
	// call: no answer); the next model is tried (default 20 s).
	FirstTokenTimeout time.Duration
	// IdleTimeout ends a streamed answer whose upstream sent nothing for this long after its first
	// token, with a timeout error (0: no idle limit; the call timeout still bounds it).
	IdleTimeout time.Duration
	// Retry is how often one model is retried on 429, 5xx or a refused or reset connection before
	// its first token, and the backoff between tries (zero: no retries; the server sets its own
	// default; a request's own Retry wins). A retry-after longer than MaxRetryAfter moves on to the
	// next model instead.
	Retry         RetryPolicy
	MaxRetryAfter time.Duration // default 10 s
	// Sleep waits between retries (tests inject one that records and does not wait).
	Sleep func(ctx context.Context, d time.Duration) error
	// OnAttempt, when set, is told about every try of a model, retries and breaker refusals
	// included, once it has ended (metrics, logs).
	OnAttempt func(ctx context.Context, a AttemptRecord)
	// OnFallback, when set, is told each time a call moves on from a model that failed (its last
	// attempt, after retries) to the next model of its list (metrics, WARN lines with the request).
	OnFallback func(ctx context.Context, from Attempt, next ModelID)
	// CallTimeout bounds a whole call to one model, streamed or not (default 5 min).
	CallTimeout time.Duration
	// BreakerFailures is how many consecutive retryable failures open a model's breaker (default 5).
	BreakerFailures uint32
	// BreakerOpenFor is how long an open breaker refuses calls before letting one through (default 30 s).
	BreakerOpenFor time.Duration
	// OnBreakerChange, when set, is told about every breaker state change (metrics, logs).
	OnBreakerChange func(model string, from, to string)
	// Tracer records a GenAI client span per model attempt (nil: no spans).
	Tracer trace.Tracer
}

func (c *RouterConfig) defaults() {
	if c.FirstTokenTimeout == 0 {
		c.FirstTokenTimeout = 20 * time.Second
	}
	if c.MaxRetryAfter == 0 {
		c.MaxRetryAfter = 10 * time.Second
	}
	if c.Sleep == nil {
		c.Sleep = sleep
	}
	if c.CallTimeout == 0 {
		c.CallTimeout = 5 * time.Minute
	}
	if c.BreakerFailures == 0 {
		c.BreakerFailures = 5
	}
	if c.BreakerOpenFor == 0 {
		c.BreakerOpenFor = 30 * time.Second
	}
	if c.Tracer == nil {
		c.Tracer = noop.NewTracerProvider().Tracer("")
	}
}

// Validate checks the configuration.
func (c RouterConfig) Validate() error {
	if c.FirstTokenTimeout < 0 || c.CallTimeout < 0 || c.BreakerOpenFor < 0 || c.IdleTimeout < 0 || c.Retry.Attempts < 0 || c.Retry.Backoff < 0 {
		return fmt.Errorf("ai: negative timeouts in router config")
	}
	return nil
}

// Router is the registry of configured providers. It runs a call on the first model of an ordered
// list that answers, each model behind its own circuit breaker.
type Router struct {
	cfg       RouterConfig
	providers map[string]Provider
	mu        sync.Mutex
	breakers  map[string]*gobreaker.TwoStepCircuitBreaker[struct{}]
}

// NewRouter builds a router over providers keyed by provider name ("openai", "workers-ai", "builtin").
func NewRouter(cfg RouterConfig, providers map[string]Provider) (*Router, error) {
	cfg.defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ps := make(map[string]Provider, len(providers))
	for name, p := range providers {
		if !providerPattern.MatchString(name) || p == nil {
			return nil, fmt.Errorf("ai: provider %q is invalid or nil", name)
		}
		ps[name] = p
	}
	return &Router{cfg: cfg, providers: ps, breakers: map[string]*gobreaker.TwoStepCircuitBreaker[struct{}]{}}, nil
}

// Has reports whether a provider of that name is configured.
func (r *Router) Has(provider string) bool { _, ok := r.providers[provider]; return ok }

// Providers lists the configured provider names, sorted.
func (r *Router) Providers() []string {
	out := make([]string, 0, len(r.providers))
	for n := range r.providers {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// BreakerStates reports every breaker created so far: model → "closed", "half-open" or "open".
func (r *Router) BreakerStates() map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]string, len(r.breakers))
	for m, b := range r.breakers {
		out[m] = b.State().String()
	}
	return out
}

func (r *Router) breaker(model string) *gobreaker.TwoStepCircuitBreaker[struct{}] {
	r.mu.Lock()
	defer r.mu.Unlock()
	if b, ok := r.breakers[model]; ok {
		return b
	}
	failures := r.cfg.BreakerFailures
	b := gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        model,
		MaxRequests: 1,
		Timeout:     r.cfg.BreakerOpenFor,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= failures },
		// Only failures that say the model is down count; a bad request is the caller's fault.
		IsSuccessful: func(err error) bool { return err == nil || !IsRetryable(err) },
		IsExcluded:   func(err error) bool { return ReasonOf(err) == "cancelled" },
		OnStateChange: func(name string, from, to gobreaker.State) {
			if r.cfg.OnBreakerChange != nil {
				r.cfg.OnBreakerChange(name, from.String(), to.String())
			}
		},
	})
	r.breakers[model] = b
	return b
}

// Attempt is a model that was tried and did not answer.
type Attempt struct {
	Model   ModelID
	Reason  string // breaker_open, timeout, unavailable, rate_limited, bad_request, error, no_provider
	Message string
}

// Answer is the outcome of a routed call.
type Answer struct {
	Result
	Model    ModelID   // the model that answered
	Attempts []Attempt // models tried before it, in order
	// FirstToken is when the first delta was emitted (zero for Complete or an empty answer).
	FirstToken time.Time
}

// FailedError is returned when no model answered. Emitted tells whether tokens had already been
// emitted (a failure after the first token ends the call with no fallback).
type FailedError struct {
	Attempts []Attempt
	Model    ModelID // the model that failed last
	Emitted  bool
	Err      error
}

func (e *FailedError) Error() string {
	if e.Emitted {
		return fmt.Sprintf("model %s failed after its first token: %v", e.Model, e.Err)
	}
	return fmt.Sprintf("no model answered (%d tried): %v", len(e.Attempts), e.Err)
}

func (e *FailedError) Unwrap() error { return e.Err }

var (
	errFirstTokenTimeout = errors.New("no first token in time")
	errIdleTimeout       = errors.New("no chunk in time")
)

// Stream runs a streamed completion on the first of models that answers. A retryable failure before
// the first token moves to the next model; a failure after it, or a non-retryable one, is returned
// as a *FailedError. req.Model is set per attempt.
func (r *Router) Stream(ctx context.Context, models []ModelID, req Request, emit Emit) (Answer, error) {
	return r.run(ctx, models, req, emit, true)
}

// Complete runs a non-streamed completion with the same fallbacks.
func (r *Router) Complete(ctx context.Context, models []ModelID, req Request) (Answer, error) {
	return r.run(ctx, models, req, nil, false)
}

func (r *Router) run(ctx context.Context, models []ModelID, req Request, emit Emit, stream bool) (Answer, error) {
	if stream {
		return r.route(ctx, models, req, func(actx context.Context, p Provider, _ ModelID, req Request, progress Progress) (Result, error) {
			return p.Stream(actx, req, func(delta string) error {
				if delta == "" {
					return nil
				}
				return progress(func() error { return emit(delta) })
			})
		})
	}
	return r.route(ctx, models, req, func(actx context.Context, p Provider, _ ModelID, req Request, _ Progress) (Result, error) {
		return p.Complete(actx, req)
	})
}

// Progress is called by a call before each piece of its answer goes out (send does that): the
// first one marks the model as answering (no fallback after it), each one restarts the idle limit.
// Its error is send's: the consumer went away.
type Progress func(send func() error) error

// callFunc runs one try of one model.
type callFunc func(actx context.Context, p Provider, m ModelID, req Request, progress Progress) (Result, error)

// route tries models in order, each up to its retries, until one answers. A failure after the
// first piece of the answer went out, or one that is not retryable, ends the call.
func (r *Router) route(ctx context.Context, models []ModelID, req Request, call callFunc) (Answer, error) {
	var attempts []Attempt
	var last error = errors.New("no model to try")
	var lastModel ModelID
	policy := r.cfg.Retry
	if req.Retry != nil {
		policy = *req.Retry
	}
	for _, m := range models {
		if len(attempts) > 0 && r.cfg.OnFallback != nil {
			r.cfg.OnFallback(ctx, attempts[len(attempts)-1], m)
		}
		p, ok := r.providers[m.Provider]
		if !ok {
			attempts = append(attempts, Attempt{Model: m, Reason: "no_provider", Message: "provider " + m.Provider + " is not configured"})
			last = fmt.Errorf("provider %s is not configured", m.Provider)
			lastModel = m
			continue
		}
		for try := 0; ; try++ {
			if err := ctx.Err(); err != nil {
				return Answer{}, &FailedError{Attempts: attempts, Model: lastModel, Err: Classify(ctx, m.String(), err)}
			}
			ans, emitted, err := r.attempt(ctx, p, m, req, call, try)
			if err == nil {
				ans.Model, ans.Attempts = m, attempts
				return ans, nil
			}
			lastModel, last = m, err
			if emitted || !IsRetryable(err) {
				return Answer{}, &FailedError{Attempts: attempts, Model: m, Emitted: emitted, Err: err}
			}
			var ae *Error
			msg := err.Error()
			if errors.As(err, &ae) {
				msg = ae.Message
			}
			attempts = append(attempts, Attempt{Model: m, Reason: ReasonOf(err), Message: msg})
			wait, again := r.retryWait(err, policy, try)
			if !again {
				break
			}
			if err := r.cfg.Sleep(ctx, wait); err != nil {
				return Answer{}, &FailedError{Attempts: attempts, Model: m, Err: Classify(ctx, m.String(), err)}
			}
		}
	}
	return Answer{}, &FailedError{Attempts: attempts, Model: lastModel, Err: last}
}

// retryWait says whether the same model is tried again after err (the try-th retry), and after how
// long: a 429, a 5xx or a refused or reset connection is retried; a timeout, an open breaker or a
// cut answer moves on (the model is slow or down: its fallback is the better bet). A retry-after
// is honoured, unless it is longer than MaxRetryAfter: then the next model is tried.
func (r *Router) retryWait(err error, policy RetryPolicy, try int) (time.Duration, bool) {
	if try >= policy.Attempts {
		return 0, false
	}
	var e *Error
	if !errors.As(err, &e) || (e.Reason != "rate_limited" && e.Reason != "unavailable") {
		return 0, false
	}
	if e.RetryAfter > 0 {
		if e.RetryAfter > r.cfg.MaxRetryAfter {
			return 0, false
		}
		return e.RetryAfter, true
	}
	d := policy.Backoff << try
	// ±50% jitter, so that calls failed together do not come back together.
	return d/2 + time.Duration(rand.Int64N(int64(d)+1)), true
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// attempt calls one model inside a GenAI span (semantic conventions: gen_ai.* attributes, usage,
// finish reason, error.type from the failure reason); every retry is an attempt of its own.
func (r *Router) attempt(ctx context.Context, p Provider, m ModelID, req Request, call callFunc, try int) (Answer, bool, error) {
	start := time.Now()
	maxTokens := req.MaxTokens
	if req.Pass != nil {
		maxTokens = req.Pass.MaxTokens
	}
	if _, off := r.cfg.Tracer.(noop.Tracer); off {
		// No tracing configured: the span's name and attributes (half a dozen allocations per
		// call) would be built for a span that records nothing.
		ans, emitted, err := r.attemptOnce(ctx, p, m, req, call)
		r.attempted(ctx, m, req, try, start, ans, err)
		return ans, emitted, err
	}
	ctx, span := tracing.StartModelSpan(ctx, r.cfg.Tracer, tracing.ModelCall{Model: m.String(), MaxTokens: maxTokens})
	ans, emitted, err := r.attemptOnce(ctx, p, m, req, call)
	o := tracing.ModelOutcome{InputTokens: ans.Usage.PromptTokens, OutputTokens: ans.Usage.CompletionTokens, FinishReason: ans.FinishReason, Err: err}
	if !ans.Usage.Reported && err == nil {
		// The provider reported no usage (the offline model never does): the span carries the
		// usual estimate, marked as one, rather than 0 tokens.
		for _, msg := range req.Messages {
			o.InputTokens += (len(msg.Content) + 3) / 4
		}
		o.OutputTokens, o.Estimated = (len(ans.Content)+3)/4, true
	}
	if err != nil {
		o.ErrorType = ReasonOf(err)
	}
	tracing.EndModelSpan(span, m.String(), o)
	r.attempted(ctx, m, req, try, start, ans, err)
	return ans, emitted, err
}

// attempted tells OnAttempt about an attempt that has ended.
func (r *Router) attempted(ctx context.Context, m ModelID, req Request, try int, start time.Time, ans Answer, err error) {
	if r.cfg.OnAttempt != nil {
		a := AttemptRecord{Model: m.String(), Retry: try, Err: err, Duration: time.Since(start), Stream: req.Pass == nil || req.Pass.Stream}
		if err != nil {
			a.Reason = ReasonOf(err)
		}
		if !ans.FirstToken.IsZero() {
			a.FirstToken = ans.FirstToken.Sub(start)
		}
		r.cfg.OnAttempt(ctx, a)
	}
}

// AttemptRecord is one try of one model, as OnAttempt is told of it.
type AttemptRecord struct {
	Model      string // "provider:model"
	Retry      int    // 0 for the model's first try
	Reason     string // the failure reason; "" when it answered
	Err        error
	Duration   time.Duration // the whole try
	FirstToken time.Duration // to the first piece of the answer (0: none)
	Stream     bool
}

func (r *Router) attemptOnce(ctx context.Context, p Provider, m ModelID, req Request, call callFunc) (Answer, bool, error) {
	name := m.String()
	done, err := r.breaker(name).Allow()
	if err != nil {
		return Answer{}, false, Classify(ctx, name, err)
	}
	cctx := ctx
	if d, ok := ctx.Deadline(); !ok || time.Until(d) > r.cfg.CallTimeout {
		// Only when the caller's own deadline is later: a proxied call's turn timeout usually
		// comes first, and this context (its timer and cancel registration) would change nothing.
		var cancelCall context.CancelFunc
		cctx, cancelCall = context.WithTimeout(ctx, r.cfg.CallTimeout)
		defer cancelCall()
	}
	actx, cancel := context.WithCancelCause(cctx)
	defer cancel(nil)
	req.Model = m.Model
	// What the progress callback updates, in one allocation: as variables captured by the
	// callback, each took one of its own.
	var st struct {
		ans     Answer
		emitted bool
		idle    *time.Timer
		emitErr error
	}
	timer := time.AfterFunc(r.cfg.FirstTokenTimeout, func() { cancel(errFirstTokenTimeout) })
	res, err := call(actx, p, m, req, func(send func() error) error {
		if !st.emitted {
			st.emitted = true
			timer.Stop()
			st.ans.FirstToken = time.Now()
			done(nil) // the model is up: later failures do not count against its breaker
		} else if st.idle != nil {
			st.idle.Stop()
		}
		if err := send(); err != nil {
			st.emitErr = err
			return err
		}
		// The idle limit counts from when the consumer took this piece: a slow reader is not an
		// idle model.
		if r.cfg.IdleTimeout > 0 {
			if st.idle == nil {
				st.idle = time.AfterFunc(r.cfg.IdleTimeout, func() { cancel(errIdleTimeout) })
			} else {
				st.idle.Reset(r.cfg.IdleTimeout)
			}
		}
		return nil
	})
	timer.Stop()
	if st.idle != nil {
		st.idle.Stop()
	}
	if st.emitErr != nil && err != nil {
		// The consumer went away: not the model's fault, not retryable.
		if !st.emitted {
			done(nil)
		}
		return st.ans, st.emitted, &Error{Model: name, Reason: "cancelled", Message: "the consumer stopped reading", Cause: st.emitErr}
	}
	err = r.classify(ctx, actx, name, err)
	if !st.emitted {
		done(err)
	}
	st.ans.Result = res
	return st.ans, st.emitted, err
}

// classify turns a call error into an *Error, naming a first-token timeout as a retryable timeout.
func (r *Router) classify(parent, actx context.Context, model string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(context.Cause(actx), errFirstTokenTimeout) && parent.Err() == nil {
		return &Error{Model: model, Reason: "timeout", Retryable: true, Message: fmt.Sprintf("no first token within %s", r.cfg.FirstTokenTimeout), Cause: err}
	}
	if errors.Is(context.Cause(actx), errIdleTimeout) && parent.Err() == nil {
		return &Error{Model: model, Reason: "timeout", Retryable: true, Message: fmt.Sprintf("no chunk within %s of the previous one", r.cfg.IdleTimeout), Cause: err}
	}
	return Classify(parent, model, err)
}
