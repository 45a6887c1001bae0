package postgres

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// migration is one step of the schema. Steps are applied in order, once, each in the transaction
// that records it; a step is never edited after release (a change is a new step).
type migration struct {
	version     int
	description string
	sql         string // {s} stands for the quoted schema name
}

// migrations is the schema's history. The newest version is the one this binary writes.
var migrations = []migration{
	{1, "events, streams and the position counter", `
CREATE TABLE {s}.positions (
	only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
	last     bigint  NOT NULL -- the position of the newest committed event; taken and moved inside the appending transaction
);
INSERT INTO {s}.positions (last) VALUES (0);

CREATE TABLE {s}.streams (
	stream          text   PRIMARY KEY,
	tenant          text   NOT NULL,
	last_revision   bigint,                  -- NULL: no events yet (a row made for its metadata, or for its lock)
	last_hash       text   NOT NULL DEFAULT '',
	max_age_ns      bigint,                  -- NULL: keep forever
	truncate_before bigint                   -- NULL: all revisions readable
);

CREATE TABLE {s}.events (
	position       bigint PRIMARY KEY,
	tenant         text   NOT NULL,
	stream         text   NOT NULL,
	revision       bigint NOT NULL,
	id             text   NOT NULL,
	type           text   NOT NULL,
	time_ns        bigint NOT NULL,         -- Unix nanoseconds: the hash covers the time to the nanosecond, timestamptz keeps microseconds
	request_id     text   NOT NULL,
	actor          text   NOT NULL,
	causation_id   text   NOT NULL,
	correlation_id text   NOT NULL,
	data           bytea  NOT NULL,         -- the bytes as appended: jsonb would reorder keys and break the hash
	prev           text   NOT NULL,
	hash           text   NOT NULL,
	UNIQUE (stream, revision)
);
CREATE INDEX events_tenant_position ON {s}.events (tenant, position);
`},
	// The user the client asserted, apart from the actor (the authenticated credential). Existing
	// rows get '' (no user), which is what their hashes were computed with; a constant default
	// makes the column a catalogue change, not a rewrite of the table.
	{2, "events.user_id: the asserted user", `
ALTER TABLE {s}.events ADD COLUMN user_id text NOT NULL DEFAULT '';
`},
}

// latestVersion is the schema version this binary writes.
func latestVersion() int { return migrations[len(migrations)-1].version }

// migrate brings schema up to latestVersion. It is idempotent and safe to run from several
// processes at once: a transaction-level advisory lock keyed by the schema serialises them, and a
// process that finds the schema current does nothing.
func migrate(ctx context.Context, pool *pgxpool.Pool, schema string) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('crispy.eventstore'), hashtext($1))`, schema); err != nil {
		return fmt.Errorf("lock the schema for migration: %w", err)
	}
	q := pgx.Identifier{schema}.Sanitize()
	if _, err := tx.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+q); err != nil {
		return fmt.Errorf("create schema %s: %w", schema, err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+q+`.schema_migrations (
		version     integer     PRIMARY KEY,
		description text        NOT NULL,
		applied_at  timestamptz NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("create %s.schema_migrations: %w", schema, err)
	}
	var cur int
	if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM `+q+`.schema_migrations`).Scan(&cur); err != nil {
		return fmt.Errorf("read the schema version: %w", err)
	}
	if cur > latestVersion() {
		return fmt.Errorf("%w: schema %s is at version %d, newer than this binary knows (%d); run a newer crispy", errSchemaNewer, schema, cur, latestVersion())
	}
	for _, m := range migrations {
		if m.version <= cur {
			continue
		}
		if _, err := tx.Exec(ctx, strings.ReplaceAll(m.sql, "{s}", q)); err != nil {
			return fmt.Errorf("migrate schema %s to version %d (%s): %w", schema, m.version, m.description, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO `+q+`.schema_migrations (version, description) VALUES ($1, $2)`, m.version, m.description); err != nil {
			return fmt.Errorf("record schema version %d: %w", m.version, err)
		}
	}
	return tx.Commit(ctx)
}
