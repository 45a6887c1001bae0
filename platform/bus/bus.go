package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/VictoriaMetrics/metrics"

	"github.com/crispy-enigma/crispy/platform/bus/codec"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/health"
)

// Deps are the bus's collaborators.
type Deps struct {
	Store eventstore.Store
	// Codec maps event type names to Go types for typed handlers (nil: a new empty one; modules
	// register their events packages on Bus.Codec()).
	Codec   *codec.Registry
	Log     *slog.Logger
	Metrics *metrics.Set // nil: no metrics
	Now     func() time.Time
	// Open, when set, turns an event as stored into the event consumers see (platform/sealing's
	// Sealer.OpenEvent: sealed content opened, or marked erased). The forwarder reads the store as
	// stored and opens each event where it is handed to consumers, so a broker (NATS) carries the
	// sealed bytes and never the content. An error it returns is the store's: the forwarder retries
	// (a key store that is down), or stops on eventstore.ErrCorrupt.
	Open func(ctx context.Context, e eventstore.Event) (eventstore.Event, error)
}

// Bus carries the store's events to the registered consumers. Register every consumer
// (Projection, Processor) before Run; Run forwards and delivers until
// its context ends.
type Bus struct {
	cfg   Config
	store eventstore.Store
	open  func(ctx context.Context, e eventstore.Event) (eventstore.Event, error) // nil: events as stored
	codec *codec.Registry
	log   *slog.Logger
	now   func() time.Time
	m     meters

	mu          sync.Mutex
	durables    []*durable
	processors  []*Processor
	projections []*Projection
	names       map[string]bool
	regErr      error
	started     bool

	running    chan struct{} // closed when the consumers started and the router runs
	exited     chan struct{} // closed when Run returns
	stopping   chan struct{} // closed when Run's context ends: consumers waiting out a dependency stop waiting
	fatal      chan error    // a forwarder's error that retrying cannot cure (the store is corrupt): Run stops
	target     eventstore.Position
	shared     *cursor     // the processors' path
	sharedIdle atomic.Bool // no processors: the processors' cursor stands at the store's end
	mainGroup  *group      // the projections' main path; others join it at the live end (fanout.go)
	cursors    []*cursor   // every running cursor, for Check; guarded by mu
	projected  decodeSet   // the event types whose data a projection of the main cursor's may take, and the Go types decoded for them
	processed  decodeSet   // the event types some processor handles, and the Go types decoded for them
	// processedBy is, per event type, the processors that handle it: in process each event is
	// published only to them, on a topic each (publishLocal).
	processedBy map[string][]*durable
	// The forwarders' context and goroutines: a group starts a cursor when it detaches a projection.
	fwdCtx    context.Context
	fwdWG     sync.WaitGroup
	persisted eventstore.Position // last forwarder checkpoint written; guarded by mu
	stopped   atomic.Bool
	tr        *transport

	localPubSub *gochannel.GoChannel

	// decoratePublisher wraps the transport's publisher (tests inject publish failures).
	decoratePublisher func(message.Publisher) message.Publisher
}

var _ Consumers = (*Bus)(nil)

// New builds a bus. Nothing runs until Run.
func New(cfg Config, d Deps) (*Bus, error) {
	cfg.defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if d.Store == nil {
		return nil, errors.New("bus: a Store is required")
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Codec == nil {
		d.Codec = codec.New()
	}
	b := &Bus{cfg: cfg, store: d.Store, open: d.Open, codec: d.Codec, log: d.Log.With("component", "bus"), now: d.Now,
		names: map[string]bool{}, running: make(chan struct{}), exited: make(chan struct{}),
		stopping: make(chan struct{}), fatal: make(chan error, 2)}
	b.shared = &cursor{name: "processors"}
	b.shared.publish = b.publishShared
	b.m = newMeters(d.Metrics, b)
	return b, nil
}

// Codec implements Consumers.
func (b *Bus) Codec() *codec.Registry { return b.codec }

func (b *Bus) register(name, kind string, add func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.started:
		// Run has subscribed already; silently missing events would be worse than this loud error.
		b.log.Error("bus: registered after Run; ignored", "kind", kind, "name", name)
		return
	case name == "":
		b.regErr = errors.Join(b.regErr, fmt.Errorf("bus: %s without a name", kind))
		return
	case b.names[name]:
		b.regErr = errors.Join(b.regErr, fmt.Errorf("bus: %s name %q registered twice", kind, name))
		return
	}
	b.names[name] = true
	add()
}

// resolve checks the codec and maps every typed handler to its event type name.
func (b *Bus) resolve() error {
	if err := b.codec.Err(); err != nil {
		return err
	}
	b.projected = decodeSet{}
	for _, p := range b.projections {
		if err := p.resolve(); err != nil {
			return err
		}
		if !p.opts.OwnCursor {
			// A projection with a cursor of its own never joins the main one: what only it takes
			// is decoded by its cursor alone (a document's text, for the index, was decoded by
			// the main cursor too, for no one).
			p.addDecoded(b.projected)
		}
	}
	b.processed = decodeSet{}
	b.processedBy = map[string][]*durable{}
	for _, q := range b.processors {
		if err := q.resolve(); err != nil {
			return err
		}
		q.d.idx = len(b.durables)
		b.durables = append(b.durables, q.d)
		for t, h := range q.d.dispatch {
			b.processed.add(t, h.into)
			b.processedBy[t] = append(b.processedBy[t], q.d)
		}
	}
	return nil
}

// Run opens the read models, starts the consumers, the Watermill router and the forwarder, and
// blocks until ctx ends. It then drains: the forwarder stops after its in-flight batch, its
// checkpoint is written, the router waits for in-flight handlers (up to CloseTimeout), the
// projections commit what they applied and the checkpoints are synced. Run returns an error when it
// cannot start (a read model ahead of the store among others), or when the drain fails.
func (b *Bus) Run(ctx context.Context) error {
	b.mu.Lock()
	if b.started {
		b.mu.Unlock()
		return errors.New("bus: Run called twice")
	}
	b.started = true
	regErr := b.regErr
	if regErr == nil {
		regErr = b.resolve()
	}
	durables, projections := b.durables, b.projections
	b.mu.Unlock()
	defer close(b.exited)
	defer b.stopped.Store(true)
	if regErr != nil {
		return regErr
	}
	if err := os.MkdirAll(b.cfg.CheckpointDir, 0o750); err != nil {
		return fmt.Errorf("bus: checkpoint dir: %w", err)
	}
	from, err := readForwarderCheckpoint(b.cfg.CheckpointDir)
	if err != nil {
		return fmt.Errorf("bus: %w", err)
	}
	target, err := b.store.LastPosition(ctx)
	if err != nil {
		return fmt.Errorf("bus: store position at start: %w", err)
	}
	b.target = target
	if from > target {
		return aheadError("the bus's forwarder", from, target, b.cfg.CheckpointDir)
	}
	groups, err := b.openProjections(projections, target)
	if err != nil {
		return err
	}
	closeStores := func() {
		for _, p := range projections {
			if err := p.close(); err != nil {
				b.log.Error("bus: close read model", "projection", p.name, "err", err)
			}
		}
	}
	b.shared.pos.Store(uint64(from))
	b.mu.Lock()
	b.persisted = from
	b.mu.Unlock()

	tr, err := newTransport(ctx, b.cfg, b.log)
	if err != nil {
		closeStores()
		return err
	}
	if b.decoratePublisher != nil {
		tr.publisher = b.decoratePublisher(tr.publisher)
	}
	if tr.forwarded != nil && len(durables) > 0 {
		// A replica with a new data folder joins a deployment: what the other replicas forwarded is
		// in the stream already; published again past the duplicate window, the processors would
		// act on it again.
		if from, err = b.joinForwarded(ctx, tr, from); err != nil {
			_ = tr.close()
			closeStores()
			return err
		}
		b.shared.pos.Store(uint64(from))
		b.mu.Lock()
		b.persisted = from
		b.mu.Unlock()
	}
	b.tr = tr
	for _, d := range durables {
		if err := d.open(from, tr.ordered); err != nil {
			closeDurables(durables)
			_ = tr.close()
			closeStores()
			return err
		}
		sub, err := tr.subscriber(d.name)
		if err != nil {
			closeDurables(durables)
			_ = tr.close()
			closeStores()
			return err
		}
		topic := b.cfg.topic()
		if tr.ordered {
			// In process a processor has a topic of its own and is sent only the events it handles
			// (publishLocal): on the shared topic every processor took every event, each through a
			// goroutine, a copy of the message and the router's middleware, to drop most of them.
			topic = d.localTopic(topic)
		}
		tr.router.AddConsumerHandler(d.name, topic, sub, d.handle)
	}
	if tr.ordered && len(durables) > 0 {
		// The processors' events are decoded by the cursor, once for every processor that takes
		// them and in parallel (prepareBatch), not by each handler on a goroutine of the router's.
		b.shared.prepare = func(e eventstore.Event) delivery {
			if len(b.processed[e.Type]) == 0 {
				return delivery{} // published to no one (publishLocal)
			}
			return b.prepare(b.processed, e)
		}
	}

	// Projections consume the in-process transport, each on its own topic fed from its inbox; each
	// is subscribed before a cursor hands it its first batch.
	projCtx, stopProjections := context.WithCancel(context.WithoutCancel(ctx))
	var projWG sync.WaitGroup
	b.localPubSub = newLocalPubSub(b.log)
	for _, p := range projections {
		msgs, err := b.localPubSub.Subscribe(projCtx, p.topic())
		if err != nil {
			stopProjections()
			projWG.Wait()
			closeDurables(durables)
			_ = tr.close()
			closeStores()
			return fmt.Errorf("bus: subscribe projection %s: %w", p.name, err)
		}
		projWG.Add(2)
		go func() { defer projWG.Done(); p.run(projCtx, msgs) }()
		go p.feed(projCtx, b.localPubSub, &projWG)
	}
	stopConsumers := func() {
		stopProjections()
		projWG.Wait()
		_ = b.localPubSub.Close()
		closeStores()
	}

	// The router gets its own context: on shutdown it must outlive the forwarder, so that the
	// forwarder's last publish is handled before the handlers stop.
	routerErr := make(chan error, 1)
	go func() { routerErr <- tr.router.Run(context.WithoutCancel(ctx)) }()
	select {
	case <-tr.router.Running():
	case err := <-routerErr:
		stopConsumers()
		closeDurables(durables)
		_ = tr.close()
		return fmt.Errorf("bus: watermill router: %w", err)
	}
	close(b.running)
	projectionsFrom := uint64(target)
	for _, g := range groups {
		projectionsFrom = min(projectionsFrom, g.c.pos.Load())
	}
	b.log.Info("bus running", "transport", transportName(b.cfg), "from", from, "projectionsFrom", projectionsFrom,
		"storeAt", target, "processors", len(durables), "projections", len(projections), "projectionCursors", len(groups))

	// Forward until ctx ends.
	fwdCtx, stopForwarder := context.WithCancel(ctx)
	b.fwdCtx = fwdCtx
	var later *cursor
	switch {
	case len(durables) == 0:
		// No processor: nothing to deliver, and one added later starts with the events after its
		// first start, so the processors' cursor simply stands at the store's end.
		b.sharedIdle.Store(true)
	case uint64(target)-min(uint64(target), b.shared.pos.Load()) > uint64(b.cfg.CatchUpCommitEvery):
		// Far behind (a new data folder on a store with history): it reads the whole history, as
		// the read models do; they go first (startCursors).
		later = b.shared
	default:
		b.startCursor(b.shared)
	}
	restoreGC := b.catchUpGC(groups)
	defer restoreGC()
	b.startCursors(fwdCtx, groups, later, restoreGC)
	flushDone := make(chan struct{})
	flushCtx, stopFlush := context.WithCancel(context.Background())
	go func() { defer close(flushDone); b.flushLoop(flushCtx, durables) }()

	var fatal error
	select {
	case <-ctx.Done():
	case fatal = <-b.fatal:
		// The store cannot be read past an event: nothing after it can be delivered, and serving
		// read models that silently stop there would be partial truth.
	}
	close(b.stopping)
	stopForwarder()
	// The projections stop with the forwarder, not after it: one that waits out a failing disk
	// would otherwise hold the forwarder's last publish, and the stop, until the disk heals. What
	// they applied is committed on their way out; the rest is applied again from the checkpoint.
	stopProjections()
	b.fwdWG.Wait()
	stopFlush()
	<-flushDone

	var errs []error
	if err := b.writeCheckpoint(); err != nil {
		errs = append(errs, err)
	}
	tr.quiesce()
	if err := tr.router.Close(); err != nil {
		errs = append(errs, fmt.Errorf("bus: close router: %w", err))
	}
	if err := <-routerErr; err != nil {
		errs = append(errs, fmt.Errorf("bus: router: %w", err))
	}
	if err := tr.close(); err != nil {
		errs = append(errs, fmt.Errorf("bus: close transport: %w", err))
	}
	stopConsumers()
	errs = append(errs, closeDurables(durables))
	projected := uint64(math.MaxUint64)
	for _, p := range projections {
		projected = min(projected, p.progress.Load())
	}
	if len(projections) == 0 {
		projected = 0
	}
	b.log.Info("bus stopped", "forwarded", b.shared.pos.Load(), "projected", projected)
	return errors.Join(append([]error{fatal}, errs...)...)
}

// openProjections opens every projection's read model, refuses one that is ahead of the store,
// and groups the projections on cursors by checkpoint (the first group is the main one).
func (b *Bus) openProjections(ps []*Projection, target eventstore.Position) ([]*group, error) {
	if len(ps) == 0 {
		return nil, nil
	}
	if err := os.MkdirAll(b.cfg.ReadModelDir, 0o750); err != nil {
		return nil, fmt.Errorf("bus: %w %s: %w", ErrReadModelDir, b.cfg.ReadModelDir, err)
	}
	var err error
	for _, p := range ps {
		if err = p.open(b.cfg.ReadModelDir, target); err != nil {
			break
		}
		if pos := p.store.Load().Position(); pos > target {
			err = aheadError(fmt.Sprintf("read model %q (%s)", p.name, p.store.Load().Path()), pos, target, b.cfg.ReadModelDir)
			break
		}
	}
	if err != nil {
		for _, p := range ps {
			_ = p.close()
		}
		return nil, err
	}
	groups, main := b.groupCursors(ps)
	b.mainGroup = main
	return groups, nil
}

// ErrReadModelDir marks a failure to use ReadModelDir or a file in it (the operating system's
// error is wrapped too: errors.Is(err, syscall.EACCES) and the like tell why).
var ErrReadModelDir = errors.New("cannot use the read model folder")

// aheadError is the refusal to start on a checkpoint ahead of the store: what was derived from the
// store describes events the store no longer has, so serving it would be serving wrong state.
func aheadError(what string, at, storeAt eventstore.Position, dir string) error {
	return fmt.Errorf("bus: %s reflects the event store up to position %d, but the store ends at %d: the store was restored from an older backup or --eventstore names another store; if the store is right, delete %s to rebuild from it", what, at, storeAt, dir)
}

func closeDurables(ds []*durable) error {
	var errs []error
	for _, d := range ds {
		errs = append(errs, d.close())
	}
	return errors.Join(errs...)
}

func transportName(c Config) string {
	if c.usesNATS() {
		return "nats-jetstream"
	}
	return TransportGoChannel
}

// flushLoop writes the forwarder's checkpoint and fsyncs the handlers' checkpoints every
// CheckpointInterval when they moved: one fsync a second instead of one per event.
func (b *Bus) flushLoop(ctx context.Context, ds []*durable) {
	t := time.NewTicker(b.cfg.CheckpointInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := b.writeCheckpoint(); err != nil {
			b.log.Error("bus: write forwarder checkpoint", "err", err)
		}
		for _, d := range ds {
			if err := d.sync(); err != nil {
				b.log.Error("bus: sync handler checkpoint", "handler", d.name, "err", err)
			}
		}
	}
}

// writeCheckpoint persists the processors' cursor when it moved since the last write.
func (b *Bus) writeCheckpoint() error {
	if b.sharedIdle.Load() {
		last, err := b.store.LastPosition(context.Background())
		if err != nil {
			return fmt.Errorf("bus: store position for the forwarder checkpoint: %w", err)
		}
		b.shared.pos.Store(max(b.shared.pos.Load(), uint64(last)))
	}
	pos := eventstore.Position(b.shared.pos.Load())
	b.mu.Lock()
	defer b.mu.Unlock()
	if pos == b.persisted {
		return nil
	}
	if err := writeForwarderCheckpoint(b.cfg.CheckpointDir, pos, b.now()); err != nil {
		return err
	}
	b.persisted = pos
	return nil
}

// Check reports the bus for /health: down when it is not running, its forwarder fails or the
// broker is unreachable; catching_up (with progress in positions) while a projection catches up.
func (b *Bus) Check(ctx context.Context) error {
	select {
	case <-b.running:
	default:
		return errors.New("bus: not running")
	}
	if b.stopped.Load() {
		return errors.New("bus: stopped")
	}
	b.mu.Lock()
	cursors := slices.Clone(b.cursors)
	b.mu.Unlock()
	for _, c := range cursors {
		if p := c.err.Load(); p != nil {
			return fmt.Errorf("bus: forwarder (%s) failing: %w", c.name, *p)
		}
	}
	if err := b.tr.check(ctx); err != nil {
		return err
	}
	var degraded error
	b.mu.Lock()
	ds := b.durables
	b.mu.Unlock()
	for _, d := range ds {
		if err := d.waiting.check("processor", d.name); err != nil && degraded == nil {
			degraded = err
		}
	}
	var behind []string
	var done, total uint64
	for _, p := range b.projections {
		err := p.Check(ctx)
		var st *health.State
		if errors.As(err, &st) && st.Status == health.CatchingUp {
			behind = append(behind, p.name)
			done += st.Done
			total += st.Total
			continue
		}
		if errors.As(err, &st) && st.Status == health.Degraded {
			if degraded == nil {
				degraded = err
			}
			continue
		}
		if err != nil {
			return err
		}
	}
	if degraded != nil {
		return degraded // worse than catching up
	}
	if len(behind) > 0 {
		return health.CatchingUpState("read models catching up with the event store: "+strings.Join(behind, ", "), done, total)
	}
	return nil
}

// Lag is how many positions the processors' forwarder is behind the store (the store's last
// position minus the forwarded one; positions need not be contiguous, so it is an upper bound on
// events). 0 when the store cannot tell.
func (b *Bus) Lag() uint64 {
	last, err := b.store.LastPosition(context.Background())
	if err != nil {
		return 0
	}
	fwd := b.shared.pos.Load()
	if uint64(last) <= fwd || b.sharedIdle.Load() {
		return 0
	}
	return uint64(last) - fwd
}

// WaitRunning blocks until Run has opened the read models and started the consumers, so it is past
// its refusals to start (a read model ahead of the store, a broker that does not answer …); it
// fails when Run returned first. The projections may still be catching up.
func (b *Bus) WaitRunning(ctx context.Context) error {
	select {
	case <-b.running:
		return nil
	case <-b.exited:
		return errors.New("bus: Run returned before it was running")
	case <-ctx.Done():
		return fmt.Errorf("bus: wait for start: %w", ctx.Err())
	}
}

// WaitCaughtUp blocks until Run has started and every projection has caught up with the store (its
// subscription reported the live end and the projection applied every event up to it), so the
// server answers only once read models are warm.
func (b *Bus) WaitCaughtUp(ctx context.Context) error {
	select {
	case <-b.running:
	case <-b.exited:
		return errors.New("bus: Run returned before it was running")
	case <-ctx.Done():
		return fmt.Errorf("bus: wait for start: %w", ctx.Err())
	}
	b.mu.Lock()
	ps := b.projections
	b.mu.Unlock()
	for _, p := range ps {
		if err := p.WaitCaughtUp(ctx); err != nil {
			return err
		}
	}
	return nil
}

// Sync waits until the consumers have been given every event in the store now: the projections
// applied (and, once caught up, committed) them, in-process processors finished them, and on NATS
// the events were published to the broker (whose consumers may still be at work). For tests and
// tools; keep retention out of a store it waits on (an unreadable last event is never delivered).
func (b *Bus) Sync(ctx context.Context) error {
	if err := b.WaitCaughtUp(ctx); err != nil {
		return err
	}
	target, err := b.store.LastPosition(ctx)
	if err != nil {
		return fmt.Errorf("bus: store position: %w", err)
	}
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for {
		done := b.sharedIdle.Load() || b.shared.pos.Load() >= uint64(target)
		for _, p := range b.projections {
			done = done && p.reached.Load() >= uint64(target)
		}
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("bus: sync to %d: %w", target, ctx.Err())
		case <-b.exited:
			return errors.New("bus: stopped")
		case <-t.C:
		}
	}
}
