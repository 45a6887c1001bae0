package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/crispy-enigma/crispy/modules/conversation/events"
	"github.com/crispy-enigma/crispy/modules/conversation/internal/domain"
	"github.com/crispy-enigma/crispy/platform/ai"
	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// A stateless /v1/chat/completions call (no x-session-id) is a pass-through: the client's request
// goes to the model as written (its model name resolved, the tenant's system prompt first when one
// is configured, nothing else added) and the model's answer comes back as the model wrote it,
// with the tenant's model rules, token budget, retries and fallbacks around it, and one
// CompletionRecorded for its usage. No Turn is kept: there is nothing to resume.

// ProxyInput is one stateless OpenAI call.
type ProxyInput struct {
	Tenant tenant.ID
	// Model is the client's model name: provider:model, an alias, a bare name, or "default".
	Model  string
	Pass   *ai.PassRequest
	UserID string
	// PromptBytes is the size of the client's messages, for the budget's estimate.
	PromptBytes int
	Received    time.Time
}

// ProxyCall is a prepared call: its budget reserved, its models chosen. Run it once.
type ProxyCall struct {
	s       *Service
	in      ProxyInput
	id      string
	models  []ai.ModelID
	retry   *ai.RetryPolicy
	prompt  int
	turn    *Turn
	key     string
	ctx     context.Context
	cancel  context.CancelCauseFunc
	release func()
}

// Model is the first model the call will try ("provider:model").
func (c *ProxyCall) Model() string { return c.models[0].String() }

// PrepareProxy checks and books a call: model name and allow-list, the providers' ability to
// honour its fields, the tenant's budget. Its errors are the client's answer (400, 403, 404, 429, 503).
func (s *Service) PrepareProxy(ctx context.Context, in ProxyInput) (*ProxyCall, error) {
	if in.Received.IsZero() {
		in.Received = s.Now()
	}
	cfg, err := s.config(ctx, in.Tenant)
	if err != nil {
		return nil, err
	}
	requested, err := s.resolveModelName(in.Model, cfg)
	if err != nil {
		return nil, err
	}
	models, err := domain.SelectModels(domain.ModelChoice{Requested: requested, Override: s.Settings.OverrideModel,
		TenantDefault: cfg.Models.Chat, ServerDefault: s.Settings.DefaultModel, Fallbacks: cfg.Models.Fallbacks, Allowed: cfg.Models.Allowed})
	if err != nil {
		return nil, err
	}
	if requested != "" && !s.Router.Has(models[0].Provider) {
		return nil, apperr.Invalid("model_unavailable", "body.model", fmt.Sprintf("provider %q is not configured on this server (configured: %s)",
			models[0].Provider, strings.Join(s.Router.Providers(), ", ")))
	}
	if cfg.SystemPrompt != "" {
		in.Pass.Fields["messages"] = withSystem(in.Pass.Fields["messages"], cfg.SystemPrompt)
		in.PromptBytes += len(cfg.SystemPrompt)
	}
	c := &ProxyCall{s: s, in: in, id: newID(), models: models, prompt: in.PromptBytes/4 + 1}
	if r := cfg.Models.Retry; r != nil {
		c.retry = &ai.RetryPolicy{Attempts: r.Attempts, Backoff: time.Duration(r.BackoffMs) * time.Millisecond}
	}
	in.Pass.ID = "chatcmpl-" + c.id
	in.Pass.Created = in.Received.Unix()
	want := int64(in.Pass.MaxTokens)
	if want <= 0 {
		want = s.defaultCompletion(cfg, models)
	}
	granted, err := s.reserveCompletion(ctx, in.Tenant, c.id, int64(c.prompt), want, cfg, models)
	if err != nil {
		return nil, err
	}
	capMaxTokens(in.Pass, granted, want, s.hasCeiling(ctx, in.Tenant, cfg))
	// Registered as running, so that a shutdown cancels it and waits for its usage to be recorded.
	c.ctx, c.cancel = context.WithCancelCause(context.WithoutCancel(ctx))
	c.turn = newTurn(c.id, "", in.Tenant, 0, c.cancel)
	c.key = cacheKey(in.Tenant, "call-"+c.id)
	if err := s.Running.acquire(c.key, c.turn); err != nil {
		c.cancel(nil)
		s.Ledger.Release(in.Tenant.String(), c.id)
		return nil, err
	}
	return c, nil
}

// capMaxTokens makes the upstream write at most granted tokens when the budget needs it: the
// client's max_tokens / max_completion_tokens are overwritten only when granted is below what the
// client asked for; a client that set neither gets max_tokens = granted only under a ceiling (else
// the model's own default could take the tenant past it). Otherwise the body stays as written.
func capMaxTokens(p *ai.PassRequest, granted, want int64, ceiling bool) {
	_, mt := p.Fields["max_tokens"]
	_, mct := p.Fields["max_completion_tokens"]
	set := p.MaxTokens > 0 && (mt || mct)
	if set && granted >= want || !set && !ceiling {
		return
	}
	v := json.RawMessage(strconv.FormatInt(granted, 10))
	if mct {
		p.Fields["max_completion_tokens"] = v
	}
	if mt || !mct {
		p.Fields["max_tokens"] = v
	}
	p.MaxTokens = int(granted)
}

// knownModels lists the distinct non-empty model ids of the lists.
func knownModels(lists ...[]string) []string {
	var out []string
	seen := map[string]bool{}
	for _, l := range lists {
		for _, m := range l {
			if m != "" && !seen[m] {
				seen[m] = true
				out = append(out, m)
			}
		}
	}
	return out
}

// withSystem puts the tenant's system prompt first in the client's messages array.
func withSystem(messages json.RawMessage, prompt string) json.RawMessage {
	sys, _ := json.Marshal(map[string]string{"role": "system", "content": prompt})
	rest := strings.TrimSpace(string(messages))
	if len(rest) < 2 || rest[0] != '[' {
		return messages // the schema refused anything else
	}
	inner := strings.TrimSpace(rest[1:])
	out := make([]byte, 0, len(sys)+len(rest)+2)
	out = append(out, '[')
	out = append(out, sys...)
	if inner != "]" {
		out = append(out, ',')
	}
	return append(out, inner...)
}

// ProxyFailure is how a call that failed ends: Emitted says whether part of the answer had
// already gone out (the client then gets an error event, else an error answer).
type ProxyFailure struct {
	Emitted bool
	Err     *apperr.Error
}

func (f *ProxyFailure) Error() string { return f.Err.Error() }
func (f *ProxyFailure) Unwrap() error { return f.Err }

// Run makes the call, handing out the answer's chunks (or its one body) to out, and records its
// usage. It ends with ctx (the client leaving) or a shutdown.
func (c *ProxyCall) Run(ctx context.Context, out ai.Chunks) error {
	s, in := c.s, c.in
	defer func() {
		c.turn.abandon()
		s.Running.release(c.key, c.turn)
		c.cancel(nil)
	}()
	stop := context.AfterFunc(ctx, func() { c.cancel(errClientGone) })
	defer stop()
	tctx, cancel := context.WithTimeout(c.ctx, s.Settings.TurnTimeout)
	defer cancel()
	emitted := false
	ans, err := s.Router.Pass(tctx, c.models, ai.Request{Pass: in.Pass, Retry: c.retry}, func(data []byte) error {
		emitted = true
		return out(data)
	})
	end := s.Now()
	fallbacks := s.fallbacksOf(ans, err)
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer rcancel()
	latency := ms(end.Sub(in.Received))
	rec := TurnInput{Tenant: in.Tenant, ModelID: in.Model, UserID: in.UserID, Stateless: true, Source: "openai"}
	if err == nil {
		model := ans.Model.String() // once: each String builds the "provider:model" string anew
		u := usageOf(ans.Usage, c.prompt, ans.Content)
		if !ans.Usage.Reported && ans.Usage.TotalTokens > 0 {
			// The estimate the client was told (a provider without usage of its own).
			u = events.Usage{PromptTokens: ans.Usage.PromptTokens, CompletionTokens: ans.Usage.CompletionTokens, TotalTokens: ans.Usage.TotalTokens, Estimated: true}
		}
		ttft := 0.0
		if !ans.FirstToken.IsZero() {
			ttft = ms(ans.FirstToken.Sub(in.Received))
			s.Metrics.ttft(model, ans.FirstToken.Sub(in.Received))
		}
		ev := events.AssistantMessageCompleted{TurnID: c.id, Model: model, Usage: u, LatencyMs: latency, TTFTMs: ttft,
			Fallbacks: fallbacks, UserID: in.UserID, Source: "openai", Offline: ans.Model == ai.Offline}
		if rerr := s.recordCompletion(rctx, rec, c.id, ev, int64(u.TotalTokens)); rerr != nil {
			// The answer went out already; its usage is lost to this error, which the log keeps.
			s.Log.ErrorContext(rctx, "record completion usage", "error", rerr, "tenant", in.Tenant.String())
		}
		s.Metrics.turn(model, "completed")
		s.Metrics.tokens(model, u.PromptTokens, u.CompletionTokens)
		return nil
	}
	model := c.models[0].String()
	var fe *ai.FailedError
	if errors.As(err, &fe) && !fe.Model.IsZero() {
		model = fe.Model.String()
	}
	e, code := c.classify(tctx, err, fallbacks, emitted)
	u := events.Usage{Estimated: true}
	if emitted {
		u = usageOf(ans.Usage, c.prompt, "")
	}
	ev := events.AssistantMessageFailed{TurnID: c.id, Code: code, Message: e.Message, Cancelled: code == events.CodeCancelled || code == events.CodeShuttingDown,
		Model: model, Usage: u, LatencyMs: latency, Fallbacks: fallbacks, UserID: in.UserID, Source: "openai"}
	if rerr := s.recordCompletion(rctx, rec, c.id, ev, int64(u.TotalTokens)); rerr != nil {
		s.Log.ErrorContext(rctx, "record failed completion", "error", rerr, "tenant", in.Tenant.String())
	}
	s.Metrics.turn(model, code)
	return &ProxyFailure{Emitted: emitted, Err: e}
}

// classify maps a failed call to the client's error: a field a model cannot honour, or a request
// the upstream refused, is the client's 400; the rest is ours or the models' (502, 503, 504).
func (c *ProxyCall) classify(tctx context.Context, err error, fallbacks []events.FallbackAttempt, emitted bool) (*apperr.Error, string) {
	var ae *ai.Error
	errors.As(err, &ae)
	switch {
	case errors.Is(context.Cause(c.ctx), errClientGone):
		return apperr.Wrap(err, apperr.KindTimeout, events.CodeCancelled, "the client disconnected"), events.CodeCancelled
	case errors.Is(context.Cause(c.ctx), errShuttingDown):
		e := apperr.Wrap(err, apperr.KindUnavailable, events.CodeShuttingDown, "the server shut down before the answer was complete")
		e.RetryAfterSec = 1
		return e, events.CodeShuttingDown
	case ae != nil && ae.Reason == ai.ReasonUnsupported:
		e := apperr.Invalid("unsupported_field", "body."+ae.Param, ae.Message)
		return e, "unsupported_field"
	case ae != nil && ae.Reason == "bad_request" && !emitted:
		// The model refused the request as malformed (a bad tool schema, an unknown field): the
		// client's error, in the upstream's words.
		return apperr.Invalid("upstream_bad_request", "body", "the model refused the request: "+ae.Message), "upstream_bad_request"
	case errors.Is(tctx.Err(), context.DeadlineExceeded):
		return apperr.Wrap(err, apperr.KindTimeout, events.CodeTimeout, "the model did not finish in time"), events.CodeTimeout
	case emitted && ai.ReasonOf(err) == ai.ReasonTruncated:
		return apperr.Wrap(err, apperr.KindBadGateway, events.CodeUpstreamTruncated, "the model's answer ended before it was complete"), events.CodeUpstreamTruncated
	case emitted:
		return apperr.Wrap(err, apperr.KindBadGateway, events.CodeStreamFailed, "the model failed while answering: "+reasonText(err)), events.CodeStreamFailed
	}
	tried := make([]string, 0, len(fallbacks)+1)
	for _, f := range fallbacks {
		tried = append(tried, f.Model+": "+f.Reason)
	}
	var fe *ai.FailedError
	if errors.As(err, &fe) && !fe.Model.IsZero() {
		tried = append(tried, fe.Model.String()+": "+ai.ReasonOf(fe.Err))
	}
	return apperr.Wrap(err, apperr.KindBadGateway, events.CodeAllModelsFailed, "no model could answer ("+strings.Join(tried, ", ")+")"), events.CodeAllModelsFailed
}

func reasonText(err error) string {
	r := ai.ReasonOf(err)
	var ae *ai.Error
	if errors.As(err, &ae) && ae.Message != "" {
		return r + ": " + ae.Message
	}
	return r
}

// Abandon gives up a prepared call that will not run (its client went away first).
func (c *ProxyCall) Abandon() {
	c.turn.abandon()
	c.s.Running.release(c.key, c.turn)
	c.cancel(nil)
	c.s.Ledger.Release(c.in.Tenant.String(), c.id)
}
