package postgres

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/request"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// TestIntegrationUserColumnMigratesAnExistingTable: a schema at version 1 (no user_id column), with
// events in it as that version wrote them, is migrated on open; its events read with no user and
// still verify, and new events with a user continue their chains and read back with it.
func TestIntegrationUserColumnMigratesAnExistingTable(t *testing.T) {
	url := pgURL(t)
	schema := testSchema(t, url)
	q := pgx.Identifier{schema}.Sanitize()
	conn, err := pgx.Connect(bg(t), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	// The schema exactly as version 1 left it.
	for _, sql := range []string{
		`CREATE SCHEMA ` + q,
		`CREATE TABLE ` + q + `.schema_migrations (version integer PRIMARY KEY, description text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`,
		strings.ReplaceAll(migrations[0].sql, "{s}", q),
		`INSERT INTO ` + q + `.schema_migrations (version, description) VALUES (1, 'v1')`,
	} {
		if _, err := conn.Exec(bg(t), sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	st := tenant.MustStream(acme, "session", "old")
	old, err := eventstore.Prepare(request.With(bg(t), request.Info{ID: "req-old", Actor: "user:alice"}), st, 0, "",
		time.Date(2026, 11, 1, 12, 0, 0, 123456789, time.UTC), []eventstore.EventData{ev(0), ev(1)})
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range old {
		if _, err := conn.Exec(bg(t), `INSERT INTO `+q+`.events (position, tenant, stream, revision, id, type, time_ns, request_id, actor, causation_id, correlation_id, data, prev, hash)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`, i+1, e.Tenant.String(), e.Stream, int64(e.Revision), e.ID, e.Type, e.Time.UnixNano(),
			e.RequestID, e.Actor, e.CausationID, e.CorrelationID, []byte(e.Data), e.Prev, e.Hash); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := conn.Exec(bg(t), `INSERT INTO `+q+`.streams (stream, tenant, last_revision, last_hash) VALUES ($1, $2, 1, $3)`, st.String(), "acme", old[1].Hash); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(bg(t), `UPDATE `+q+`.positions SET last = 2`); err != nil {
		t.Fatal(err)
	}

	s := openTest(t, url, schema, nil)
	ctx := request.With(bg(t), request.Info{ID: "req-new", Actor: "key:0123456789ab", User: "alice"})
	if _, err := s.Append(ctx, st, eventstore.Exact(1), ev(2)); err != nil {
		t.Fatal(err)
	}
	got, err := s.ReadTenant(bg(t), acme, eventstore.Start, 0)
	if err != nil {
		t.Fatal(err)
	}
	v := eventstore.NewChainVerifier()
	for i := range got {
		if err := v.Check(&got[i]); err != nil {
			t.Fatalf("after the migration: %v", err)
		}
	}
	if len(got) != 3 || got[0].User != "" || got[0].Actor != "user:alice" || got[0].Hash != old[0].Hash ||
		got[2].User != "alice" || got[2].Actor != "key:0123456789ab" {
		t.Fatalf("after the migration read %+v", got)
	}
}
