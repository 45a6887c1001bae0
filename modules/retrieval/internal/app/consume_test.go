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
func (f *fixture) apply(e app.DocEvent) { f.applyIn(e, nil) }

// applyIn is apply with e's place in its bus batch (app.PrepareBatch), as the bus gives it.
func (f *fixture) applyIn(e app.DocEvent, slot *app.BatchSlot) {
	f.t.Helper()
	err := f.rm.Update(func(tx *readmodel.Tx) error { return f.svc.ApplyToIndex(context.Background(), tx.Bucket(), e, slot) })
	if err != nil {
		f.t.Fatal(err)
	}
}

// applyBatch applies evs in order as one bus batch: the ingests know their batch (app.PrepareBatch
// gets the batch's ingests only, as bus.Prepare does).
func (f *fixture) applyBatch(evs ...app.DocEvent) {
	f.t.Helper()
	var ings []app.DocEvent
	for _, e := range evs {
		if e.Ingested != nil {
			ings = append(ings, e)
		}
	}
	slots := app.PrepareBatch(ings)
	k := 0
	for _, e := range evs {
		if e.Ingested == nil {
			f.applyIn(e, nil)
			continue
		}
		f.applyIn(e, slots[k])
		k++
	}
}

func (f *fixture) count(t tenant.ID) int {
	f.t.Helper()
	n, err := f.svc.Index.Count(context.Background(), t)
	if err != nil {
		f.t.Fatal(err)
	}
	return n
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

// A batch's ingests are written to the index together, ahead of their turn (consume.go), and the
// index still ends as the events in order say: a deletion between an ingest written ahead and its
// turn is applied and the ingest written again; a document's second ingest in the batch waits for
// its turn; an event applied again alone (after a rolled-back batch) changes nothing; another
// tenant's ingests in the batch are never written with acme's.
func TestIndexProjectionWritesABatchAheadInOrder(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	globex := tenant.MustParse("globex")
	rec := func(tn tenant.ID, docID, text string, deleted bool) app.DocEvent {
		e := f.record(docID, text, deleted)
		if tn != acme {
			// Its own stream in globex, at the next position.
			st := tenant.MustStream(tn, events.DocCategory, events.DocStreamKey(docID))
			cs := domain.ChunkText(docID, text, domain.DefaultChunkSize, 0)
			ing := &events.DocumentIngested{DocID: docID, Text: text, ContentHash: app.ContentHash(text), MaxChunkSize: domain.DefaultChunkSize,
				Chunks: domain.ToEvent(cs), EmbeddingModel: embeddings.HashedModelID}
			data, err := eventstore.NewEventData(events.TypeDocumentIngested, *ing)
			if err != nil {
				t.Fatal(err)
			}
			ar, err := f.store.Append(context.Background(), st, eventstore.Any, data)
			if err != nil {
				t.Fatal(err)
			}
			e = app.DocEvent{Tenant: tn, DocID: docID, Revision: ar.Events[0].Revision, Position: ar.Events[0].Position, Ingested: ing}
		}
		return e
	}
	a1 := rec(acme, "a", "alpha apples first", false)
	b1 := rec(acme, "b", "bravo bananas first", false)
	g1 := rec(globex, "g", "golf grapes of globex", false)
	bDel := rec(acme, "b", "", true)
	c1 := rec(acme, "c", "charlie cherries first", false)
	b2 := rec(acme, "b", "bravo blueberries second", false)
	a2 := rec(acme, "a", "alpha apricots second", false)

	f.applyIn(a1, app.PrepareBatch([]app.DocEvent{a1, b1, g1, c1, b2, a2})[0])
	// a1, b1 and c1 are in (b2 and a2 wait: their documents are in the group), globex's g1 is not.
	if n := f.count(acme); n != 3 {
		t.Fatalf("after the batch's first ingest acme has %d chunks, want 3 (a1, b1, c1 written together)", n)
	}
	if n := f.count(globex); n != 0 {
		t.Fatalf("globex's ingest was written with acme's: %d chunks", n)
	}
	// The rest of the batch in order, as the bus applies it.
	slots := app.PrepareBatch([]app.DocEvent{a1, b1, g1, c1, b2, a2})
	f.applyIn(b1, slots[1])
	f.applyIn(g1, slots[2])
	f.apply(bDel)
	if got := f.texts("bravo bananas"); strings.Contains(got, "bananas") {
		t.Fatalf("the deletion after b1 left it: %q", got)
	}
	f.applyIn(c1, slots[3])
	f.applyIn(b2, slots[4])
	f.applyIn(a2, slots[5])
	// Applied again alone, as after a rolled-back batch transaction: nothing changes.
	for _, e := range []app.DocEvent{a1, b1, c1, b2} {
		f.apply(e)
	}
	got := f.texts("alpha apples apricots bravo bananas blueberries charlie cherries")
	for _, want := range []string{"apricots", "blueberries", "cherries"} {
		if !strings.Contains(got, want) {
			t.Fatalf("%q missing: %q", want, got)
		}
	}
	for _, gone := range []string{"apples", "bananas"} {
		if strings.Contains(got, gone) {
			t.Fatalf("older %q still found: %q", gone, got)
		}
	}
	if n := f.count(acme); n != 3 {
		t.Fatalf("acme has %d chunks, want 3 (a2, b2, c1)", n)
	}
	if n := f.count(globex); n != 1 {
		t.Fatalf("globex has %d chunks, want 1", n)
	}
}

// A deletion between the batch's first ingest and a later ingest of the same document, which the
// first wrote ahead: the deletion removes what was written ahead, and the ingest, in its turn, is
// written again (the document ends with it). And a document whose last event in the batch is its
// deletion ends deleted.
func TestIndexProjectionBatchDeletionBetween(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	x0 := f.record("x", "xray xylophone zero", false)
	f.apply(x0)
	w1 := f.record("w", "whiskey walnuts first", false)
	xDel := f.record("x", "", true)
	x1 := f.record("x", "xray xerus first", false)
	y1 := f.record("y", "yankee yams first", false)
	yDel := f.record("y", "", true)
	f.applyIn(w1, app.PrepareBatch([]app.DocEvent{w1, x1, y1})[0])
	if n := f.count(acme); n != 3 { // w1, and x1 (in x0's place) and y1 written ahead
		t.Fatalf("after the batch's first ingest acme has %d chunks, want 3", n)
	}
	slots := app.PrepareBatch([]app.DocEvent{w1, x1, y1})
	f.apply(xDel)
	f.applyIn(x1, slots[1])
	f.applyIn(y1, slots[2])
	f.apply(yDel)
	got := f.texts("whiskey walnuts xray xylophone xerus yankee yams")
	if !strings.Contains(got, "walnuts") || !strings.Contains(got, "xerus") || strings.Contains(got, "xylophone") || strings.Contains(got, "yams") {
		t.Fatalf("want w1 and x1 only: %q", got)
	}
	if n := f.count(acme); n != 2 {
		t.Fatalf("acme has %d chunks, want 2", n)
	}
}
