package app_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/modules/retrieval/events"
	"github.com/crispy-enigma/crispy/modules/retrieval/internal/app"
	"github.com/crispy-enigma/crispy/modules/retrieval/internal/domain"
	"github.com/crispy-enigma/crispy/platform/ai/embeddings"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/readmodel"
	"github.com/crispy-enigma/crispy/platform/search/embedded"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

var acme = tenant.MustParse("acme")

type fixture struct {
	t     *testing.T
	svc   *app.Service
	store eventstore.Store
	rm    *readmodel.Store
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ix, err := embedded.Open(embedded.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ix.Close() })
	res, err := embeddings.NewResolver(embeddings.Config{})
	if err != nil {
		t.Fatal(err)
	}
	rm, err := readmodel.Open(filepath.Join(t.TempDir(), "index.db"), readmodel.Options{Version: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rm.Close() })
	store := eventstoretest.NewMemory()
	svc := &app.Service{Store: store, Index: ix, Embedders: res, Cache: app.NewCache(time.Hour, 100, time.Now), Stats: app.NewStats(),
		Log: slog.New(slog.DiscardHandler), Now: time.Now, MaxTextChars: 500_000, Consumed: true}
	return &fixture{t: t, svc: svc, store: store, rm: rm}
}

// record appends a document event and returns it as the consumers get it.
func (f *fixture) record(docID, text string, deleted bool) app.DocEvent {
	f.t.Helper()
	st := tenant.MustStream(acme, events.DocCategory, events.DocStreamKey(docID))
	var data eventstore.EventData
	var ing *events.DocumentIngested
	var err error
	if deleted {
		data, err = eventstore.NewEventData(events.TypeDocumentDeleted, events.DocumentDeleted{DocID: docID})
	} else {
		cs := domain.ChunkText(docID, text, domain.DefaultChunkSize, 0)
		ing = &events.DocumentIngested{DocID: docID, Text: text, ContentHash: app.ContentHash(text), MaxChunkSize: domain.DefaultChunkSize,
			Chunks: domain.ToEvent(cs), EmbeddingModel: embeddings.HashedModelID}
		data, err = eventstore.NewEventData(events.TypeDocumentIngested, *ing)
	}
	if err != nil {
		f.t.Fatal(err)
	}
	ar, err := f.store.Append(context.Background(), st, eventstore.Any, data)
	if err != nil {
		f.t.Fatal(err)
	}
	e := ar.Events[0]
	return app.DocEvent{Tenant: acme, DocID: docID, Revision: e.Revision, Position: e.Position, Ingested: ing}
}

// apply runs the embedded index projection's handler in a transaction of its own, as the bus does.
func (f *fixture) apply(e app.DocEvent) {
	f.t.Helper()
	err := f.rm.Update(func(tx *readmodel.Tx) error { return f.svc.ApplyToIndex(context.Background(), tx.Bucket(), e) })
	if err != nil {
		f.t.Fatal(err)
	}
}

// texts is what a search of docID finds.
func (f *fixture) texts(query string) string {
	f.t.Helper()
	srcs, err := f.svc.Retrieve(context.Background(), acme, query, 10)
	if err != nil {
		f.t.Fatal(err)
	}
	var b strings.Builder
	for _, s := range srcs {
		b.WriteString(s.Text + " | ")
	}
	return b.String()
}

// The embedded index's projection: a redelivered older revision changes nothing, and an ingest older
// than a delete does not bring the document back.
func TestIndexProjectionIsIdempotentByRevision(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	v1 := f.record("d", "alpha version one of the handbook", false)
	v2 := f.record("d", "bravo version two of the handbook", false)
	f.apply(v1)
	f.apply(v2)
	f.apply(v1) // redelivered, older
	if got := f.texts("alpha bravo handbook"); !strings.Contains(got, "bravo") || strings.Contains(got, "alpha") {
		t.Fatalf("after v1, v2, v1 again: %q", got)
	}
	f.apply(v2) // redelivered, same
	del := f.record("d", "", true)
	f.apply(del)
	f.apply(v2) // an older ingest after the delete
	f.apply(v1)
	if got := f.texts("alpha bravo handbook"); got != "" {
		t.Fatalf("an ingest older than the delete resurrected the document: %q", got)
	}
}

// The shared index's processor: the same, checked against the store's revisions (no local state,
// since any replica may handle any event).
func TestSharedIndexWriterIsIdempotentByRevision(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	v1 := f.record("d", "alpha version one of the handbook", false)
	v2 := f.record("d", "bravo version two of the handbook", false)
	for _, e := range []app.DocEvent{v1, v2, v1} {
		if err := f.svc.WriteShared(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	if got := f.texts("alpha bravo handbook"); !strings.Contains(got, "bravo") || strings.Contains(got, "alpha") {
		t.Fatalf("after v1, v2, v1 again: %q", got)
	}
	del := f.record("d", "", true)
	for _, e := range []app.DocEvent{del, v2, v1} { // the delete first, then older ingests redelivered
		if err := f.svc.WriteShared(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	if got := f.texts("alpha bravo handbook"); got != "" {
		t.Fatalf("an ingest older than the delete resurrected the document: %q", got)
	}
}
