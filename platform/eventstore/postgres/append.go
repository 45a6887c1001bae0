package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// appendReq is one Append waiting for the committer.
type appendReq struct {
	ctx      context.Context
	stream   tenant.Stream
	expected eventstore.ExpectedRevision
	data     []eventstore.EventData
	done     chan struct{}

	// Set by the committer.
	events []eventstore.Event
	res    eventstore.AppendResult
	err    error
}

// Append implements eventstore.Store. Concurrent appends of this process are grouped into one
// transaction (up to MaxBatch), which shares one WAL flush among them; each is checked against its
// own expectation and fails or succeeds alone.
func (s *Store) Append(ctx context.Context, stream tenant.Stream, expected eventstore.ExpectedRevision, events ...eventstore.EventData) (eventstore.AppendResult, error) {
	if stream.IsZero() {
		return eventstore.AppendResult{}, fmt.Errorf("%w: stream without tenant", eventstore.ErrInvalid)
	}
	if len(events) == 0 {
		return eventstore.AppendResult{}, fmt.Errorf("%w: append to %s with no events", eventstore.ErrInvalid, stream)
	}
	if s.closed.Load() {
		return eventstore.AppendResult{}, eventstore.ErrClosed
	}
	r := &appendReq{ctx: ctx, stream: stream, expected: expected, data: events, done: make(chan struct{})}
	select {
	case s.reqs <- r:
	case <-s.quit:
		return eventstore.AppendResult{}, eventstore.ErrClosed
	case <-ctx.Done():
		return eventstore.AppendResult{}, ctx.Err()
	}
	// Once taken, the request is answered: the committer bounds its work by WriteTimeout, and a
	// caller that left now could not tell whether its events were recorded.
	<-r.done
	return r.res, r.err
}

// committer is the only goroutine that appends. Groups amortise the commit's flush; positions are
// serialised by the database anyway (the counter row), so a second committer would only wait.
func (s *Store) committer() {
	defer close(s.writerDone)
	group := make([]*appendReq, 0, s.cfg.MaxBatch)
	for {
		group = group[:0]
		select {
		case r := <-s.reqs:
			group = append(group, r)
		case <-s.quit:
			return
		}
	more:
		for len(group) < s.cfg.MaxBatch {
			select {
			case r := <-s.reqs:
				group = append(group, r)
			default:
				break more
			}
		}
		s.commitGroup(group)
		for _, r := range group {
			close(r.done)
		}
	}
}

// commitGroup appends the group's requests in one transaction, setting each request's result.
func (s *Store) commitGroup(group []*appendReq) {
	live := group[:0:0]
	for _, r := range group {
		if err := r.ctx.Err(); err != nil {
			r.err = err // the caller gave up before anything was sent
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.WriteTimeout)
	defer cancel()
	err := s.appendTx(ctx, live)
	var pe *pgconn.PgError
	if err != nil && len(live) > 1 && errors.As(err, &pe) && !transient(err) {
		// The server refused the group for something one request carries (a value it cannot store):
		// one at a time, so the others are not refused with it.
		for _, r := range live {
			r.err = nil
			if err := s.appendTx(ctx, []*appendReq{r}); err != nil {
				r.err = s.appendErr(err)
			}
		}
		return
	}
	if err != nil {
		err = s.appendErr(err)
		for _, r := range live {
			if r.err == nil {
				r.err = err
			}
		}
	}
}

// appendErr maps the error of an append transaction. errOutcomeUnknown is kept as it is.
func (s *Store) appendErr(err error) error {
	if errors.Is(err, eventstore.ErrStorageOutcomeUnknown) {
		return err
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" {
		// UNIQUE (stream, revision): the stream locks make this unreachable; if a writer that does not
		// take them (another program) raced us, it is still a conflict, not a failure.
		return fmt.Errorf("append: %w (%v)", eventstore.ErrConflict, err)
	}
	return s.mapErr(context.Background(), "append", err)
}

// head is a stream's state as the transaction sees it.
type head struct {
	exists bool
	last   uint64
	hash   string
}

// appendTx runs one append transaction for reqs. Requests whose expectation fails or whose data is
// invalid get their own error and are left out; the others are written together. A returned error
// applies to every request whose err is still nil.
//
// Two round trips: (1) BEGIN, make sure every stream has a row, lock the rows in name order and read
// their heads; (2) take the positions (the counter row, locked until COMMIT), insert the events,
// advance the streams, NOTIFY, COMMIT.
func (s *Store) appendTx(ctx context.Context, reqs []*appendReq) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	// A connection left inside a transaction (a failed batch) is destroyed by Release, not reused.
	defer conn.Release()

	names := make([]string, 0, len(reqs))
	for _, r := range reqs {
		names = append(names, r.stream.String())
	}
	slices.Sort(names)
	names = slices.Compact(names)
	tenants := make([]string, len(names))
	for i, n := range names {
		st, _ := tenant.ParseStream(n) // built from a tenant.Stream: parses
		tenants[i] = st.Tenant().String()
	}

	b := &pgx.Batch{}
	b.Queue("begin")
	b.Queue(s.sql.placeholders, names, tenants)
	b.Queue(s.sql.lockStreams, names)
	heads := make(map[string]*head, len(names))
	br := conn.SendBatch(ctx, b)
	if _, err := br.Exec(); err != nil {
		br.Close()
		return err
	}
	if _, err := br.Exec(); err != nil {
		br.Close()
		return err
	}
	rows, err := br.Query()
	if err == nil {
		for rows.Next() {
			var name, hash string
			var last *int64
			if err := rows.Scan(&name, &last, &hash); err != nil {
				rows.Close()
				br.Close()
				return err
			}
			h := &head{hash: hash}
			if last != nil {
				h.exists, h.last = true, uint64(*last)
			}
			heads[name] = h
		}
		rows.Close()
		err = rows.Err()
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}

	// Check and seal each request against the heads, in the order the callers arrived.
	now := s.now()
	var cols eventColumns
	var accepted []*appendReq
	for _, r := range reqs {
		h := heads[r.stream.String()]
		if h == nil {
			return fmt.Errorf("stream %s has no row after its insert", r.stream) // cannot happen: the placeholder insert made it
		}
		if !r.expected.Check(h.last, h.exists) {
			r.err = &eventstore.ConflictError{Stream: r.stream.String(), Expected: r.expected, Actual: h.last, Exists: h.exists}
			continue
		}
		first := uint64(0)
		if h.exists {
			first = h.last + 1
		}
		evs, err := eventstore.Prepare(r.ctx, r.stream, first, h.hash, now, r.data)
		if err == nil {
			err = storable(evs)
		}
		if err != nil {
			r.err = err
			continue
		}
		for i := range evs {
			cols.add(&evs[i])
		}
		r.events = evs
		last := evs[len(evs)-1]
		h.exists, h.last, h.hash = true, last.Revision, last.Hash
		accepted = append(accepted, r)
	}
	if len(accepted) == 0 {
		_, err := conn.Exec(ctx, "rollback")
		return err
	}
	var advNames, advHashes []string
	var advRevs []int64
	for _, n := range names {
		if h := heads[n]; h.exists {
			advNames, advRevs, advHashes = append(advNames, n), append(advRevs, int64(h.last)), append(advHashes, h.hash)
		}
	}

	n := int64(len(cols.id))
	b = &pgx.Batch{}
	b.Queue(s.sql.takePositions, n)
	b.Queue(s.sql.insertEvents, n, cols.tenant, cols.stream, cols.revision, cols.id, cols.typ, cols.timeNs,
		cols.requestID, cols.actor, cols.causationID, cols.correlationID, cols.data, cols.prev, cols.hash, cols.user)
	b.Queue(s.sql.advanceStreams, advNames, advRevs, advHashes)
	b.Queue(s.sql.notify, s.channel)
	hold := s.hooks.beforeCommit
	if hold == nil {
		b.Queue("commit")
	}
	var last int64
	br = conn.SendBatch(ctx, b)
	err = br.QueryRow().Scan(&last)
	for i := 0; err == nil && i < b.Len()-1; i++ {
		_, err = br.Exec()
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err == nil && hold != nil {
		hold(ctx)
		_, err = conn.Exec(ctx, "commit")
	}
	if err != nil {
		return commitErr(err)
	}

	// Positions were taken in the order of cols: last-n+1 … last.
	pos := eventstore.Position(last - n)
	for _, r := range accepted {
		for i := range r.events {
			pos++
			r.events[i].Position = pos
		}
		lastEv := r.events[len(r.events)-1]
		r.res = eventstore.AppendResult{NextExpected: lastEv.Revision, Position: lastEv.Position, Events: r.events}
	}
	s.notify.wake() // this process's subscriptions need not wait for the notification's round trip
	return nil
}

// commitErr maps a failure of the round trip that carries COMMIT. The server's refusal of a
// statement aborts the transaction: nothing was recorded. A connection that failed once the COMMIT
// may have been sent, or a server that ended the session (a FATAL error: shutdown, crash), leaves the
// outcome unknown: the server may have committed it before the failure.
func commitErr(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Severity != "FATAL" && pe.Severity != "PANIC" {
		return err
	}
	if pe == nil && pgconn.SafeToRetry(err) {
		return err // nothing was sent
	}
	return fmt.Errorf("append: %w: %w", eventstore.ErrStorageOutcomeUnknown, err)
}

// storable refuses text that a PostgreSQL text column cannot hold (a NUL byte, invalid UTF-8) before
// it reaches the server: the server would refuse the whole group for it.
func storable(evs []eventstore.Event) error {
	for i := range evs {
		e := &evs[i]
		for _, f := range [...]struct{ name, v string }{
			{"id", e.ID}, {"type", e.Type}, {"request id", e.RequestID}, {"actor", e.Actor},
			{"user", e.User}, {"causation id", e.CausationID}, {"correlation id", e.CorrelationID},
		} {
			if strings.IndexByte(f.v, 0) >= 0 || !utf8.ValidString(f.v) {
				return fmt.Errorf("%w: the %s of event %d for %s holds a NUL byte or invalid UTF-8", eventstore.ErrInvalid, f.name, i, e.Stream)
			}
		}
	}
	return nil
}

// eventColumns are the events of one transaction as column arrays, for one multi-row INSERT.
type eventColumns struct {
	tenant, stream, id, typ, requestID, actor, user, causationID, correlationID, prev, hash []string
	revision, timeNs                                                                        []int64
	data                                                                                    [][]byte
}

func (c *eventColumns) add(e *eventstore.Event) {
	c.tenant = append(c.tenant, e.Tenant.String())
	c.stream = append(c.stream, e.Stream)
	c.revision = append(c.revision, int64(e.Revision))
	c.id = append(c.id, e.ID)
	c.typ = append(c.typ, e.Type)
	c.timeNs = append(c.timeNs, e.Time.UnixNano())
	c.requestID = append(c.requestID, e.RequestID)
	c.actor = append(c.actor, e.Actor)
	c.user = append(c.user, e.User)
	c.causationID = append(c.causationID, e.CausationID)
	c.correlationID = append(c.correlationID, e.CorrelationID)
	c.data = append(c.data, e.Data)
	c.prev = append(c.prev, e.Prev)
	c.hash = append(c.hash, e.Hash)
}
