package retrieval_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/crispy-enigma/crispy/modules/retrieval"
	"github.com/crispy-enigma/crispy/platform/eventstore/postgres"
	"github.com/crispy-enigma/crispy/platform/eventstore/postgres/pgtest"
	keyspostgres "github.com/crispy-enigma/crispy/platform/keystore/postgres"
	"github.com/crispy-enigma/crispy/platform/sealing"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// TestIntegrationDocumentErasureOnPostgres: two replicas share a PostgreSQL event store and key
// store (each with its own embedded index). The events table never holds the document's text; the
// other replica finds it, then, once the first deletes it, neither finds it, its key row is
// destroyed, and the log's hash chains still verify. Needs CRISPY_POSTGRES_URL.
func TestIntegrationDocumentErasureOnPostgres(t *testing.T) {
	url := pgtest.URL(t)
	schema := pgtest.Schema(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	raw, err := postgres.Open(ctx, postgres.Config{URL: url, Schema: schema}, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	keys, err := keyspostgres.Open(ctx, url, schema, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { keys.Close() })
	sealer := sealing.New(keys)
	store := sealing.NewStore(raw, sealer, retrieval.SealingPolicy)
	a := newEnv(t, opts{store: store, index: openIndex(t, ""), sealer: sealer})
	b := newEnv(t, opts{store: store, index: openIndex(t, ""), sealer: sealer})

	marker := uniqueMarker()
	a.mustIngest("acme", "memo", "The "+marker+" memo.")
	a.mustIngest("acme", "other", parking)
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	holding := func(s string) int { // events whose stored bytes contain s
		var n int
		q := "SELECT count(*) FROM " + pgx.Identifier{schema, "events"}.Sanitize() + " WHERE position(convert_to($1, 'UTF8') in data) > 0"
		if err := conn.QueryRow(ctx, q, s).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := holding(marker); n != 0 {
		t.Fatalf("%d events hold the text in plain", n)
	}
	must(t, b.bus.Sync(ctx))
	q := map[string]any{"query": "the " + marker + " memo", "answer": false}
	if r := b.search("acme", q); r.status != 200 || !strings.Contains(allText(r), marker) {
		t.Fatalf("B before the deletion: %d %s", r.status, r.raw)
	}
	if r := a.do("DELETE", "/documents/memo", "acme", nil); r.status != 200 {
		t.Fatalf("delete on A: %d %s", r.status, r.raw)
	}
	must(t, b.bus.Sync(ctx))
	for name, e := range map[string]*env{"A": a, "B": b} {
		if r := e.search("acme", q); r.status != 200 || strings.Contains(r.raw, marker) {
			t.Fatalf("%s after the deletion: %d %s", name, r.status, r.raw)
		}
	}
	var live int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{schema, "data_keys"}.Sanitize()+
		" WHERE tenant = 'acme' AND id LIKE 'document/%' AND key IS NOT NULL").Scan(&live); err != nil {
		t.Fatal(err)
	}
	if live != 1 { // "other"'s
		t.Fatalf("%d live document keys of acme, want 1", live)
	}
	if n := holding(marker); n != 0 {
		t.Fatalf("%d events hold the text in plain after the deletion", n)
	}
	if n := holding(`"docId":"memo"`); n == 0 { // the query sees the data: the deletion is plain
		t.Fatal("no event holds the deletion's docId: the query for the text saw nothing")
	}
	verifyChains(t, raw, tenant.MustParse("acme"))
}
