package auditlog

import (
	"context"
	"errors"
	"log/slog"
	"net/url"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// witnesses delivers checkpoints to the sinks. Each sink has its own worker holding only the
// LATEST undelivered checkpoint per tenant (a newer one replaces an older one: a witness needs the
// latest signed head, and every earlier one is a prefix of it). So the backlog is bounded by the
// number of tenants, one tenant signing often cannot push another's checkpoint out, a slow sink
// does not hold back the others, and a checkpoint a sink did not take is retried until it does,
// whether or not the log grows again.
type witnesses struct {
	workers []*sinkWorker
}

type sinkWorker struct {
	sink  Sink
	log   *slog.Logger
	retry time.Duration
	wake  chan struct{}
	// failures counts pushes the sink did not take (tests; a future metric).
	failures atomic.Int64

	mu      sync.Mutex
	pending map[string]Checkpoint
}

// witnessRetryMax caps the doubling wait between rounds of failed deliveries.
const witnessRetryMax = 5 * time.Minute

func newWitnesses(sinks []Sink, retry time.Duration, log *slog.Logger) *witnesses {
	w := &witnesses{}
	for _, s := range sinks {
		w.workers = append(w.workers, &sinkWorker{sink: s, log: log, retry: retry, wake: make(chan struct{}, 1), pending: map[string]Checkpoint{}})
	}
	return w
}

// offer queues c for every sink, replacing an older undelivered checkpoint of its tenant.
func (w *witnesses) offer(c Checkpoint) {
	for _, s := range w.workers {
		s.offer(c)
	}
}

func (w *witnesses) run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, s := range w.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.run(ctx)
		}()
	}
	wg.Wait()
}

func (s *sinkWorker) offer(c Checkpoint) {
	s.mu.Lock()
	if old, ok := s.pending[c.Tenant]; !ok || !(old.KeyID == c.KeyID && old.Size > c.Size) {
		s.pending[c.Tenant] = c
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default: // a wake-up is already pending; it will see c
	}
}

func (s *sinkWorker) run(ctx context.Context) {
	wait := s.retry
	for {
		failed := s.round(ctx)
		if ctx.Err() != nil {
			return
		}
		var retry <-chan time.Time
		var t *time.Timer
		if failed {
			t = time.NewTimer(wait)
			retry = t.C
			wait = min(wait*2, witnessRetryMax)
		} else {
			wait = s.retry
		}
		select {
		case <-ctx.Done():
		case <-s.wake:
		case <-retry:
		}
		if t != nil {
			t.Stop()
		}
	}
}

// round pushes every tenant's pending checkpoint once (tenants in turn, so each gets its chance
// in every round) and reports whether any was not taken.
func (s *sinkWorker) round(ctx context.Context) (failed bool) {
	s.mu.Lock()
	batch := make([]Checkpoint, 0, len(s.pending))
	for _, c := range s.pending {
		batch = append(batch, c)
	}
	s.mu.Unlock()
	sort.Slice(batch, func(i, j int) bool { return batch[i].Tenant < batch[j].Tenant })
	for _, c := range batch {
		if ctx.Err() != nil {
			return true
		}
		if err := s.sink.Push(ctx, c); err != nil {
			if ctx.Err() == nil {
				s.log.Error("audit: witness did not take the checkpoint; retrying", "witness", s.sink.Name(), "tenant", c.Tenant, "size", c.Size, "err", err)
			}
			s.failures.Add(1)
			failed = true
			continue
		}
		s.mu.Lock()
		if cur, ok := s.pending[c.Tenant]; ok && cur.Size == c.Size && cur.Signature == c.Signature {
			delete(s.pending, c.Tenant) // not if a newer one came in meanwhile
		}
		s.mu.Unlock()
	}
	return failed
}

// redactURL hides what may be a credential in a witness URL (user:password@, the query, the
// fragment) before it reaches a log line or an error.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<unparsable URL>"
	}
	u.User = nil
	if u.RawQuery != "" {
		u.RawQuery = "redacted"
	}
	u.Fragment, u.RawFragment = "", ""
	return u.String()
}

// redactErr replaces the URL an *url.Error carries (net/http puts the full request URL in its
// errors) with its redacted form.
func redactErr(err error, raw string) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return &url.Error{Op: ue.Op, URL: redactURL(raw), Err: ue.Err}
	}
	return err
}
