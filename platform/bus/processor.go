package bus

import (
	"context"
	"fmt"
	"reflect"
)

// Processor is a consumer that acts once per deployment (webhooks, retention sweeps, writes to an
// external index): on NATS JetStream, a durable consumer shared by every replica; on GoChannel, an
// in-process consumer with its own checkpoint. Delivery is at least once: key a side effect by the
// envelope's ID (or Position) so that a redelivery is harmless.
type Processor struct {
	b        *Bus
	name     string
	handlers []procHandler
	d        *durable // built by Run
}

type procHandler struct {
	typ  reflect.Type // the event's registered type
	into reflect.Type // what its data is decoded into for the handler: typ, or a view of it (HandleView)
	call func(ctx context.Context, env Envelope, v any) error
}

// Processor implements Consumers. The name is durable (it is the consumer group and names the
// checkpoint): never rename it.
func (b *Bus) Processor(name string) *Processor {
	q := &Processor{b: b, name: name}
	b.register(name, "processor", func() { b.processors = append(b.processors, q) })
	return q
}

// Handle registers h for the events whose data is a T (a type registered on the codec). The
// context carries the event's tenant and request id. In process a T holds data shared with the
// other processors' handlers of the same event (it is decoded once): read it, do not modify it.
func Handle[T any](q *Processor, h func(ctx context.Context, env Envelope, ev T) error) {
	HandleView[T, T](q, h) // T is the whole of itself: nothing to check, decoded as T
}

// HandleView is Handle for a handler that takes only some fields of T: the events of type T are
// decoded for it into V, a view of T (see ApplyView), which skips the rest of the data.
func HandleView[T, V any](q *Processor, h func(ctx context.Context, env Envelope, v V) error) {
	q.b.mu.Lock()
	defer q.b.mu.Unlock()
	if q.b.started {
		q.b.log.Error("bus: processor handler added after Run; ignored", "processor", q.name, "type", reflect.TypeFor[T]().String())
		return
	}
	q.handlers = append(q.handlers, procHandler{typ: reflect.TypeFor[T](), into: reflect.TypeFor[V](), call: func(ctx context.Context, env Envelope, v any) error {
		return h(ctx, env, v.(V))
	}})
}

// resolve builds the processor's durable consumer for the event types of its handlers.
func (q *Processor) resolve() error {
	if len(q.handlers) == 0 {
		return fmt.Errorf("bus: processor %s has no handlers (add them with bus.Handle)", q.name)
	}
	byType := make(map[string]procHandler, len(q.handlers))
	for _, h := range q.handlers {
		name, err := q.b.codec.NameOf(h.typ)
		if err != nil {
			return fmt.Errorf("bus: processor %s: %w", q.name, err)
		}
		if _, dup := byType[name]; dup {
			return fmt.Errorf("bus: processor %s has two handlers for %s", q.name, name)
		}
		if h.into != h.typ {
			if err := q.b.codec.CheckView(name, h.into); err != nil {
				return fmt.Errorf("bus: processor %s: %w", q.name, err)
			}
		}
		byType[name] = h
	}
	q.d = newDurable(q.name, byType, q.b)
	return nil
}
