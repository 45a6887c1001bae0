package bus

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/request"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// durable is one processor's Watermill consumer, with its own checkpoint and dedupe.
type durable struct {
	name     string
	dispatch map[string]procHandler // its handler by event type: other types are not its
	b        *Bus
	actor    string // the actor of what its handlers append ("system:bus/<name>")
	idx      int    // its place in Bus.durables

	ordered bool
	cp      *slotFile     // ordered transports only
	done    atomic.Uint64 // position of the last event finished (ordered transports only)
	// abandoned is the position of the event the processor gave up at when the bus stopped while it
	// waited for a dependency (ordered transports only): it and the events after it are left to the
	// next run, and the forwarder's cursor does not move past it.
	abandoned atomic.Uint64
	recent    *recentIDs
	waiting   waiting // set while the handler waits out an unavailable dependency

	handled, failed, dupes counter
}

// decoded is an event as the handler call receives it: with its data decoded.
type decoded struct {
	e eventstore.Event
	v any
}

func newDurable(name string, dispatch map[string]procHandler, b *Bus) *durable {
	d := &durable{name: name, dispatch: dispatch, b: b, recent: newRecentIDs(b.cfg.DedupeSize),
		actor:   "system:bus/" + name,
		handled: b.m.counter("crispy_bus_handled_events_total", name),
		failed:  b.m.counter("crispy_bus_failed_events_total", name),
		dupes:   b.m.counter("crispy_bus_duplicate_events_total", name)}
	return d
}

// call runs the handler of ev's type, a panic turned into an error.
func (d *durable) call(ctx context.Context, ev decoded) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic in handler %s: %v", d.name, r)
		}
	}()
	return d.dispatch[ev.e.Type].call(ctx, envelopeOf(ev.e), ev.v)
}

// callRetrying calls the handler, retrying a failure up to MaxRetries times with a doubling wait
// (RetryInitial up to RetryMax). An unavailable dependency is returned at once: handle waits it
// out without a retry budget. (Watermill's Retry middleware did the same with a backoff object, a
// timer and a closure per message: in a first start of crispy serve, a third of what a processor's
// event cost.)
func (d *durable) callRetrying(ctx context.Context, ev decoded) error {
	wait := d.b.cfg.RetryInitial
	for retry := 0; ; retry++ {
		err := d.call(ctx, ev)
		if err == nil || Unavailable(err) || retry >= d.b.cfg.MaxRetries {
			return err
		}
		d.b.log.Warn("bus: handler failed; retrying", "handler", d.name, "retry", retry+1, "in", wait, "err", err)
		if !sleepCtx(ctx, wait) {
			return err
		}
		wait = min(2*wait, d.b.cfg.RetryMax)
	}
}

// open loads the handler's checkpoint. A handler seen for the first time starts where the forwarder
// resumes: it handles events forwarded from now on.
func (d *durable) open(from eventstore.Position, ordered bool) error {
	d.ordered = ordered
	if !ordered {
		return nil
	}
	path := filepath.Join(d.b.cfg.CheckpointDir, "handler-"+safeName(d.name)+".ckpt")
	cp, pos, found, err := openSlotFile(path)
	if err != nil {
		return fmt.Errorf("bus: handler %s: %w", d.name, err)
	}
	if !found {
		pos = uint64(from)
		if err := cp.set(pos); err != nil {
			cp.close()
			return fmt.Errorf("bus: handler %s: %w", d.name, err)
		}
	}
	d.cp = cp
	d.done.Store(pos)
	return nil
}

// localTopic is the processor's own in-process topic (GoChannel).
func (d *durable) localTopic(shared string) string { return shared + "." + safeName(d.name) }

func (d *durable) sync() error {
	if d.cp == nil {
		return nil
	}
	return d.cp.sync()
}

func (d *durable) close() error {
	if d.cp == nil {
		return nil
	}
	err := d.cp.close()
	d.cp = nil
	return err
}

// handle is the Watermill handler. It returns an error only when the bus is shutting down mid-event
// (the message is nacked and comes again); any other failure has been retried, then logged and
// counted, and the event is passed so one bad event never holds the bus. In process a message
// carries the processor's events of a forwarded batch, in order (publishLocal); from a broker, one
// event.
func (d *durable) handle(msg *message.Message) error {
	if batch, ok := msg.Context().Value(inProcessBatch{}).([]*delivered); ok {
		for _, local := range batch {
			if err := d.handleEvent(msg.Context(), local.e, local); err != nil {
				return err // comes again whole: the events before it are at or below the checkpoint
			}
		}
		return nil
	}
	e, err := fromMessage(msg)
	if err == nil && d.b.open != nil {
		// From a broker: the event as stored, opened here (sealed content never rides the broker).
		if e, err = d.b.open(msg.Context(), e); Unavailable(err) {
			return fmt.Errorf("handler %s: open %s at %d: %w", d.name, e.Type, e.Position, err) // comes again
		}
	}
	if err != nil {
		// Retrying cannot fix a message that does not decode.
		d.b.log.Error("bus: undecodable message dropped", "handler", d.name, "message", msg.UUID, "err", err)
		d.failed.Inc()
		return nil
	}
	return d.handleEvent(msg.Context(), e, nil)
}

// handleEvent handles one event (local: as published in process, with its data decoded by the
// cursor; nil from a broker). mctx is its message's context.
func (d *durable) handleEvent(mctx context.Context, e eventstore.Event, local *delivered) error {
	var err error
	h, ok := d.dispatch[e.Type]
	if !ok {
		return nil
	}
	if d.recent.has(e.ID) || (d.ordered && uint64(e.Position) <= d.done.Load()) {
		d.dupes.Inc()
		return nil
	}
	if d.ordered && d.abandoned.Load() != 0 {
		return nil // after the event given up at stop: the next run handles both, in order
	}
	ev := decoded{e: e}
	decodedByCursor := false
	if local != nil && local.d.env.ID == e.ID {
		ev.v, decodedByCursor, err = local.d.as(h.into)
	}
	if !decodedByCursor {
		ev.v, err = d.b.codec.DecodeAs(e.Type, h.into, e.Data)
	}
	if err != nil {
		// Retrying cannot fix data that does not decode.
		d.b.log.Error("bus: processor cannot decode event; passed", "processor", d.name, "type", e.Type,
			"position", e.Position, "event", e.ID, "err", err)
		d.failed.Inc()
		d.finished(e)
		return nil
	}
	ctx := handlerContext(mctx, e, d.actor)
	began := time.Now()
	var backoff time.Duration
	for {
		err = d.callRetrying(ctx, ev)
		if !Unavailable(err) || mctx.Err() != nil {
			break
		}
		// A dependency is down: the event waits for it, however long, and is never passed.
		if !d.ordered && time.Since(began) > d.b.cfg.AckWait/2 {
			// On the broker: give the event back before its ack wait runs out; it comes again.
			return fmt.Errorf("handler %s: %s at %d waits for an unavailable dependency: %w", d.name, e.Type, e.Position, err)
		}
		if !d.b.waitUnavailable(mctx, &d.waiting, &backoff, "processor", d.name, err) {
			if d.ordered {
				// In process, a nack is delivered again at once, and the forwarder's publish (so the
				// bus's stop) would wait for ever. The event is acked without being finished instead;
				// the forwarder keeps its cursor before it, so the next run publishes it again.
				d.abandoned.CompareAndSwap(0, uint64(e.Position))
				d.b.log.Warn("bus: processor stopped while waiting for a dependency; the event is left to the next start",
					"processor", d.name, "type", e.Type, "position", e.Position, "err", err)
				return nil
			}
			return fmt.Errorf("handler %s: %s at %d interrupted while waiting for an unavailable dependency: %w", d.name, e.Type, e.Position, err)
		}
	}
	if err == nil && d.waiting.clear() {
		d.b.log.Info("bus: processor's dependency is back", "processor", d.name)
	}
	if err != nil {
		if mctx.Err() != nil {
			return fmt.Errorf("handler %s: %s at %d interrupted: %w", d.name, e.Type, e.Position, err)
		}
		d.b.log.Error("bus: handler gave up on event", "handler", d.name, "type", e.Type, "tenant", e.Tenant.String(),
			"stream", e.Stream, "position", e.Position, "event", e.ID, "err", err)
		d.failed.Inc()
	} else {
		d.handled.Inc()
	}
	d.finished(e)
	return nil
}

// finished records that e is done with: its id for the dedupe, its position as the checkpoint.
func (d *durable) finished(e eventstore.Event) {
	d.recent.add(e.ID)
	if d.ordered {
		d.done.Store(uint64(e.Position))
		if err := d.cp.set(uint64(e.Position)); err != nil {
			d.b.log.Error("bus: handler checkpoint", "handler", d.name, "err", err)
		}
	}
}

// handlerContext carries the event's tenant and request into the handler, so whatever it appends
// lands in the same tenant and correlates with the request that caused it.
func handlerContext(ctx context.Context, e eventstore.Event, actor string) context.Context {
	ctx = tenant.WithID(ctx, e.Tenant)
	return request.With(ctx, request.Info{ID: e.RequestID, Actor: actor})
}

// recentIDs remembers the last n event ids: redeliveries of an event just handled are dropped.
type recentIDs struct {
	mu   sync.Mutex
	set  map[string]struct{}
	ring []string
	next int
}

func newRecentIDs(n int) *recentIDs {
	return &recentIDs{set: make(map[string]struct{}, n), ring: make([]string, n)}
}

func (r *recentIDs) has(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.set[id]
	return ok
}

func (r *recentIDs) add(id string) {
	if len(r.ring) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.set[id]; ok {
		return
	}
	if old := r.ring[r.next]; old != "" {
		delete(r.set, old)
	}
	r.ring[r.next] = id
	r.set[id] = struct{}{}
	r.next = (r.next + 1) % len(r.ring)
}
