package bus

import (
	"context"
	"fmt"
	"reflect"
	"sync"
)

// Prepare registers h for the events whose data is a T that a projection is about to apply: it is
// called once per batch with every such event of the batch (envs[i] and evs[i]), outside any
// transaction and ahead of the projection (while it applies the batch before), and returns one
// value per event (or nil). The Apply handler of T finds its event's value with Prepared.
//
// It is for work a handler must not do inside its transaction and that many events do better
// together than one at a time: the session list seals each new session's title under a data key it
// creates, and creating the keys of a batch at once shares one fsync of the key store instead of
// one per session (with one each, a rebuild of the session list went at the pace of the fsyncs).
//
// A prepared value is a hint, never the only way: the Apply handler must do the work itself when
// Prepared finds nothing (h failed, or the event is applied again after a rolled-back transaction),
// and get the same result. h must be safe to call for events the projection then skips (at or below
// its checkpoint) and more than once for an event.
func Prepare[T any](p *Projection, h func(ctx context.Context, envs []Envelope, evs []T) ([]any, error)) {
	p.b.mu.Lock()
	defer p.b.mu.Unlock()
	if p.b.started {
		p.b.log.Error("bus: projection prepare handler added after Run; ignored", "projection", p.name, "type", reflect.TypeFor[T]().String())
		return
	}
	p.preps = append(p.preps, prepHandler{typ: reflect.TypeFor[T](), call: func(ctx context.Context, envs []Envelope, vs []any) ([]any, error) {
		evs := make([]T, len(vs))
		for i, v := range vs {
			evs[i] = v.(T)
		}
		return h(ctx, envs, evs)
	}})
}

// Prepared is the value Prepare's handler returned for the event an Apply handler is applying, if
// any (see Prepare: the handler must cope without it).
func Prepared[T any](ctx context.Context) (T, bool) {
	v, ok := ctx.Value(preparedKey{}).(T)
	return v, ok
}

type preparedKey struct{}

type prepHandler struct {
	typ  reflect.Type
	call func(ctx context.Context, envs []Envelope, evs []any) ([]any, error)
}

// preparedBatch is a batch and, for a projection with Prepare handlers, the values they returned
// (vals[i] for events[i], nil when none).
type preparedBatch struct {
	lb   *localBatch
	vals []any
}

// resolvePrepares maps the Prepare handlers' Go types to event type names.
func (p *Projection) resolvePrepares() error {
	if len(p.preps) == 0 {
		return nil
	}
	p.prepByType = make(map[string]prepHandler, len(p.preps))
	for _, h := range p.preps {
		name, err := p.b.codec.NameOf(h.typ)
		if err != nil {
			return fmt.Errorf("bus: projection %s: %w", p.name, err)
		}
		if _, dup := p.prepByType[name]; dup {
			return fmt.Errorf("bus: projection %s has two prepare handlers for %s", p.name, name)
		}
		if _, ok := p.byType[name]; !ok {
			return fmt.Errorf("bus: projection %s prepares %s, which it has no Apply handler for", p.name, name)
		}
		p.prepByType[name] = h
	}
	return nil
}

// prepareLoop runs the Prepare handlers on each batch of the inbox, in order, and passes it on to
// feed: a batch is prepared while the projection applies the one before.
func (p *Projection) prepareLoop(ctx context.Context, out chan<- preparedBatch, wg *sync.WaitGroup) {
	defer wg.Done()
	for {
		var lb *localBatch
		select {
		case <-ctx.Done():
			return
		case lb = <-p.inbox:
		}
		pb := preparedBatch{lb: lb, vals: p.prepare(ctx, lb)}
		select {
		case <-ctx.Done():
			return
		case out <- pb:
		}
	}
}

// prepare calls each Prepare handler with the batch's events of its type; nil when none returned a
// value. A failing handler is logged: the Apply handlers do the work themselves.
func (p *Projection) prepare(ctx context.Context, lb *localBatch) []any {
	var vals []any
	for typ, h := range p.prepByType {
		var idx []int
		var envs []Envelope
		var evs []any
		for i := range lb.events {
			d := &lb.events[i]
			if d.env.Type != typ || uint64(d.env.Position) <= p.progress.Load() {
				continue
			}
			if v, ok, err := d.as(h.typ); ok && err == nil {
				idx = append(idx, i)
				envs = append(envs, d.env)
				evs = append(evs, v)
			}
		}
		if len(idx) == 0 {
			continue
		}
		out, err := callPrepare(context.WithoutCancel(ctx), h, envs, evs)
		if err != nil {
			p.warn("prepare handler failed; the events are applied without what it prepares", "type", typ, "events", len(idx), "err", err)
			continue
		}
		for j, v := range out {
			if j >= len(idx) || v == nil {
				continue
			}
			if vals == nil {
				vals = make([]any, len(lb.events))
			}
			vals[idx[j]] = v
		}
	}
	return vals
}

func callPrepare(ctx context.Context, h prepHandler, envs []Envelope, evs []any) (out []any, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic in prepare handler: %v", r)
		}
	}()
	return h.call(ctx, envs, evs)
}
