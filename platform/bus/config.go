package bus

import (
	"fmt"
	"net/url"
	"regexp"
	"time"
)

// TransportGoChannel is the in-process transport: Watermill's GoChannel, no server needed.
const TransportGoChannel = "gochannel"

// Config configures the bus. The zero value is valid after defaults: GoChannel, checkpoints in
// data/bus, read models in data/readmodels.
type Config struct {
	// Transport is "gochannel" (default) or a NATS URL (nats://127.0.0.1:4222) for Watermill over NATS
	// JetStream, where several replicas share each handler's work through one durable consumer.
	Transport string
	// CheckpointDir holds the forwarder's and the processors' checkpoints (default data/bus; the
	// binary passes <data folder>/bus). One directory per process: it is that process's progress.
	CheckpointDir string
	// ReadModelDir holds the projections' read models, one bbolt file each, <name>.db (default
	// data/readmodels; the binary passes <data folder>/readmodels). One directory per process.
	ReadModelDir string
	// CatchUpCommitEvery is how many events a projection applies in one transaction while it
	// catches up (default 8192): fewer fsyncs, and a crash costs at most this many re-applied
	// events. Once caught up, a projection commits at the end of every forwarded batch.
	CatchUpCommitEvery int
	// Prefix names the broker resources: the JetStream stream and subject "<prefix>-events" and the
	// durable consumers "<prefix>-<handler>-<hash>" (default "crispy"). Letters, digits, '-' and '_'.
	Prefix string
	// CheckpointInterval is how often the forwarder's checkpoint is written and the handlers'
	// checkpoints are fsync'd when they moved (default 1 s). A crash redelivers at most this much,
	// and handlers skip what they had finished.
	CheckpointInterval time.Duration
	// MaxRetries is how many times a failing handler is retried, with exponential backoff from
	// RetryInitial up to RetryMax, before the failure is logged and counted and the event is passed
	// (default 5, 100 ms, 5 s). A failing handler never blocks the bus for longer than that, but
	// for a dependency fault (Unavailable), which is retried every RetryMax at most until it heals.
	MaxRetries   int
	RetryInitial time.Duration
	RetryMax     time.Duration
	// DedupeSize is how many recent event ids each handler remembers to drop redeliveries
	// (default 4096).
	DedupeSize int
	// AckWait is how long NATS waits for a handler's ack before redelivering (default 60 s). Keep it
	// above the retry budget.
	AckWait time.Duration
	// AsyncAck acks NATS deliveries without waiting for the server's confirmation: about three
	// times the throughput here, but an ack lost in a disconnect or crash is one more redelivery
	// (dropped by the in-memory dedupe within a process, handled again after a restart). Off by
	// default: a handler's next event starts only once its previous ack is confirmed.
	AsyncAck bool
	// PublishTimeout bounds the wait for JetStream's acks of one forwarded batch (default 10 s);
	// past it the batch is published again (duplicates are dropped by event id).
	PublishTimeout time.Duration
	// DuplicateWindow is the JetStream stream's window for dropping a republished event id (after a
	// forwarder restart, or when several replicas forward the same store) (default 10 min).
	DuplicateWindow time.Duration
	// MaxAge bounds how long the JetStream stream keeps events (default 72 h); the event store, not
	// the broker, is the record.
	MaxAge time.Duration
	// CloseTimeout bounds the drain of in-flight handlers at shutdown (default 30 s).
	CloseTimeout time.Duration
	// CatchUpGCPercent, when above 0, is the garbage collector's GOGC while the read models on the
	// shared cursors catch up from far behind (a first start, a rebuild): the previous setting is
	// restored once they have caught up (or are stuck) and when Run returns. A catch-up allocates
	// short-lived garbage for every event (the event read, its decoded data, the read models'
	// B-tree cursors) over a small live heap, so at GOGC 100 the collector runs every few thousand
	// events and took a fifth of the catch-up's CPU in a first start of crispy serve. The setting is
	// the process's (runtime/debug.SetGCPercent): only a process with one bus should set it. 0: the
	// collector is left alone (the default).
	CatchUpGCPercent int
}

var prefixPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

func (c *Config) defaults() {
	if c.Transport == "" {
		c.Transport = TransportGoChannel
	}
	if c.CheckpointDir == "" {
		c.CheckpointDir = "data/bus"
	}
	if c.Prefix == "" {
		c.Prefix = "crispy"
	}
	if c.CheckpointInterval == 0 {
		c.CheckpointInterval = time.Second
	}
	if c.MaxRetries == 0 {
		c.MaxRetries = 5
	}
	if c.RetryInitial == 0 {
		c.RetryInitial = 100 * time.Millisecond
	}
	if c.RetryMax == 0 {
		c.RetryMax = 5 * time.Second
	}
	if c.DedupeSize == 0 {
		c.DedupeSize = 4096
	}
	if c.AckWait == 0 {
		c.AckWait = 60 * time.Second
	}
	if c.PublishTimeout == 0 {
		c.PublishTimeout = 10 * time.Second
	}
	if c.DuplicateWindow == 0 {
		c.DuplicateWindow = 10 * time.Minute
	}
	if c.MaxAge == 0 {
		c.MaxAge = 72 * time.Hour
	}
	if c.CloseTimeout == 0 {
		c.CloseTimeout = 30 * time.Second
	}
	if c.ReadModelDir == "" {
		c.ReadModelDir = "data/readmodels"
	}
	if c.CatchUpCommitEvery == 0 {
		c.CatchUpCommitEvery = 8192
	}
}

// WithDefaults returns c with every unset field at its default.
func (c Config) WithDefaults() Config { c.defaults(); return c }

// Validate checks a configuration (after defaults).
func (c Config) Validate() error {
	if c.Transport != TransportGoChannel {
		if _, err := c.natsURL(); err != nil {
			return err
		}
	}
	if c.CheckpointDir == "" || c.ReadModelDir == "" {
		return fmt.Errorf("bus: checkpoint or read model dir is empty")
	}
	if !prefixPattern.MatchString(c.Prefix) {
		return fmt.Errorf("bus: prefix %q must match %s", c.Prefix, prefixPattern)
	}
	if c.CheckpointInterval < 0 || c.RetryInitial < 0 || c.RetryMax < 0 || c.AckWait < 0 || c.PublishTimeout < 0 ||
		c.DuplicateWindow < 0 || c.MaxAge < 0 || c.CloseTimeout < 0 {
		return fmt.Errorf("bus: negative duration in config")
	}
	if c.MaxRetries < 0 || c.DedupeSize < 0 || c.CatchUpCommitEvery < 0 || c.CatchUpGCPercent < 0 {
		return fmt.Errorf("bus: negative count in config")
	}
	if c.MaxAge > 0 && c.DuplicateWindow > c.MaxAge {
		return fmt.Errorf("bus: duplicate window %s exceeds max age %s", c.DuplicateWindow, c.MaxAge)
	}
	return nil
}

// natsURL parses Transport as a NATS URL.
func (c Config) natsURL() (string, error) {
	u, err := url.Parse(c.Transport)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("bus: transport is neither %q nor a nats:// URL", TransportGoChannel)
	}
	switch u.Scheme {
	case "nats", "tls":
		return c.Transport, nil
	}
	return "", fmt.Errorf("bus: transport %s: scheme must be nats or tls", u.Redacted())
}

func (c Config) usesNATS() bool { return c.Transport != TransportGoChannel }

// topic is the one Watermill topic (and JetStream stream and subject) that carries every event, so
// the broker keeps the store's global order.
func (c Config) topic() string { return c.Prefix + "-events" }
