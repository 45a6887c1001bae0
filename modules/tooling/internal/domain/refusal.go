package domain

import (
	"context"
	"sync"
)

// Refusals holds the first refusal a tool call's model callbacks met from the tenant's token
// budget. A tool that cannot use the model falls back to its deterministic method and succeeds, so
// the host would never learn from the tool that the tenant was out of budget; the call's context
// carries a Refusals (host callbacks run with its values), and Execute answers with the refusal
// (429 budget_exceeded) once the tool returns.
type Refusals struct {
	mu  sync.Mutex
	err error
}

type refusalsKey struct{}

// WithRefusals returns ctx carrying a new Refusals.
func WithRefusals(ctx context.Context) (context.Context, *Refusals) {
	r := &Refusals{}
	return context.WithValue(ctx, refusalsKey{}, r), r
}

// RecordRefusal keeps err in ctx's Refusals (the first one wins); nothing when ctx carries none.
func RecordRefusal(ctx context.Context, err error) {
	r, _ := ctx.Value(refusalsKey{}).(*Refusals)
	if r == nil || err == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err == nil {
		r.err = err
	}
}

// Err is the first refusal recorded (nil: none).
func (r *Refusals) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}
