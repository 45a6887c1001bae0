package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmjs "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/jetstream"
	wmnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/crispy-enigma/crispy/platform/eventstore"
)

// transport is the one place where Watermill is set up: the router, the publisher the forwarder
// uses, and a subscriber per durable handler.
type transport struct {
	router    *message.Router
	publisher message.Publisher
	// subscriber returns the subscriber a durable handler consumes from.
	subscriber func(handler string) (message.Subscriber, error)
	// check reports whether the broker is reachable.
	check func(ctx context.Context) error
	// quiesce stops new deliveries and waits for the ones in flight; call it before closing the
	// router.
	quiesce func()
	// close releases the publisher and the connections, after the router has drained.
	close func() error
	// ordered is true when every handler receives events one at a time in the store's order, so a
	// handler's position is a sound checkpoint (GoChannel). With a broker shared by replicas it is
	// false: the broker's per-consumer acks are the checkpoint.
	ordered bool
	// forwarded reports the position of the last event the shared stream holds (NATS: forwarded by
	// any replica), so a replica with a new data folder does not publish the history again; nil on
	// GoChannel, where the replica's own checkpoint is the only record.
	forwarded func(ctx context.Context) (eventstore.Position, error)
}

// watermillLogger sends Watermill's logs to slog one level down: its Info is per message or per
// subscription, which is our Debug.
func watermillLogger(log *slog.Logger) watermill.LoggerAdapter {
	log = log.With("component", "watermill")
	return quietLogger{LoggerAdapter: watermill.NewSlogLoggerWithLevelMapping(log, map[slog.Level]slog.Level{
		slog.LevelInfo:       slog.LevelDebug,
		slog.LevelDebug:      watermill.LevelTrace,
		watermill.LevelTrace: watermill.LevelTrace - 4,
	}), log: log}
}

// quietLogger drops a Watermill log line that slog would drop before Watermill's slog adapter
// builds it: the adapter converts the line's fields first, and the router logs a few lines per
// message (measured in a first start of crispy serve: about 0.5 s of CPU per 100k events forwarded
// to the processors, for lines nobody reads).
type quietLogger struct {
	watermill.LoggerAdapter
	log *slog.Logger
}

func (q quietLogger) enabled(l slog.Level) bool { return q.log.Enabled(context.Background(), l) }

func (q quietLogger) Info(msg string, f watermill.LogFields) {
	if q.enabled(slog.LevelDebug) {
		q.LoggerAdapter.Info(msg, f)
	}
}

func (q quietLogger) Debug(msg string, f watermill.LogFields) {
	if q.enabled(watermill.LevelTrace) {
		q.LoggerAdapter.Debug(msg, f)
	}
}

func (q quietLogger) Trace(msg string, f watermill.LogFields) {
	if q.enabled(watermill.LevelTrace - 4) {
		q.LoggerAdapter.Trace(msg, f)
	}
}

func (q quietLogger) With(f watermill.LogFields) watermill.LoggerAdapter {
	return quietLogger{LoggerAdapter: q.LoggerAdapter.With(f), log: q.log}
}

// newLocalPubSub is the in-process transport of the projections, one topic each: publishing blocks
// until the projection has applied the batch (it sees the store's order, and its inbox counts what
// it has not applied); the batch travels in the message's context.
func newLocalPubSub(log *slog.Logger) *gochannel.GoChannel {
	return gochannel.NewGoChannel(gochannel.Config{BlockPublishUntilSubscriberAck: true, PreserveContext: true}, watermillLogger(log))
}

func newTransport(ctx context.Context, cfg Config, log *slog.Logger) (*transport, error) {
	wlog := watermillLogger(log)
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: cfg.CloseTimeout}, wlog)
	if err != nil {
		return nil, fmt.Errorf("bus: watermill router: %w", err)
	}
	if !cfg.usesNATS() {
		// Publish blocks until every handler has acked: the forwarder's checkpoint then never passes
		// an event a handler has not finished, and each handler sees events in the store's order
		// (without it GoChannel fans out in goroutines and reorders).
		// PreserveContext lets a message carry its event in process (see Bus.publish).
		gc := gochannel.NewGoChannel(gochannel.Config{BlockPublishUntilSubscriberAck: true, PreserveContext: true}, wlog)
		return &transport{
			router:     router,
			publisher:  gc,
			subscriber: func(string) (message.Subscriber, error) { return gc, nil },
			check:      func(context.Context) error { return nil },
			quiesce:    func() {},
			close:      gc.Close,
			ordered:    true,
		}, nil
	}
	return newNATSTransport(ctx, cfg, router, wlog)
}

func newNATSTransport(ctx context.Context, cfg Config, router *message.Router, wlog watermill.LoggerAdapter) (*transport, error) {
	natsURL, err := cfg.natsURL()
	if err != nil {
		return nil, err
	}
	connect := func(role string) (*nats.Conn, error) {
		nc, err := nats.Connect(natsURL, nats.Name(cfg.Prefix+"-bus-"+role), nats.MaxReconnects(-1))
		if err != nil {
			return nil, fmt.Errorf("bus: connect to NATS at %s: %w", redactURL(natsURL), err)
		}
		return nc, nil
	}
	nc, err := connect("publisher")
	if err != nil {
		return nil, err
	}
	topic := cfg.topic()
	// The stream, its one subject and the Watermill topic share one name: one subject keeps the
	// store's global order in the broker.
	streamConfig := func(string) jetstream.StreamConfig {
		return jetstream.StreamConfig{
			Name: topic, Subjects: []string{topic}, Storage: jetstream.FileStorage,
			Retention: jetstream.LimitsPolicy, MaxAge: cfg.MaxAge, Duplicates: cfg.DuplicateWindow,
		}
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("bus: jetstream: %w", err)
	}
	if _, err := js.CreateOrUpdateStream(ctx, streamConfig(topic)); err != nil {
		nc.Close()
		return nil, fmt.Errorf("bus: create JetStream stream %s: %w", topic, err)
	}
	pub := &natsPublisher{nc: nc, js: js, timeout: cfg.PublishTimeout}
	forwarded := func(ctx context.Context) (eventstore.Position, error) { return lastForwarded(ctx, js, topic) }
	var subs []*wmjs.Subscriber
	g := &gate{}
	t := &transport{
		router:    router,
		publisher: pub,
		quiesce:   g.close,
		forwarded: forwarded,
		check: func(context.Context) error {
			if s := nc.Status(); s != nats.CONNECTED {
				return fmt.Errorf("bus: NATS connection is %s", s)
			}
			return nil
		},
	}
	t.subscriber = func(handler string) (message.Subscriber, error) {
		snc, err := connect(handler)
		if err != nil {
			return nil, err
		}
		durable := cfg.Prefix + "-" + safeName(handler)
		sub, err := wmjs.NewSubscriber(wmjs.SubscriberConfig{
			Conn: snc, Logger: wlog, AckWaitTimeout: cfg.AckWait, ConfigureStream: streamConfig, AckAsync: cfg.AsyncAck,
			ResourceInitializer: durableConsumer(topic, durable, cfg, g),
		})
		if err != nil {
			snc.Close()
			return nil, fmt.Errorf("bus: JetStream subscriber for %s: %w", handler, err)
		}
		subs = append(subs, sub)
		return sub, nil
	}
	t.close = func() error {
		var errs []error
		for _, s := range subs {
			// The router closed them already; Close is idempotent.
			errs = append(errs, s.Close())
		}
		errs = append(errs, pub.Close())
		return errors.Join(errs...)
	}
	return t, nil
}

// errForwardedUnknown: the stream has held events, none is left (all older than MaxAge), so where
// the deployment's forwarding stands is not known from the broker.
var errForwardedUnknown = errors.New("the JetStream stream has held events but keeps none now")

// lastForwarded reads the position of the newest event in the stream (the position header the
// forwarder sets on every message); 0 when the stream has never held one.
func lastForwarded(ctx context.Context, js jetstream.JetStream, topic string) (eventstore.Position, error) {
	st, err := js.Stream(ctx, topic)
	if err != nil {
		return 0, fmt.Errorf("bus: JetStream stream %s: %w", topic, err)
	}
	m, err := st.GetLastMsgForSubject(ctx, topic)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		info, ierr := st.Info(ctx)
		if ierr != nil {
			return 0, fmt.Errorf("bus: JetStream stream %s: %w", topic, ierr)
		}
		if info.State.LastSeq > 0 {
			return 0, errForwardedUnknown
		}
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("bus: last message of JetStream stream %s: %w", topic, err)
	}
	raw := m.Header.Get(MetaPosition)
	pos, err := strconv.ParseUint(raw, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bus: last message of JetStream stream %s has no position header (%q): %w", topic, raw, err)
	}
	return eventstore.Position(pos), nil
}

// durableConsumer makes (or reuses) the handler's durable consumer on the events stream. Every
// replica that runs the handler binds the same consumer, so each event goes to one of them, and the
// broker remembers what the handler acked across restarts. A new handler starts with the events
// forwarded from its first start on (DeliverNew), as with GoChannel.
func durableConsumer(topic, durable string, cfg Config, g *gate) wmjs.ResourceInitializer {
	return func(ctx context.Context, js jetstream.JetStream, _ string) (jetstream.Consumer, func(context.Context, watermill.LoggerAdapter), error) {
		stream, err := js.Stream(ctx, topic)
		if err != nil {
			return nil, nil, fmt.Errorf("bus: JetStream stream %s: %w", topic, err)
		}
		c, err := stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
			Durable: durable, AckPolicy: jetstream.AckExplicitPolicy, AckWait: cfg.AckWait,
			DeliverPolicy: jetstream.DeliverNewPolicy, FilterSubject: topic,
		})
		if err != nil {
			return nil, nil, fmt.Errorf("bus: JetStream consumer %s: %w", durable, err)
		}
		return gatedConsumer{Consumer: c, g: g}, nil, nil
	}
}

// gate keeps deliveries out of the Watermill subscriber while it shuts down: watermill-nats v2.1.3
// closes a subscription's output channel while a delivery callback may still be sending on it (a
// data race, and a possible send on a closed channel). quiesce closes the gate first: it waits for
// the callbacks in flight (the router still runs and acks them), and later ones are nacked so the
// broker hands them to another replica or to the next start.
type gate struct {
	mu     sync.RWMutex
	closed bool
}

func (g *gate) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
}

type gatedConsumer struct {
	jetstream.Consumer
	g *gate
}

func (c gatedConsumer) Consume(h jetstream.MessageHandler, opts ...jetstream.PullConsumeOpt) (jetstream.ConsumeContext, error) {
	return c.Consumer.Consume(func(m jetstream.Msg) {
		c.g.mu.RLock()
		defer c.g.mu.RUnlock()
		if c.g.closed {
			_ = m.Nak()
			return
		}
		h(m)
	}, opts...)
}

// natsPublisher publishes a batch to JetStream asynchronously and waits for every ack: one wait per
// batch instead of a round trip per event (watermill-nats' publisher waits for each). The wire
// format is watermill-nats' (NATSMarshaler), which its subscriber reads. Messages of one connection
// reach the stream in the order sent; the JetStream message id is the event id, so the stream drops
// an event published again (after a failed batch, a crash before the forwarder's checkpoint, or by
// another replica forwarding the same store) within the duplicate window.
type natsPublisher struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	m       wmnats.NATSMarshaler
	timeout time.Duration
}

func (p *natsPublisher) Publish(topic string, msgs ...*message.Message) error {
	futures := make([]jetstream.PubAckFuture, 0, len(msgs))
	for _, m := range msgs {
		m.Metadata.Set(nats.MsgIdHdr, m.UUID)
		nm, err := p.m.Marshal(topic, m)
		if err != nil {
			return fmt.Errorf("marshal %s: %w", m.UUID, err)
		}
		f, err := p.js.PublishMsgAsync(nm)
		if err != nil {
			return fmt.Errorf("publish %s: %w", m.UUID, err)
		}
		futures = append(futures, f)
	}
	timeout := time.NewTimer(p.timeout)
	defer timeout.Stop()
	for i, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("publish %s: %w", msgs[i].UUID, err)
		case <-timeout.C:
			return fmt.Errorf("publish %s: no ack from JetStream within %s", msgs[i].UUID, p.timeout)
		}
	}
	return nil
}

func (p *natsPublisher) Close() error {
	p.nc.Close()
	return nil
}

// redactURL hides a password in a broker URL before it reaches a log or an error.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<unparsable URL>"
	}
	return u.Redacted()
}

// joinForwarded moves the processors' cursor past what the shared stream holds already. A stream
// whose events all aged out says nothing about where forwarding stands: a new data folder's cursor
// then starts at the store's end as Run found it (the deployment was idle for longer than MaxAge),
// with a log line, rather than publishing the history to processors that acted on it long ago.
func (b *Bus) joinForwarded(ctx context.Context, tr *transport, from eventstore.Position) (eventstore.Position, error) {
	at, err := tr.forwarded(ctx)
	switch {
	case errors.Is(err, errForwardedUnknown):
		// Only a new data folder (no checkpoint) skips ahead: a replica with a checkpoint of its own
		// forwards from it (at least once), so that nothing appended while every replica was down
		// (crispy ingest on the shared store) escapes the processors.
		if from == 0 && from < b.target {
			b.log.Warn("bus: the shared stream keeps no event to say where forwarding stands; processors start at the store's end",
				"checkpoint", from, "storeAt", b.target)
			return b.target, nil
		}
		return from, nil
	case err != nil:
		return 0, err
	case at <= from:
		return from, nil
	}
	last, err := b.store.LastPosition(ctx)
	if err != nil {
		return 0, fmt.Errorf("bus: store position at start: %w", err)
	}
	if at > last {
		return 0, fmt.Errorf("bus: the shared stream %s holds events up to position %d, the store ends at %d: "+
			"the stream was filled from another store; give this deployment its own bus prefix, or delete the stream",
			b.cfg.topic(), at, last)
	}
	b.log.Info("bus: joining the deployment's forwarding: processors start after the shared stream's last event",
		"checkpoint", from, "streamAt", at)
	return at, nil
}
