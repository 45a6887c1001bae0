// Package aitest is a scriptable in-process ai.Provider for tests and benchmarks: zero latency by
// default, failures before or after the first token, and calls that block until their context ends.
package aitest

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/crispy-enigma/crispy/platform/ai"
)

// Script says how one call behaves.
type Script struct {
	// Tokens are emitted in order (default "Hello", " from", " the", " fake").
	Tokens []string
	// FailBefore is returned before any token.
	FailBefore error
	// FailAfter > 0 emits that many tokens and then returns FailAfterErr (default: a 502 error).
	FailAfter    int
	FailAfterErr error
	// Block waits for ctx to end before the first token (and returns its error).
	Block bool
	// BlockAfter > 0 emits that many tokens, then waits for ctx to end.
	BlockAfter int
	// Gate, when set, is received from before the first token (to hold calls in flight).
	Gate chan struct{}
	// PauseAfter > 0 emits that many tokens, then waits to receive from Resume (or ctx to end)
	// before the rest.
	PauseAfter int
	Resume     chan struct{}
	// Usage is reported when set; otherwise the call reports none (the caller estimates).
	Usage *ai.Usage
}

// Provider is the fake. Calls use queued scripts first (Push), then Default.
type Provider struct {
	Default Script
	mu      sync.Mutex
	queue   []Script
	reqs    []ai.Request
	calls   atomic.Int64
	// Record keeps every request for Requests (off by default, so benchmarks do not grow memory).
	Record bool
}

// New returns a fake whose calls follow s.
func New(s Script) *Provider { return &Provider{Default: s} }

// Push queues scripts for the next calls, in order.
func (p *Provider) Push(s ...Script) {
	p.mu.Lock()
	p.queue = append(p.queue, s...)
	p.mu.Unlock()
}

// Calls is how many calls were made.
func (p *Provider) Calls() int { return int(p.calls.Load()) }

// Requests returns the recorded requests (Record must be true).
func (p *Provider) Requests() []ai.Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]ai.Request(nil), p.reqs...)
}

func (p *Provider) next(req ai.Request) Script {
	p.calls.Add(1)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.Record {
		p.reqs = append(p.reqs, req)
	}
	if len(p.queue) > 0 {
		s := p.queue[0]
		p.queue = p.queue[1:]
		return s
	}
	return p.Default
}

var defaultTokens = []string{"Hello", " from", " the", " fake"}

// Unavailable is a retryable 503 as a real provider would return it.
func Unavailable(model string) error {
	return &ai.Error{Model: model, Status: 503, Retryable: true, Reason: "unavailable", Message: "fake provider is down"}
}

// Stream implements ai.Provider.
func (p *Provider) Stream(ctx context.Context, req ai.Request, emit ai.Emit) (ai.Result, error) {
	s := p.next(req)
	if s.Gate != nil {
		select {
		case <-s.Gate:
		case <-ctx.Done():
			return ai.Result{}, ctx.Err()
		}
	}
	if s.FailBefore != nil {
		return ai.Result{}, s.FailBefore
	}
	if s.Block {
		<-ctx.Done()
		return ai.Result{}, ctx.Err()
	}
	toks := s.Tokens
	if toks == nil {
		toks = defaultTokens
	}
	var b strings.Builder
	for i, t := range toks {
		if s.FailAfter > 0 && i == s.FailAfter {
			err := s.FailAfterErr
			if err == nil {
				err = &ai.Error{Model: req.Model, Status: 502, Reason: "error", Message: "fake stream broke"}
			}
			return ai.Result{Content: b.String()}, err
		}
		if s.PauseAfter > 0 && i == s.PauseAfter {
			select {
			case <-s.Resume:
			case <-ctx.Done():
				return ai.Result{Content: b.String()}, ctx.Err()
			}
		}
		if s.BlockAfter > 0 && i == s.BlockAfter {
			<-ctx.Done()
			return ai.Result{Content: b.String()}, ctx.Err()
		}
		if err := ctx.Err(); err != nil {
			return ai.Result{Content: b.String()}, err
		}
		b.WriteString(t)
		if err := emit(t); err != nil {
			return ai.Result{Content: b.String()}, err
		}
	}
	if s.BlockAfter > 0 && s.BlockAfter >= len(toks) {
		<-ctx.Done()
		return ai.Result{Content: b.String()}, ctx.Err()
	}
	res := ai.Result{Content: b.String(), FinishReason: "stop"}
	if s.Usage != nil {
		res.Usage = *s.Usage
		res.Usage.Reported = true
	}
	return res, nil
}

// Complete implements ai.Provider.
func (p *Provider) Complete(ctx context.Context, req ai.Request) (ai.Result, error) {
	return p.Stream(ctx, req, func(string) error { return nil })
}

// Speaker is a fake ai.Speaker answering fixed bytes.
type Speaker struct {
	Bytes []byte
	Err   error
	calls atomic.Int64
	last  atomic.Value
}

// Speak implements ai.Speaker.
func (s *Speaker) Speak(_ context.Context, req ai.SpeechRequest) (ai.Audio, error) {
	s.calls.Add(1)
	s.last.Store(req)
	if s.Err != nil {
		return ai.Audio{}, s.Err
	}
	return ai.Audio{Body: nopCloser{strings.NewReader(string(s.Bytes))}, ContentType: ai.ContentTypeOf(req.Format)}, nil
}

// Calls is how many calls were made.
func (s *Speaker) Calls() int { return int(s.calls.Load()) }

type nopCloser struct{ *strings.Reader }

func (nopCloser) Close() error { return nil }
