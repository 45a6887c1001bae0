package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/VictoriaMetrics/metrics"

	"github.com/crispy-enigma/crispy/platform/eventstore"
)

// Deps are the bus's collaborators.
type Deps struct {
	Store   eventstore.Store
	Log     *slog.Logger
	Metrics *metrics.Set // nil: no metrics
	Now     func() time.Time
}

// Bus carries the store's events to the registered handlers. Register every handler (On, Project)
// before Run; Run forwards and delivers until its context ends.
type Bus struct {
	cfg   Config
	store eventstore.Store
	log   *slog.Logger
	now   func() time.Time
	m     meters

	mu          sync.Mutex
	durables    []*durable
	projections []*projection
	names       map[string]bool
	regErr      error
	started     bool

	running   chan struct{} // closed when projections started and the router runs
	exited    chan struct{} // closed when Run returns
	target    eventstore.Position
	forwarded atomic.Uint64
	persisted eventstore.Position // last forwarder checkpoint written; guarded by mu
	fwdErr    atomic.Pointer[error]
	stopped   atomic.Bool
	tr        *transport

	// decoratePublisher wraps the transport's publisher (tests inject publish failures).
	decoratePublisher func(message.Publisher) message.Publisher
}

var _ Registry = (*Bus)(nil)

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
	b := &Bus{cfg: cfg, store: d.Store, log: d.Log.With("component", "bus"), now: d.Now,
		names: map[string]bool{}, running: make(chan struct{}), exited: make(chan struct{})}
	b.m = newMeters(d.Metrics, b)
	return b, nil
}

// On implements Registry: a durable handler, delivered at least once and deduplicated by event id.
func (b *Bus) On(name string, types []string, h Handler) {
	b.register(name, "handler", func() {
		b.durables = append(b.durables, newDurable(name, types, h, b))
	})
}

// Project implements Registry: an in-memory read model fed from the beginning of the store on every
// start.
func (b *Bus) Project(name string, types []string, h Handler) {
	b.register(name, "projection", func() {
		b.projections = append(b.projections, newProjection(name, types, h, b))
	})
}

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

// Run starts the projections, the Watermill router and the forwarder, and blocks until ctx ends.
// It then drains: the forwarder stops after its in-flight event, its checkpoint is written, the
// router waits for in-flight handlers (up to CloseTimeout) and the checkpoints are synced. Run
// returns an error when it cannot start, or when the drain fails.
func (b *Bus) Run(ctx context.Context) error {
	b.mu.Lock()
	if b.started {
		b.mu.Unlock()
		return errors.New("bus: Run called twice")
	}
	b.started = true
	regErr := b.regErr
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
	b.forwarded.Store(uint64(from))
	b.mu.Lock()
	b.persisted = from
	b.mu.Unlock()
	target, err := b.store.LastPosition(ctx)
	if err != nil {
		return fmt.Errorf("bus: store position at start: %w", err)
	}
	b.target = target

	tr, err := newTransport(ctx, b.cfg, b.log)
	if err != nil {
		return err
	}
	if b.decoratePublisher != nil {
		tr.publisher = b.decoratePublisher(tr.publisher)
	}
	b.tr = tr
	for _, d := range durables {
		if err := d.open(from, tr.ordered); err != nil {
			closeDurables(durables)
			_ = tr.close()
			return err
		}
		sub, err := tr.subscriber(d.name)
		if err != nil {
			closeDurables(durables)
			_ = tr.close()
			return err
		}
		tr.router.AddConsumerHandler(d.name, b.cfg.topic(), sub, d.handle)
	}

	// Projections read the store directly: they need every event from the start in order, which
	// is what a store subscription is, and nothing the broker adds.
	projCtx, stopProjections := context.WithCancel(context.WithoutCancel(ctx))
	var projWG sync.WaitGroup
	for _, p := range projections {
		p.epoch = time.Now()
		projWG.Add(1)
		go func() { defer projWG.Done(); p.run(projCtx) }()
	}

	// The router gets its own context: on shutdown it must outlive the forwarder, so that the
	// forwarder's last publish is handled before the handlers stop.
	routerErr := make(chan error, 1)
	go func() { routerErr <- tr.router.Run(context.WithoutCancel(ctx)) }()
	select {
	case <-tr.router.Running():
	case err := <-routerErr:
		stopProjections()
		projWG.Wait()
		closeDurables(durables)
		_ = tr.close()
		return fmt.Errorf("bus: watermill router: %w", err)
	}
	close(b.running)
	b.log.Info("bus running", "transport", transportName(b.cfg), "from", from, "storeAt", target,
		"handlers", len(durables), "projections", len(projections))

	// Forward until ctx ends.
	fwdCtx, stopForwarder := context.WithCancel(ctx)
	fwdDone := make(chan struct{})
	go func() { defer close(fwdDone); b.forward(fwdCtx) }()
	flushDone := make(chan struct{})
	flushCtx, stopFlush := context.WithCancel(context.Background())
	go func() { defer close(flushDone); b.flushLoop(flushCtx, durables) }()

	<-ctx.Done()
	stopForwarder()
	<-fwdDone
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
	stopProjections()
	projWG.Wait()
	errs = append(errs, closeDurables(durables))
	b.log.Info("bus stopped", "forwarded", b.forwarded.Load())
	return errors.Join(errs...)
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

// writeCheckpoint persists the forwarder's position when it moved since the last write.
func (b *Bus) writeCheckpoint() error {
	pos := eventstore.Position(b.forwarded.Load())
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

// Check reports whether the bus is running and forwarding (for /health).
func (b *Bus) Check(ctx context.Context) error {
	select {
	case <-b.running:
	default:
		return errors.New("bus: not running")
	}
	if b.stopped.Load() {
		return errors.New("bus: stopped")
	}
	if p := b.fwdErr.Load(); p != nil {
		return fmt.Errorf("bus: forwarder failing: %w", *p)
	}
	return b.tr.check(ctx)
}

// Lag is how many positions the forwarder is behind the store (the store's last position minus the
// forwarded one; positions need not be contiguous, so it is an upper bound on events). 0 when the
// store cannot tell.
func (b *Bus) Lag() uint64 {
	last, err := b.store.LastPosition(context.Background())
	if err != nil {
		return 0
	}
	fwd := b.forwarded.Load()
	if uint64(last) <= fwd {
		return 0
	}
	return uint64(last) - fwd
}

// WaitCaughtUp blocks until Run has started and every projection has been fed the store up to its
// last position when Run started, so the server answers only once read models are warm.
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
		if err := p.waitCaughtUp(ctx, b.target, b.cfg.SettleTime); err != nil {
			return err
		}
	}
	return nil
}
