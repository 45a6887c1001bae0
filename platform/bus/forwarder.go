package bus

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/crispy-enigma/crispy/platform/eventstore"
)

// forwardBatch bounds how many events one publish carries. A broker acknowledges a batch with one
// wait instead of a round trip per event; the in-process projections get a batch as one message.
const forwardBatch = 512

// cursor is one path of the forwarder: where it is in the store and where its events go. The
// processors' cursor publishes each event to the shared transport; a projection group's cursor
// hands batches to its projections (fanout.go), with the store's live end.
type cursor struct {
	name    string
	pos     atomic.Uint64 // position of the last event published
	liveEnd atomic.Uint64 // the live end the subscription last reported and the cursor passed on
	err     atomic.Pointer[error]
	joined  atomic.Bool // its projections joined the main group: the cursor ended, not failed
	// wantsEnd asks the subscription to report its live end, which publish then passes on.
	wantsEnd bool
	// prepare, when set, turns an event into its delivery (prepareBatch): decoding a batch overlaps
	// with the subscription reading the next events and the consumers handling the previous batch.
	prepare func(e eventstore.Event) delivery
	// publish sends batch (events after pos, in order) and, when end is set, the live end after it.
	publish func(ctx context.Context, batch []item, end *eventstore.Position) error
	// g is the projection group the cursor feeds (nil: the processors' cursor): while the cursor
	// waits for the store it also serves the group's wake-ups and, for the main group, joins.
	g *group
}

// item is what the store subscription hands the forwarding loop: an event (prepared when the
// cursor prepares), or its live end.
type item struct {
	e       eventstore.Event
	d       delivery
	isEnd   bool
	liveEnd eventstore.Position
}

// forward tails the store (every tenant) from the position after the cursor and publishes each
// event: the store is the outbox. A failed publish restarts the subscription from the last event
// published, after a backoff, so nothing is skipped and order is kept.
func (b *Bus) forward(ctx context.Context, c *cursor) {
	wait := b.cfg.RetryInitial
	for {
		err := b.forwardOnce(ctx, c)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, errJoined) {
			c.joined.Store(true)
			return
		}
		if err == nil {
			err = errors.New("store subscription ended")
		}
		c.err.Store(&err)
		b.m.forwardErrors.Inc()
		at := c.pos.Load()
		if errors.Is(err, eventstore.ErrClosed) {
			b.log.Error("bus: forwarder stopped: event store closed", "cursor", c.name, "at", at)
			return
		}
		if errors.Is(err, eventstore.ErrCorrupt) {
			// Reading again reads the same bytes: stop the bus (and the server) with the cause.
			b.log.Error("bus: forwarder stopped: the event store is corrupt", "cursor", c.name, "at", at, "err", err)
			select { // several cursors may find it; Run needs one
			case b.fatal <- fmt.Errorf("bus: the event store cannot be read after position %d: %w; run crispy verify to locate the damage", at, err):
			default:
			}
			return
		}
		b.log.Error("bus: forwarder failed; retrying", "cursor", c.name, "at", at, "retryIn", wait, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, b.cfg.RetryMax)
	}
}

// forwardOnce runs one store subscription from the event after the cursor. The subscription reads
// ahead into a buffer while the previous batch is being published.
func (b *Bus) forwardOnce(ctx context.Context, c *cursor) error {
	subCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	items := make(chan item, forwardBatch)
	subDone := make(chan error, 1)
	opts := eventstore.SubscribeOptions{From: eventstore.Position(c.pos.Load()) + 1}
	if c.wantsEnd {
		// Called after every event up to at was handed over: the marker follows them in the buffer.
		opts.CaughtUp = func(ctx context.Context, at eventstore.Position) error {
			select {
			case items <- item{isEnd: true, liveEnd: at}:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	go func() {
		// The processors' events go to a broker as stored (sealed); everything delivered in this
		// process is opened here.
		open := b.open
		if c == b.shared && !b.tr.ordered {
			open = nil
		}
		subDone <- b.store.Subscribe(subCtx, opts, func(ctx context.Context, e eventstore.Event) error {
			if open != nil {
				var err error
				if e, err = open(ctx, e); err != nil {
					return err
				}
			}
			select {
			case items <- item{e: e}:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	var kick <-chan struct{}
	var joins <-chan joinReq
	if c.g != nil {
		kick, joins = c.g.kick, c.g.joins
	}
	batch := make([]item, 0, forwardBatch)
	for {
		batch = batch[:0]
		var end *eventstore.Position
		select {
		case <-kick:
			if err := c.g.idle(); err != nil {
				cancel()
				<-subDone
				return err
			}
			continue
		case r := <-joins:
			c.g.accept(r)
			continue
		case it := <-items:
			if it.isEnd {
				end = &it.liveEnd
			} else {
				batch = append(batch, it)
			}
		case err := <-subDone:
			// Events still buffered are dropped: the next subscription starts after the last one
			// published and delivers them again.
			return err
		}
	more:
		for end == nil && len(batch) < forwardBatch {
			select {
			case it := <-items:
				if it.isEnd {
					end = &it.liveEnd
				} else {
					batch = append(batch, it)
				}
			default:
				break more
			}
		}
		c.prepareBatch(batch)
		if err := c.publish(ctx, batch, end); err != nil {
			cancel()
			<-subDone
			return err
		}
		if end != nil {
			c.liveEnd.Store(max(c.liveEnd.Load(), uint64(*end)))
		}
		if c.err.Load() != nil {
			c.err.Store(nil)
		}
	}
}

// prepareBatch prepares a batch's events on the forwarding goroutine, in parts on as many
// goroutines as there are processors for a large batch: decoding event data is most of what a
// projection cursor costs (measured: JSON decoding took twice the time of reading the log in a
// first start of crispy serve), so the subscription's goroutine only reads.
func (c *cursor) prepareBatch(batch []item) {
	if c.prepare == nil || len(batch) == 0 {
		return
	}
	parts := min(runtime.GOMAXPROCS(0), len(batch)/minPreparePart)
	if parts <= 1 {
		for i := range batch {
			batch[i].d = c.prepare(batch[i].e)
		}
		return
	}
	var wg sync.WaitGroup
	size := (len(batch) + parts - 1) / parts
	for from := 0; from < len(batch); from += size {
		part := batch[from:min(from+size, len(batch))]
		wg.Go(func() {
			for i := range part {
				part[i].d = c.prepare(part[i].e)
			}
		})
	}
	wg.Wait()
}

// minPreparePart is the fewest events worth a goroutine of their own in prepareBatch.
const minPreparePart = 64

// publishShared sends a batch to the processors' transport in order: to a broker every event, on
// the one shared topic; in process, see publishLocal.
func (b *Bus) publishShared(ctx context.Context, batch []item, _ *eventstore.Position) error {
	if b.tr.ordered {
		return b.publishLocal(ctx, batch)
	}
	c := b.shared
	done := c.pos.Load()
	msgs := make([]*message.Message, 0, len(batch))
	for _, it := range batch {
		e := it.e
		if uint64(e.Position) <= done {
			continue // a resubscription never repeats an event, but the checkpoint is the rule
		}
		// The broker carries only the payload. WithoutCancel: the handlers finish what the
		// forwarder published before it stopped.
		m, err := toMessage(e)
		if err != nil {
			return err
		}
		m.SetContext(context.WithoutCancel(ctx))
		msgs = append(msgs, m)
	}
	first, last := batch[0].e, batch[len(batch)-1].e
	if len(msgs) == 0 {
		c.pos.Store(max(done, uint64(last.Position)))
		return nil
	}
	if err := b.tr.publisher.Publish(b.cfg.topic(), msgs...); err != nil {
		return fmt.Errorf("publish events %d..%d: %w", first.Position, last.Position, err)
	}
	c.pos.Store(uint64(last.Position))
	b.m.published.Add(len(msgs))
	return nil
}

// publishLocal hands a batch to the in-process processors (GoChannel): to each processor one
// message, on its own topic, with the events of the batch it handles, in order, and their data
// (decoded once by the cursor, for all of them) in the message's context: no payload to encode and
// decode again. GoChannel spends a goroutine and two copies of a message per subscriber, and the
// router a goroutine and its middleware per message; on the shared topic every processor was sent
// every event some processor handles, one message each, to drop most of them unread (in a first
// start of crispy serve on 100k events, the processors' path took more CPU than the eight read
// models together). A processor's publish returns once it has finished the events (each still
// handled, deduplicated, retried and checkpointed one by one); the processors of a batch run side
// by side, as they did on the shared topic. The cursor moves past the batch once every one has.
func (b *Bus) publishLocal(ctx context.Context, batch []item) error {
	c := b.shared
	done := c.pos.Load()
	first, last := batch[0].e, batch[len(batch)-1].e
	var per [][]*delivered // by durable index
	n := 0
	for i := range batch {
		it := &batch[i]
		if uint64(it.e.Position) <= done {
			continue // a resubscription never repeats an event, but the checkpoint is the rule
		}
		ds := b.processedBy[it.e.Type]
		if len(ds) == 0 {
			continue
		}
		if per == nil {
			per = make([][]*delivered, len(b.durables))
		}
		ev := &delivered{e: it.e, d: it.d}
		for _, d := range ds {
			per[d.idx] = append(per[d.idx], ev)
		}
		n++
	}
	if n > 0 {
		// WithoutCancel: the handlers finish what the forwarder published before it stopped.
		if err := b.publishEach(context.WithoutCancel(ctx), per); err != nil {
			return fmt.Errorf("publish events %d..%d: %w", first.Position, last.Position, err)
		}
		if at := b.abandonedAt(); at != 0 && at <= uint64(last.Position) {
			// A processor left an event of this batch to the next start: the cursor stays before it.
			c.pos.Store(max(done, at-1))
			return fmt.Errorf("publish events %d..%d: a processor stopped at %d while waiting for a dependency", first.Position, last.Position, at)
		}
		b.m.published.Add(n)
	}
	c.pos.Store(max(done, uint64(last.Position)))
	return nil
}

// inProcessBatch is the context key of the events an in-process message carries.
type inProcessBatch struct{}

// publishEach publishes to each processor its events (per, by durable index) as one message on its
// topic, the processors side by side.
func (b *Bus) publishEach(ctx context.Context, per [][]*delivered) error {
	var busy []int
	for i, evs := range per {
		if len(evs) > 0 {
			busy = append(busy, i)
		}
	}
	publish := func(i int) error {
		d, evs := b.durables[i], per[i]
		m := message.NewMessage(evs[0].e.ID, nil)
		m.SetContext(context.WithValue(ctx, inProcessBatch{}, evs))
		if err := b.tr.publisher.Publish(d.localTopic(b.cfg.topic()), m); err != nil {
			return fmt.Errorf("to processor %s: %w", d.name, err)
		}
		return nil
	}
	if len(busy) == 1 {
		return publish(busy[0])
	}
	errs := make([]error, len(busy))
	var wg sync.WaitGroup
	for j, i := range busy {
		wg.Go(func() { errs[j] = publish(i) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// delivered is an event published in process, with its delivery (data decoded by the cursor; an
// empty delivery when the cursor did not prepare it).
type delivered struct {
	e eventstore.Event
	d delivery
}

// abandonedAt is the lowest position a processor gave up at when the bus stopped (0: none).
func (b *Bus) abandonedAt() uint64 {
	b.mu.Lock()
	ds := b.durables
	b.mu.Unlock()
	var at uint64
	for _, d := range ds {
		if p := d.abandoned.Load(); p != 0 && (at == 0 || p < at) {
			at = p
		}
	}
	return at
}
