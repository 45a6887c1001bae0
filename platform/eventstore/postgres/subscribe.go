package postgres

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// Subscribe implements eventstore.Store. It reads pages of events in position order from its cursor;
// at the end it reports the live end (opts.CaughtUp) and then waits for a notification (LISTEN/NOTIFY,
// or this process's own appends) or the poll interval, whichever comes first. Because positions are
// gapless and commit in order (package documentation), every read sees a prefix of the log: moving
// the cursor past what it read never skips an event that commits later.
//
// A database that cannot be reached does not end the subscription: it retries with back-off and
// resumes from its cursor, so a projection survives a database restart.
func (s *Store) Subscribe(ctx context.Context, opts eventstore.SubscribeOptions, h eventstore.Handler) error {
	s.startListener()
	next := opts.From
	if next < 1 {
		next = 1
	}
	reported := opts.CaughtUp == nil
	poll := time.NewTicker(s.cfg.PollInterval)
	defer poll.Stop()
	var failing time.Time // since when reads fail; zero while they work
	backoff := 50 * time.Millisecond
	for {
		if s.closed.Load() {
			return eventstore.ErrClosed
		}
		wake := s.notify.wait() // before the read: a wake-up during the read is not lost
		evs, last, err := s.page(ctx, opts.Tenant, next)
		if err != nil {
			switch {
			case ctx.Err() != nil:
				return nil
			case s.closed.Load():
				return eventstore.ErrClosed
			case !errors.Is(err, eventstore.ErrStorageUnavailable):
				return err
			}
			if failing.IsZero() {
				failing = time.Now()
				s.log.Warn("postgres: a subscription cannot read; retrying until the database answers", "from", next, "err", err)
			}
			if !s.sleep(ctx, backoff) {
				return s.endErr(ctx)
			}
			backoff = min(2*backoff, 2*time.Second)
			continue
		}
		if !failing.IsZero() {
			s.log.Info("postgres: a subscription reads again", "from", next, "after", time.Since(failing).Round(time.Millisecond))
			failing, backoff = time.Time{}, 50*time.Millisecond
		}
		for _, e := range evs {
			if err := h(ctx, e); err != nil {
				return err
			}
			next = e.Position + 1
		}
		if len(evs) == s.cfg.PageSize {
			continue
		}
		// Everything readable up to last is delivered: skip hidden events for good.
		if next <= last {
			next = last + 1
		}
		if !reported {
			reported = true
			if err := opts.CaughtUp(ctx, last); err != nil {
				return err
			}
			continue
		}
		if s.hooks.polled != nil {
			s.hooks.polled()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.quit:
			return eventstore.ErrClosed
		case <-wake:
		case <-poll.C:
		}
	}
}

// page reads up to PageSize readable events from next on, and the store's last position as it was
// before that read: every event up to it is visible to the read (positions commit in order), so when
// the page is not full the subscription has delivered everything up to last. One round trip.
func (s *Store) page(ctx context.Context, t tenant.ID, next eventstore.Position) ([]eventstore.Event, eventstore.Position, error) {
	b := &pgx.Batch{}
	b.Queue(s.sql.lastPosition)
	now := s.now().UnixNano()
	if t.IsZero() {
		b.Queue(s.sql.pageAll, clampInt64(uint64(next)), now, int64(s.cfg.PageSize))
	} else {
		b.Queue(s.sql.pageTenant, t.String(), clampInt64(uint64(next)), now, int64(s.cfg.PageSize))
	}
	br := s.pool.SendBatch(ctx, b)
	var last int64
	err := br.QueryRow().Scan(&last)
	var evs []eventstore.Event
	if err == nil {
		var rows pgx.Rows
		rows, err = br.Query()
		if err == nil {
			evs = make([]eventstore.Event, 0, 16)
			for rows.Next() {
				var e eventstore.Event
				if e, err = decode(rows); err != nil {
					break
				}
				evs = append(evs, e)
			}
			rows.Close()
			if err == nil {
				err = rows.Err()
			}
		}
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, 0, s.mapErr(ctx, "subscription read", err)
	}
	return evs, eventstore.Position(last), nil
}

func (s *Store) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-s.quit:
		return false
	}
}

// endErr is what a subscription returns when it stops waiting: nil when its context ended, else
// ErrClosed.
func (s *Store) endErr(ctx context.Context) error {
	if ctx.Err() != nil {
		return nil
	}
	return eventstore.ErrClosed
}

// notifier wakes every waiting subscription at once: wait hands out the current channel, wake
// closes it and makes the next.
type notifier struct {
	mu sync.Mutex
	ch chan struct{}
}

func newNotifier() *notifier { return &notifier{ch: make(chan struct{})} }

func (n *notifier) wait() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.ch
}

func (n *notifier) wake() {
	n.mu.Lock()
	close(n.ch)
	n.ch = make(chan struct{})
	n.mu.Unlock()
}

// startListener starts the one LISTEN connection of the store, on the first subscription (commands
// that never subscribe never open it).
func (s *Store) startListener() {
	s.listenOnce.Do(func() {
		if s.closed.Load() {
			return
		}
		s.listenOn.Store(true)
		go s.listen(s.listenCtx)
	})
}

// listen keeps a connection that LISTENs on the store's channel and wakes the subscriptions on every
// notification. The connection is its own (not the pool's): it sits in WaitForNotification. When it
// breaks, the subscriptions are woken (to poll: notifications are lost from now on) and it
// reconnects with back-off; once LISTENing again it wakes them once more for what it missed.
func (s *Store) listen(ctx context.Context) {
	defer close(s.listenDone)
	backoff := 100 * time.Millisecond
	var down time.Time
	for ctx.Err() == nil {
		err := s.listenConn(ctx, func() {
			if !down.IsZero() {
				s.log.Info("postgres: live notifications are back", "after", time.Since(down).Round(time.Millisecond))
				down = time.Time{}
			}
			backoff = 100 * time.Millisecond
		})
		s.listening.Store(false)
		if ctx.Err() != nil {
			return
		}
		s.notify.wake()
		if down.IsZero() {
			down = time.Now()
			s.log.Warn("postgres: live notifications interrupted; subscriptions poll until they are back", "err", err, "poll", s.cfg.PollInterval)
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// listenIdle is how long the listener waits for a notification before it checks that its connection
// still answers: a server that vanished without closing the connection would otherwise leave it
// waiting for good, and Health would not notice.
const listenIdle = 15 * time.Second

func (s *Store) listenConn(ctx context.Context, up func()) error {
	cctx, cancel := context.WithTimeout(ctx, s.cfg.WriteTimeout)
	conn, err := pgx.ConnectConfig(cctx, s.cfg.pool.ConnConfig.Copy())
	cancel()
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{s.channel}.Sanitize()); err != nil {
		return err
	}
	s.listening.Store(true)
	up()
	s.notify.wake() // what was appended while nobody listened
	for {
		wctx, cancel := context.WithTimeout(ctx, listenIdle)
		_, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil:
			s.notify.wake()
		case ctx.Err() != nil:
			return ctx.Err()
		case pgconn.Timeout(err) || errors.Is(err, context.DeadlineExceeded):
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err = conn.Ping(pctx)
			cancel()
			if err != nil {
				return err
			}
		default:
			return err
		}
	}
}
