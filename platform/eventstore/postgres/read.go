package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// ReadStream implements eventstore.Store.
func (s *Store) ReadStream(ctx context.Context, stream tenant.Stream, from uint64, max int) ([]eventstore.Event, error) {
	if stream.IsZero() {
		return nil, fmt.Errorf("%w: stream without tenant", eventstore.ErrInvalid)
	}
	if s.closed.Load() {
		return nil, eventstore.ErrClosed
	}
	evs, err := s.query(ctx, s.sql.readStream, stream.String(), clampInt64(from), s.now().UnixNano(), limit(max))
	if err != nil {
		return nil, s.mapErr(ctx, "read stream "+stream.String(), err)
	}
	return evs, nil
}

// ReadTenant implements eventstore.Store: the tenant is a column with an index on (tenant, position),
// matched exactly, so a tenant whose id prefixes another's never reads its events.
func (s *Store) ReadTenant(ctx context.Context, t tenant.ID, from eventstore.Position, max int) ([]eventstore.Event, error) {
	if t.IsZero() {
		return nil, fmt.Errorf("%w: read without tenant", eventstore.ErrInvalid)
	}
	if s.closed.Load() {
		return nil, eventstore.ErrClosed
	}
	evs, err := s.query(ctx, s.sql.readTenant, t.String(), clampInt64(uint64(from)), s.now().UnixNano(), limit(max))
	if err != nil {
		return nil, s.mapErr(ctx, "read tenant "+t.String(), err)
	}
	return evs, nil
}

// SetStreamMetadata implements eventstore.Store. The metadata lives in the stream's row: readers
// apply it in the same statement that selects events, so a truncation hides events from every read
// that starts after it commits.
func (s *Store) SetStreamMetadata(ctx context.Context, stream tenant.Stream, md eventstore.StreamMetadata) error {
	if stream.IsZero() {
		return fmt.Errorf("%w: stream without tenant", eventstore.ErrInvalid)
	}
	if md.MaxAge < 0 {
		return fmt.Errorf("%w: negative max age for %s", eventstore.ErrInvalid, stream)
	}
	if s.closed.Load() {
		return eventstore.ErrClosed
	}
	var maxAge, before *int64
	if md.MaxAge > 0 {
		v := int64(md.MaxAge)
		maxAge = &v
	}
	if md.TruncateBefore != nil {
		v := clampInt64(*md.TruncateBefore)
		before = &v
	}
	if _, err := s.pool.Exec(ctx, s.sql.setMetadata, stream.String(), stream.Tenant().String(), maxAge, before); err != nil {
		return s.mapErr(ctx, "set metadata of "+stream.String(), err)
	}
	return nil
}

// StreamMetadata implements eventstore.Store.
func (s *Store) StreamMetadata(ctx context.Context, stream tenant.Stream) (eventstore.StreamMetadata, error) {
	if stream.IsZero() {
		return eventstore.StreamMetadata{}, fmt.Errorf("%w: stream without tenant", eventstore.ErrInvalid)
	}
	if s.closed.Load() {
		return eventstore.StreamMetadata{}, eventstore.ErrClosed
	}
	var maxAge, before *int64
	err := s.pool.QueryRow(ctx, s.sql.getMetadata, stream.String()).Scan(&maxAge, &before)
	if err == pgx.ErrNoRows {
		return eventstore.StreamMetadata{}, nil
	}
	if err != nil {
		return eventstore.StreamMetadata{}, s.mapErr(ctx, "read metadata of "+stream.String(), err)
	}
	var md eventstore.StreamMetadata
	if maxAge != nil {
		md.MaxAge = time.Duration(*maxAge)
	}
	if before != nil {
		v := uint64(*before)
		md.TruncateBefore = &v
	}
	return md, nil
}

// query runs a statement that selects eventCols and decodes its rows.
func (s *Store) query(ctx context.Context, sql string, args ...any) ([]eventstore.Event, error) {
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []eventstore.Event
	for rows.Next() {
		e, err := decode(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// decode reads one row of eventCols.
func decode(rows pgx.Rows) (eventstore.Event, error) {
	var (
		e                  eventstore.Event
		pos, rev, ns       int64
		tenantName, stream string
	)
	if err := rows.Scan(&pos, &tenantName, &stream, &rev, &e.ID, &e.Type, &ns, &e.RequestID, &e.Actor,
		&e.CausationID, &e.CorrelationID, &e.Data, &e.Prev, &e.Hash, &e.User); err != nil {
		return e, fmt.Errorf("%w: %v", eventstore.ErrCorrupt, err)
	}
	t, err := tenant.Parse(tenantName)
	if err != nil {
		return e, fmt.Errorf("%w: event at position %d has tenant %q: %v", eventstore.ErrCorrupt, pos, tenantName, err)
	}
	e.Position, e.Revision, e.Tenant, e.Stream = eventstore.Position(pos), uint64(rev), t, stream
	e.Time = time.Unix(0, ns).UTC()
	return e, nil
}

// limit is the LIMIT parameter for max: NULL (no limit) when max <= 0.
func limit(max int) any {
	if max <= 0 {
		return nil
	}
	return int64(max)
}

// clampInt64 maps a uint64 position or revision onto bigint; anything past the largest bigint is
// past every stored value anyway.
func clampInt64(v uint64) int64 {
	if v > 1<<63-1 {
		return 1<<63 - 1
	}
	return int64(v)
}
