package bus

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/health"
	"github.com/crispy-enigma/crispy/platform/readmodel"
	"github.com/crispy-enigma/crispy/platform/request"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// ProjectionOptions configure a projection.
type ProjectionOptions struct {
	// What names the read model in a 503 catching_up answer ("tool execution statistics"). Default:
	// the projection's name.
	What string
	// Version is the format of the state the handlers write. Bump it when they change what they
	// write: the next start empties the read model and rebuilds it from the start of the store.
	Version uint64
	// OwnCursor reads the store for this projection alone, on a subscription of its own decoding
	// only the types it handles, instead of sharing one with the other projections. For a read
	// model whose handlers are slow by nature (the search index re-embeds every document): on a
	// shared cursor it would pace every other read model, through a first start or a rebuild as
	// through a burst of live events. It costs one more read of the store.
	OwnCursor bool
}

// projectionName keeps a projection's file name (<ReadModelDir>/<name>.db) readable and safe.
var projectionName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// Projection is a checkpointed read model: its state and the position it reflects live in one bbolt
// file (platform/readmodel), fed by its Apply handlers in global order through the in-process
// transport. Queries read it with View, which refuses with 503 catching_up until it has caught up.
type Projection struct {
	b     *Bus
	name  string
	actor string // the actor in its handlers' context ("system:bus/<name>")
	opts  ProjectionOptions

	handlers   []projHandler                                                   // as registered
	all        func(ctx context.Context, tx *readmodel.Tx, env Envelope) error // ApplyAll's, if any
	byType     map[string]projHandler                                          // resolved by Run
	preps      []prepHandler                                                   // Prepare's, as registered
	prepByType map[string]prepHandler                                          // resolved by Run
	store      atomic.Pointer[readmodel.Store]                                 // opened by Run

	// The runner's state, touched only by its goroutine.
	base               context.Context // the handlers' context: the runner's, without its cancel
	tx                 *readmodel.Tx
	pending            []*delivery // applied in tx, not yet committed
	committed, applied eventstore.Position
	faultWait          time.Duration
	// The last tenant's context under base, reused by the next event of the same tenant (a batch
	// holds runs of one tenant's events): one allocation less per handler call.
	tenantCtx context.Context
	ctxTenant tenant.ID
	// And the last request's context under it, reused by the next event of the same request.
	reqCtx     context.Context
	ctxRequest string

	progress atomic.Uint64 // applied position, for /health
	reached  atomic.Uint64 // applied (and committed once caught up) or a live end passed: for Sync

	// Its place on the cursors (fanout.go): the batches handed to it and not yet applied wait in
	// inbox; queued counts them (with the one being applied); given is the last position handed;
	// grp is the group whose cursor hands it batches now.
	inbox    chan *localBatch
	queued   atomic.Int64
	given    atomic.Uint64
	grp      atomic.Pointer[group]
	target   atomic.Uint64 // the store's last position when Run started, for /health
	caughtUp chan struct{}
	once     sync.Once
	stopped  chan struct{} // closed when the runner returns
	fault    atomic.Pointer[error]
	waiting  waiting // set while a handler waits out an unavailable dependency
	started  time.Time
	reading  atomic.Int64 // when its first cursor started reading the store (unix ns)

	handled, failed counter
}

type projHandler struct {
	typ  reflect.Type // the event's registered type
	into reflect.Type // what its data is decoded into for the handler: typ, or a view of it (ApplyView)
	call func(ctx context.Context, tx *readmodel.Tx, env Envelope, v any) error
	// envOnly: the handler takes the envelope only (ApplyEnvelope), so its events need not be
	// decoded for it.
	envOnly bool
}

// Projection implements Consumers. The name is durable (it names the file under ReadModelDir):
// never rename it, or the read model is rebuilt under the new name.
func (b *Bus) Projection(name string, o ProjectionOptions) *Projection {
	if o.What == "" {
		o.What = name
	}
	p := &Projection{b: b, name: name, actor: "system:bus/" + name, opts: o, caughtUp: make(chan struct{}), stopped: make(chan struct{}),
		inbox:   make(chan *localBatch, inboxBatches),
		handled: b.m.counter("crispy_bus_projected_events_total", name),
		failed:  b.m.counter("crispy_bus_failed_events_total", name)}
	if name != "" && !projectionName.MatchString(name) {
		b.mu.Lock()
		b.regErr = errors.Join(b.regErr, fmt.Errorf("bus: projection name %q must match %s", name, projectionName))
		b.mu.Unlock()
		return p
	}
	b.register(name, "projection", func() { b.projections = append(b.projections, p) })
	return p
}

// Apply registers h for the events whose data is a T (a type registered on the codec). The bus
// calls it in global order with a write transaction on the read model: h updates the state through
// tx.Bucket() and nothing else (no I/O, no appends), since the transaction may be rolled back and
// the event applied again. A T holds data shared with the projection's other handlers: read it,
// do not modify it.
func Apply[T any](p *Projection, h func(ctx context.Context, tx *readmodel.Tx, env Envelope, ev T) error) {
	ApplyView[T, T](p, h) // T is the whole of itself: nothing to check, decoded as T
}

// ApplyView is Apply for a handler that takes only some fields of T: the events of type T are
// decoded for it into V, a view of T (a struct of T's fields it needs, each with T's name, JSON
// tag and type: codec.CheckView; Run refuses one that is not), which skips the rest of the data. A
// token ledger takes an answer's model and usage, not its kilobyte of content: the content is then
// not copied out of the event, nor left for the collector. Each event is still decoded once, by
// its cursor, through the one codec, into each Go type that the handlers sharing the cursor take:
// when every handler of T takes the same view, T itself is never decoded. An event whose data does
// not decode into V is passed as for Apply (data that decodes into V but not into T is applied).
func ApplyView[T, V any](p *Projection, h func(ctx context.Context, tx *readmodel.Tx, env Envelope, v V) error) {
	p.b.mu.Lock()
	defer p.b.mu.Unlock()
	if p.b.started {
		p.b.log.Error("bus: projection handler added after Run; ignored", "projection", p.name, "type", reflect.TypeFor[T]().String())
		return
	}
	p.handlers = append(p.handlers, projHandler{typ: reflect.TypeFor[T](), into: reflect.TypeFor[V](), call: func(ctx context.Context, tx *readmodel.Tx, env Envelope, v any) error {
		return h(ctx, tx, env, v.(V))
	}})
}

// ApplyEnvelope registers h for the events of type T (a type registered on the codec) when h needs
// only their envelope: a session list that counts messages by stream and time, say. The cursor then
// does not decode T's data for this projection, and not at all when no other projection sharing
// the cursor (nor a Prepare handler) needs it: decoding is most of what a catch-up costs, and the
// messages of a chat history are most of its events. h is called whether or not the data decodes
// (another projection may find it undecodable). The same rules as Apply hold otherwise.
func ApplyEnvelope[T any](p *Projection, h func(ctx context.Context, tx *readmodel.Tx, env Envelope) error) {
	p.b.mu.Lock()
	defer p.b.mu.Unlock()
	if p.b.started {
		p.b.log.Error("bus: projection handler added after Run; ignored", "projection", p.name, "type", reflect.TypeFor[T]().String())
		return
	}
	p.handlers = append(p.handlers, projHandler{typ: reflect.TypeFor[T](), envOnly: true, call: func(ctx context.Context, tx *readmodel.Tx, env Envelope, _ any) error {
		return h(ctx, tx, env)
	}})
}

// addDecoded adds to ts the event types whose data the projection's handlers take (Apply,
// ApplyView or Prepare) and the Go types they take it as: what its cursor decodes for it.
func (p *Projection) addDecoded(ts decodeSet) {
	for t, h := range p.byType {
		if !h.envOnly {
			ts.add(t, h.into)
		}
		if prep, ok := p.prepByType[t]; ok {
			ts.add(t, prep.typ)
		}
	}
}

// ApplyAll registers h for every event of every tenant, whatever its type and whether or not its data
// decodes, before any typed handler of the same event. It gets the envelope only (with the stored
// Hash), for state derived from the log itself rather than from event data: the audit Merkle log.
// The same rules as Apply hold (update tx only; the event may be applied again after a rollback).
func ApplyAll(p *Projection, h func(ctx context.Context, tx *readmodel.Tx, env Envelope) error) {
	p.b.mu.Lock()
	defer p.b.mu.Unlock()
	if p.b.started {
		p.b.log.Error("bus: projection handler added after Run; ignored", "projection", p.name, "type", "all")
		return
	}
	p.all = h
}

// resolve maps the handlers' Go types to event type names through the codec.
func (p *Projection) resolve() error {
	if len(p.handlers) == 0 && p.all != nil {
		p.byType = map[string]projHandler{}
		return nil
	}
	if len(p.handlers) == 0 {
		return fmt.Errorf("bus: projection %s has no handlers (add them with bus.Apply)", p.name)
	}
	p.byType = make(map[string]projHandler, len(p.handlers))
	for _, h := range p.handlers {
		name, err := p.b.codec.NameOf(h.typ)
		if err != nil {
			return fmt.Errorf("bus: projection %s: %w", p.name, err)
		}
		if _, dup := p.byType[name]; dup {
			return fmt.Errorf("bus: projection %s has two handlers for %s", p.name, name)
		}
		if h.into != h.typ && !h.envOnly {
			if err := p.b.codec.CheckView(name, h.into); err != nil {
				return fmt.Errorf("bus: projection %s: %w", p.name, err)
			}
		}
		p.byType[name] = h
	}
	return p.resolvePrepares()
}

// Name is the projection's durable name.
func (p *Projection) Name() string { return p.name }

// Ready is nil once the projection has caught up with the store, an *apperr.Error (503
// catching_up, or storage_unavailable while its file cannot be written) otherwise. A query that
// must not serve partial truth returns it.
func (p *Projection) Ready() error {
	if !p.isCaughtUp() {
		return apperr.CatchingUp(p.opts.What, 2)
	}
	if f := p.fault.Load(); f != nil {
		e := apperr.Wrap(*f, apperr.KindUnavailable, "storage_unavailable", p.opts.What+" cannot be updated: its storage is failing; retry shortly")
		e.RetryAfterSec = 5
		return e
	}
	return nil
}

// View runs fn on a consistent snapshot of the read model once it is Ready (else returns why not).
func (p *Projection) View(ctx context.Context, fn func(tx *readmodel.Tx) error) error {
	if err := p.Ready(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s := p.store.Load()
	if s == nil {
		return apperr.CatchingUp(p.opts.What, 2)
	}
	return s.View(fn)
}

// Check reports the projection for /health: nil when caught up, health.CatchingUpState with its
// progress (positions) while catching up, an error when it stopped or its file cannot be written.
func (p *Projection) Check(context.Context) error {
	if f := p.fault.Load(); f != nil {
		return fmt.Errorf("read model %s: %w", p.name, *f)
	}
	if err := p.waiting.check("read model", p.name); err != nil {
		return err
	}
	if p.isCaughtUp() {
		select {
		case <-p.stopped:
			return fmt.Errorf("read model %s: stopped", p.name)
		default:
			return nil
		}
	}
	return health.CatchingUpState("read model "+p.name+" is catching up with the event store", p.progress.Load(), p.target.Load())
}

// WaitCaughtUp blocks until the projection has caught up, or fails when it cannot (the bus stopped
// or never ran).
func (p *Projection) WaitCaughtUp(ctx context.Context) error {
	select {
	case <-p.caughtUp:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("bus: projection %s catching up (at %d of %d): %w", p.name, p.progress.Load(), p.target.Load(), ctx.Err())
	case <-p.stopped:
	case <-p.b.exited:
	}
	if p.isCaughtUp() {
		return nil
	}
	return fmt.Errorf("bus: projection %s stopped before it caught up", p.name)
}

func (p *Projection) isCaughtUp() bool {
	select {
	case <-p.caughtUp:
		return true
	default:
		return false
	}
}

// delivery is one event as the consumers receive it: decoded once by their cursor into each Go
// type their handlers take it as (into, and more: rarely more than one), shared by the consumers
// of the cursor (read-only).
type delivery struct {
	env  Envelope
	into reflect.Type // what ev was decoded into (nil: not decoded)
	ev   any
	err  error // decoding into into failed
	more []decodedAs
}

// decodedAs is an event's data decoded into one more Go type.
type decodedAs struct {
	into reflect.Type
	ev   any
	err  error
}

// as is d's data decoded into t: the value, or why it did not decode; ok false when the cursor did
// not decode it into t.
func (d *delivery) as(t reflect.Type) (v any, ok bool, err error) {
	if d.into == t {
		return d.ev, true, d.err
	}
	for _, m := range d.more {
		if m.into == t {
			return m.ev, true, m.err
		}
	}
	return nil, false, nil
}

// decodeSet is, per event type, the Go types its data is decoded into (the registered type and
// views of it, each once).
type decodeSet map[string][]reflect.Type

func (s decodeSet) add(name string, t reflect.Type) {
	if !slices.Contains(s[name], t) {
		s[name] = append(s[name], t)
	}
}

// localBatch is the payload of one in-process message: events in order, and whether the
// subscription reached its live end right after them.
type localBatch struct {
	events   []delivery
	caughtUp bool
	at       eventstore.Position
}

type localBatchKey struct{}

// open opens the projection's file and loads its checkpoint.
func (p *Projection) open(dir string, target eventstore.Position) error {
	path := filepath.Join(dir, p.name+".db")
	s, err := readmodel.Open(path, readmodel.Options{Version: p.opts.Version, Log: p.b.log.With("projection", p.name)})
	if err != nil {
		return fmt.Errorf("bus: projection %s: %w: %w", p.name, ErrReadModelDir, err)
	}
	p.store.Store(s)
	p.committed = s.Position()
	p.applied = p.committed
	p.progress.Store(uint64(p.committed))
	p.target.Store(uint64(target))
	if why := s.Rebuilt(); why != "" {
		p.b.log.Info("bus: projection builds from the start of the store", "projection", p.name, "why", why, "file", path)
	} else {
		p.b.log.Info("bus: projection resumes from its checkpoint", "projection", p.name, "position", p.committed, "storeAt", target)
	}
	return nil
}

func (p *Projection) close() error {
	s := p.store.Load()
	if s == nil {
		return nil
	}
	return s.Close()
}

// run applies the batches the forwarder publishes until msgs closes (its subscription's context
// ended), then commits what it applied.
func (p *Projection) run(ctx context.Context, msgs <-chan *message.Message) {
	defer close(p.stopped)
	p.started = time.Now()
	// The handler's context does not end with the bus: a projection applies what it was given, and
	// the stop waits for it.
	p.base = context.WithoutCancel(ctx)
	for msg := range msgs {
		if pb, ok := msg.Context().Value(localBatchKey{}).(preparedBatch); ok {
			p.handleBatch(ctx, pb.lb, pb.vals)
		}
		msg.Ack()
	}
	if p.tx != nil {
		// Every event in an open transaction was applied whole (a failure rolls it back at once).
		p.commit(ctx)
		if p.tx != nil {
			_ = p.tx.Rollback()
			p.tx = nil
		}
	}
}

// handleBatch applies lb in the open batch transaction (vals: what Prepare's handlers returned for
// its events, nil when none).
func (p *Projection) handleBatch(ctx context.Context, lb *localBatch, vals []any) {
	for i := range lb.events {
		d := &lb.events[i]
		if d.env.Position <= p.applied {
			continue // at or below the checkpoint: applied already
		}
		if p.tx == nil && !p.begin(ctx) {
			return // stopping
		}
		var v any
		if vals != nil {
			v = vals[i]
		}
		if err := p.applyOne(ctx, p.tx, d, v); err != nil {
			// Roll the batch transaction back, so the failed attempt leaves nothing, and go on one
			// event per transaction: the failing one is retried alone, then passed.
			_ = p.tx.Rollback()
			p.tx = nil
			rest := make([]*delivery, 0, len(p.pending)+len(lb.events)-i)
			rest = append(rest, p.pending...)
			for j := i; j < len(lb.events); j++ {
				rest = append(rest, &lb.events[j])
			}
			p.dropPending()
			p.applied = p.committed
			p.progress.Store(uint64(p.applied))
			p.warn("handler failed in a batch; applying it one event at a time", "err", err, "position", d.env.Position)
			if !p.applyEach(ctx, rest) {
				return
			}
			break
		}
		p.pending = append(p.pending, d)
		p.applied = d.env.Position
		p.progress.Store(uint64(p.applied))
	}
	live := lb.caughtUp || p.isCaughtUp()
	if p.tx != nil && (live || len(p.pending) >= p.b.cfg.CatchUpCommitEvery) {
		if !p.commit(ctx) {
			return
		}
	}
	reached := uint64(p.applied)
	if lb.caughtUp {
		reached = max(reached, uint64(lb.at))
	}
	if reached > p.reached.Load() {
		p.reached.Store(reached)
	}
	if lb.caughtUp {
		p.once.Do(func() {
			close(p.caughtUp)
			p.b.log.Info("bus: projection caught up", "projection", p.name, "position", p.committed, "liveEnd", lb.at,
				"took", time.Since(p.started).Round(time.Millisecond).String(), "reading", p.readingFor().String())
		})
	}
}

// readingFor is how long since its first cursor started reading the store: "took" less the wait of
// a projection on a cursor of its own for the shared read models (see startCursors).
func (p *Projection) readingFor() time.Duration {
	at := p.reading.Load()
	if at == 0 {
		return time.Since(p.started).Round(time.Millisecond)
	}
	return time.Since(time.Unix(0, at)).Round(time.Millisecond)
}

func (p *Projection) warn(msg string, args ...any) {
	p.b.log.Warn("bus: "+msg, append([]any{"projection", p.name}, args...)...)
}

func (p *Projection) dropPending() {
	clear(p.pending)
	p.pending = p.pending[:0]
}

// begin opens the batch transaction, waiting out storage failures; false when ctx ended first.
func (p *Projection) begin(ctx context.Context) bool {
	for {
		tx, err := p.store.Load().Begin()
		if err == nil {
			p.tx = tx
			return true
		}
		if !p.storageFault(ctx, err) {
			return false
		}
	}
}

// commit commits the batch transaction at the applied position. On failure the events of the
// transaction are applied again, one transaction each. False when ctx ended first.
func (p *Projection) commit(ctx context.Context) bool {
	err := p.tx.SetPosition(p.applied)
	if err == nil {
		err = p.tx.Commit()
	}
	if err == nil {
		p.tx = nil
		p.committed = p.applied
		p.dropPending()
		p.healed()
		return true
	}
	_ = p.tx.Rollback()
	p.tx = nil
	rest := append([]*delivery(nil), p.pending...)
	p.dropPending()
	p.applied = p.committed
	p.progress.Store(uint64(p.applied))
	if !p.storageFault(ctx, err) {
		return false
	}
	return p.applyEach(ctx, rest)
}

// applyEach applies events one transaction each (after a failure in a batch). False when ctx ended
// first.
func (p *Projection) applyEach(ctx context.Context, evs []*delivery) bool {
	for _, d := range evs {
		if d.env.Position <= p.committed {
			continue
		}
		if !p.applyAlone(ctx, d) {
			return false
		}
	}
	return true
}

// applyAlone applies d in a transaction of its own: a failing handler is retried with backoff, then
// the event is passed (logged and counted, its position still committed); a storage failure is
// waited out. False when ctx ended first.
func (p *Projection) applyAlone(ctx context.Context, d *delivery) bool {
	wait := p.b.cfg.RetryInitial
	var backoff time.Duration
	skip := false
	for attempt := 0; ; {
		tx, err := p.store.Load().Begin()
		if err != nil {
			if !p.storageFault(ctx, err) {
				return false
			}
			continue
		}
		if !skip {
			if err := p.applyOne(ctx, tx, d, nil); err != nil {
				_ = tx.Rollback()
				if Unavailable(err) {
					// A dependency is down: wait for it, however long; the event is never passed.
					// Its group learns that it is stuck, so it does not hold the others.
					p.waiting.set(err)
					p.kickGroup()
					if !p.b.waitUnavailable(ctx, &p.waiting, &backoff, "projection", p.name, err) {
						return false
					}
					continue
				}
				if attempt >= p.b.cfg.MaxRetries {
					p.b.log.Error("bus: projection gave up on event", "projection", p.name, "type", d.env.Type,
						"tenant", d.env.Tenant.String(), "position", d.env.Position, "event", d.env.ID, "err", err)
					p.failed.Inc()
					skip = true
					continue
				}
				p.warn("projection failed; retrying", "retry", attempt+1, "in", wait, "err", err)
				if !sleepCtx(ctx, wait) {
					return false
				}
				wait = min(2*wait, p.b.cfg.RetryMax)
				attempt++
				continue
			}
		}
		err = tx.SetPosition(d.env.Position)
		if err == nil {
			err = tx.Commit()
		}
		if err != nil {
			_ = tx.Rollback()
			if !p.storageFault(ctx, err) {
				return false
			}
			continue
		}
		p.healed()
		if p.waiting.clear() {
			p.b.log.Info("bus: projection's dependency is back", "projection", p.name)
		}
		p.committed, p.applied = d.env.Position, d.env.Position
		p.progress.Store(uint64(p.applied))
		return true
	}
}

// applyOne calls the handler of d's type, if any, with prepared (Prepare's value for d, nil when
// none) in its context. An event whose data did not decode is logged, counted and passed: no retry
// can fix it.
func (p *Projection) applyOne(ctx context.Context, tx *readmodel.Tx, d *delivery, prepared any) (err error) {
	if p.all != nil {
		if err := p.applyAll(ctx, tx, d); err != nil {
			return err
		}
	}
	h, ok := p.byType[d.env.Type]
	if !ok {
		return nil
	}
	var v any
	if !h.envOnly {
		var derr error
		v, ok, derr = d.as(h.into)
		if !ok {
			// Every cursor decodes what its projections take; should one not have, say so.
			derr = fmt.Errorf("not decoded into %v by the cursor", h.into)
		}
		if derr != nil {
			p.b.log.Error("bus: projection cannot decode event; passed", "projection", p.name, "type", d.env.Type,
				"position", d.env.Position, "event", d.env.ID, "err", derr)
			p.failed.Inc()
			return nil
		}
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic in handler: %v", r)
		}
	}()
	hctx := p.envContext(ctx, d.env)
	if prepared != nil {
		hctx = context.WithValue(hctx, preparedKey{}, prepared)
	}
	if err := h.call(hctx, tx, d.env, v); err != nil {
		return err
	}
	p.handled.Inc()
	return nil
}

func (p *Projection) applyAll(ctx context.Context, tx *readmodel.Tx, d *delivery) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic in handler: %v", r)
		}
	}()
	if err := p.all(p.envContext(ctx, d.env), tx, d.env); err != nil {
		return err
	}
	if _, typed := p.byType[d.env.Type]; !typed {
		p.handled.Inc()
	}
	return nil
}

// storageFault records a read model file failure and waits before the next attempt; false when ctx
// ended first.
func (p *Projection) storageFault(ctx context.Context, err error) bool {
	p.fault.Store(&err)
	p.kickGroup()
	if p.faultWait == 0 {
		p.faultWait = p.b.cfg.RetryInitial
	}
	p.b.log.Error("bus: projection cannot write its read model; retrying", "projection", p.name, "in", p.faultWait, "err", err)
	ok := sleepCtx(ctx, p.faultWait)
	p.faultWait = min(2*p.faultWait, p.b.cfg.RetryMax)
	return ok
}

func (p *Projection) healed() {
	if p.fault.Load() != nil {
		p.fault.Store(nil)
		p.b.log.Info("bus: projection writes its read model again", "projection", p.name)
	}
	p.faultWait = 0
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// handlerBase is the context the handlers' contexts derive from: ctx without its cancel (made once
// per run rather than once per event and handler).
func (p *Projection) handlerBase(ctx context.Context) context.Context {
	if p.base != nil {
		return p.base
	}
	return context.WithoutCancel(ctx)
}

// envContext carries the event's tenant and request into a handler (actor: the projection's). The
// tenant's layer is reused from the previous event of the same tenant (a batch holds runs of one
// tenant's events), and the request's from the previous event of the same request and tenant:
// allocations less per handler call. Called on the runner's goroutine only.
func (p *Projection) envContext(ctx context.Context, env Envelope) context.Context {
	info := request.Info{ID: env.RequestID, Actor: p.actor}
	if p.base == nil {
		return request.With(tenant.WithID(p.handlerBase(ctx), env.Tenant), info)
	}
	if p.tenantCtx == nil || p.ctxTenant != env.Tenant {
		p.tenantCtx, p.ctxTenant = tenant.WithID(p.base, env.Tenant), env.Tenant
		p.reqCtx = nil
	}
	// Events of one request come in a row (a turn's message and answer): their handlers share the
	// request's layer too.
	if p.reqCtx == nil || p.ctxRequest != env.RequestID {
		p.reqCtx, p.ctxRequest = request.With(p.tenantCtx, info), env.RequestID
	}
	return p.reqCtx
}
