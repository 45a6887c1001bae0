package retrieval_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/modules/retrieval"
	"github.com/crispy-enigma/crispy/modules/retrieval/events"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	storeembedded "github.com/crispy-enigma/crispy/platform/eventstore/embedded"
	"github.com/crispy-enigma/crispy/platform/keystore"
	keysembedded "github.com/crispy-enigma/crispy/platform/keystore/embedded"
	"github.com/crispy-enigma/crispy/platform/sealing"
	"github.com/crispy-enigma/crispy/platform/search"
	"github.com/crispy-enigma/crispy/platform/tenant"

	"github.com/crispy-enigma/crispy/platform/erasuretest"
)

// sealedFolder is a data folder as serve lays it out, with sealing on: the embedded event store
// behind the sealing decorator, the embedded key store, the embedded index on disk and the bus's
// read models, all under dir.
type sealedFolder struct {
	dir    string
	raw    *storeembedded.Store
	store  *sealing.Store
	keys   *keysembedded.Store
	sealer *sealing.Sealer
	index  search.Index
}

func openSealedFolder(t *testing.T) *sealedFolder {
	t.Helper()
	dir := t.TempDir()
	raw, err := storeembedded.Open(filepath.Join(dir, "events"), storeembedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	keys, err := keysembedded.Open(filepath.Join(dir, "keys", "keys.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { keys.Close() })
	sealer := sealing.New(keys)
	return &sealedFolder{dir: dir, raw: raw, keys: keys, sealer: sealer, index: openIndex(t, filepath.Join(dir, "index")),
		store: sealing.NewStore(raw, sealer, retrieval.SealingPolicy)}
}

func (f *sealedFolder) env(t *testing.T, shared bool) *env {
	return newEnv(t, opts{store: f.store, index: f.index, sealer: f.sealer, busDir: filepath.Join(f.dir, "bus"), shared: shared})
}

// verifyChains recomputes every stored hash of t's raw events and checks each stream's links, as
// crispy verify does: erasure must leave the log as it was written.
func verifyChains(t *testing.T, raw eventstore.Store, tn tenant.ID) int {
	t.Helper()
	evs, err := raw.ReadTenant(context.Background(), tn, eventstore.Start, 0)
	if err != nil {
		t.Fatal(err)
	}
	last := map[string]string{}
	for _, e := range evs {
		if e.Prev != last[e.Stream] {
			t.Fatalf("%s@%d: prev %q, the stream's last hash is %q", e.Stream, e.Revision, e.Prev, last[e.Stream])
		}
		h, err := eventstore.ComputeHash(e.Prev, &e)
		if err != nil || h != e.Hash {
			t.Fatalf("%s@%d: hash %s, recomputed %s (%v)", e.Stream, e.Revision, e.Hash, h, err)
		}
		last[e.Stream] = e.Hash
	}
	return len(evs)
}

func uniqueMarker() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return "zebraquartz" + hex.EncodeToString(b)
}

// TestDeletedDocumentIsErasedEverywhere is issue 12 §4 for documents: the text is sealed at rest
// from the ingest on (no file of the data folder holds it), the owner's search finds it and
// another tenant can neither find nor delete it; once deleted, search no longer finds it, its
// keys are destroyed, its ingest reads back as erased, and the log still verifies.
func TestDeletedDocumentIsErasedEverywhere(t *testing.T) {
	f := openSealedFolder(t)
	e := f.env(t, false)
	marker := uniqueMarker()
	text := "The quarterly " + marker + " report says revenue grew. " + strings.Repeat("Filler sentence about nothing. ", 60)
	if r := e.ingest("acme", "reports/q3", text, map[string]any{"title": "Q3 " + marker}); r.status != 200 {
		t.Fatalf("ingest: %d %s", r.status, r.raw)
	}
	e.mustIngest("acme", "other", parking)
	e.mustIngest("beta", "reports/q3", vacation) // beta's document of the same id is beta's own
	q := map[string]any{"query": "quarterly " + marker + " report", "answer": false}
	if r := e.search("acme", q); r.status != 200 || !strings.Contains(allText(r), marker) {
		t.Fatalf("acme's search before the deletion: %d %s", r.status, r.raw)
	}
	if r := e.search("beta", q); r.status != 200 || strings.Contains(r.raw, marker) {
		t.Fatalf("beta's search shows acme's document: %d %s", r.status, r.raw)
	}
	if r := e.do("DELETE", "/documents/reports%2Fq3", "gamma", nil); r.status != 404 {
		t.Fatalf("gamma deleting acme's document: %d %s", r.status, r.raw)
	}
	if err := e.index.Index.(search.Flusher).Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := erasuretest.FilesHolding(t, f.dir, []byte(marker)); len(got) > 0 {
		t.Fatalf("plaintext at rest before any deletion, in %v", got)
	}

	if r := e.do("DELETE", "/documents/reports%2Fq3", "acme", nil); r.status != 200 {
		t.Fatalf("delete: %d %s", r.status, r.raw)
	}
	if r := e.search("acme", q); r.status != 200 || strings.Contains(r.raw, marker) || len(sources(r)) == 0 {
		t.Fatalf("acme's search after the deletion (the other document still answers): %d %s", r.status, r.raw)
	}
	if r := e.search("beta", map[string]any{"query": "vacation days", "answer": false}); r.status != 200 || !strings.Contains(allText(r), "vacation") {
		t.Fatalf("beta's document of the same id went with acme's: %d %s", r.status, r.raw)
	}

	// The ingest reads back as erased; the deletion names the keys it destroyed, which are gone.
	ctx := context.Background()
	st := tenant.MustStream(tenant.MustParse("acme"), events.DocCategory, events.DocStreamKey("reports/q3"))
	evs, err := f.store.ReadStream(ctx, st, 0, 0)
	if err != nil || len(evs) != 2 || !evs[0].Erased || evs[1].Type != events.TypeDocumentDeleted {
		t.Fatalf("the document's stream after the deletion: %+v, %v", evs, err)
	}
	var del events.DocumentDeleted
	if err := evs[1].Decode(&del); err != nil || len(del.Keys) != 1 {
		t.Fatalf("deletion %s: %v", evs[1].Data, err)
	}
	if _, err := f.keys.Key(ctx, tenant.MustParse("acme"), del.Keys[0]); !errors.Is(err, keystore.ErrDestroyed) {
		t.Fatalf("the document's key after the deletion: %v", err)
	}
	if err := e.index.Index.(search.Flusher).Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := erasuretest.FilesHolding(t, f.dir, []byte(marker)); len(got) > 0 {
		t.Fatalf("plaintext at rest after the deletion, in %v", got)
	}
	if n := verifyChains(t, f.raw, tenant.MustParse("acme")); n < 3 {
		t.Fatalf("verified %d events", n)
	}

	// The same id can be ingested again: a new key, found again.
	e.mustIngest("acme", "reports/q3", "A new "+marker+" text.")
	if r := e.search("acme", q); r.status != 200 || !strings.Contains(allText(r), "A new "+marker) {
		t.Fatalf("search after the re-ingest: %d %s", r.status, r.raw)
	}
}

// TestErasingATenantErasesItsDocuments: destroying a tenant's keys (the key store's DestroyTenant)
// and ForgetTenant leave none of its documents searchable or readable, keep the other tenant's,
// and the log still verifies.
func TestErasingATenantErasesItsDocuments(t *testing.T) {
	f := openSealedFolder(t)
	e := f.env(t, false)
	ctx := context.Background()
	acme, beta := tenant.MustParse("acme"), tenant.MustParse("beta")
	marker := uniqueMarker()
	e.mustIngest("acme", "a1", "Plan "+marker+" for the launch.")
	e.mustIngest("acme", "a2", parking)
	e.mustIngest("beta", "b1", "Beta's "+marker+" plan stays.")
	q := map[string]any{"query": "plan " + marker, "answer": false}
	if r := e.search("acme", q); r.status != 200 || !strings.Contains(allText(r), marker) { // cached from now on
		t.Fatalf("acme's search: %d %s", r.status, r.raw)
	}

	if err := f.keys.DestroyTenant(ctx, acme); err != nil {
		t.Fatal(err)
	}
	if err := e.mod.ForgetTenant(ctx, acme); err != nil {
		t.Fatal(err)
	}
	if r := e.search("acme", q); r.status != 200 || len(sources(r)) != 0 {
		t.Fatalf("acme's search after its erasure (a cached answer would show it): %d %s", r.status, r.raw)
	}
	if n, err := e.index.Count(ctx, acme); err != nil || n != 0 {
		t.Fatalf("acme's chunks left in the index: %d, %v", n, err)
	}
	evs, err := f.store.ReadTenant(ctx, acme, eventstore.Start, 0)
	if err != nil {
		t.Fatal(err)
	}
	ingests := 0
	for _, ev := range evs {
		if ev.Type == events.TypeDocumentIngested {
			ingests++
			if !ev.Erased {
				t.Fatalf("acme's ingest %s@%d still reads: %s", ev.Stream, ev.Revision, ev.Data)
			}
		}
	}
	if ingests != 2 {
		t.Fatalf("%d ingests of acme read back", ingests)
	}
	if r := e.search("beta", q); r.status != 200 || !strings.Contains(allText(r), "Beta's "+marker) {
		t.Fatalf("beta's search after acme's erasure: %d %s", r.status, r.raw)
	}
	verifyChains(t, f.raw, acme)
	verifyChains(t, f.raw, beta)

	// acme can start over: a new document is ingested, found, and the erased ones do not come back.
	e.mustIngest("acme", "a3", "Fresh start for "+marker+" plans.")
	if r := e.search("acme", q); r.status != 200 || len(sources(r)) != 1 || !strings.Contains(allText(r), "Fresh start") {
		t.Fatalf("acme's search after a new ingest: %d %s", r.status, r.raw)
	}
}

// TestDeletionOnOneReplicaDropsAnotherReplicasCachedAnswer: two replicas share the store and the
// key store (as with PostgreSQL), each with its own index and search cache. B has cached an answer
// quoting the document; once A deletes it and B has seen the deletion, B answers without it (not
// from its cache), and B cannot open the text either (the key is gone for both).
func TestDeletionOnOneReplicaDropsAnotherReplicasCachedAnswer(t *testing.T) {
	f := openSealedFolder(t)
	cfg := retrieval.Config{CacheTTL: time.Hour}
	a := newEnv(t, opts{store: f.store, index: openIndex(t, ""), sealer: f.sealer, config: cfg})
	b := newEnv(t, opts{store: f.store, index: openIndex(t, ""), sealer: f.sealer, config: cfg})
	marker := uniqueMarker()
	a.mustIngest("acme", "memo", "The "+marker+" memo.")
	a.mustIngest("acme", "other", parking)
	must(t, b.bus.Sync(context.Background()))
	q := map[string]any{"query": "the " + marker + " memo", "answer": false}
	for range 2 {
		if r := b.search("acme", q); r.status != 200 || !strings.Contains(allText(r), marker) {
			t.Fatalf("B before the deletion: %d %s", r.status, r.raw)
		}
	}
	if r := b.search("acme", q); r.body["cached"] != true {
		t.Fatalf("B did not cache its answer: %s", r.raw)
	}
	if r := a.do("DELETE", "/documents/memo", "acme", nil); r.status != 200 {
		t.Fatalf("delete on A: %d %s", r.status, r.raw)
	}
	must(t, b.bus.Sync(context.Background()))
	if r := b.search("acme", q); r.status != 200 || r.body["cached"] == true || strings.Contains(r.raw, marker) {
		t.Fatalf("B after A's deletion: %d %s", r.status, r.raw)
	}
}

// TestReindexAfterADeletionKeepsItErased: crispy reindex reads the log again; the erased ingest
// (no docId left in it) neither fails the rebuild nor comes back, the other documents are indexed
// again with their text sealed.
func TestReindexAfterADeletionKeepsItErased(t *testing.T) {
	f := openSealedFolder(t)
	e := f.env(t, false)
	marker := uniqueMarker()
	e.mustIngest("acme", "gone", "The "+marker+" secret.")
	e.mustIngest("acme", "kept", "The "+marker+" public note.")
	if r := e.do("DELETE", "/documents/gone", "acme", nil); r.status != 200 {
		t.Fatalf("delete: %d %s", r.status, r.raw)
	}
	res, err := e.mod.Reindex(context.Background(), tenant.MustParse("acme"), nil)
	if err != nil || res.Documents != 1 {
		t.Fatalf("reindex: %+v, %v", res, err)
	}
	r := e.search("acme", map[string]any{"query": "the " + marker, "answer": false})
	if r.status != 200 || len(sources(r)) != 1 || !strings.Contains(allText(r), "public note") || strings.Contains(r.raw, "secret") {
		t.Fatalf("search after the reindex: %d %s", r.status, r.raw)
	}
	if err := e.index.Index.(search.Flusher).Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := erasuretest.FilesHolding(t, f.dir, []byte(marker)); len(got) > 0 {
		t.Fatalf("plaintext at rest after the reindex, in %v", got)
	}
}

// downKeys is a key store whose Destroy fails while down is set, as a PostgreSQL key store that
// does not answer.
type downKeys struct {
	keystore.Store
	down atomic.Bool
}

func (k *downKeys) Destroy(ctx context.Context, t tenant.ID, id string) error {
	if k.down.Load() {
		return errors.New("key store unreachable")
	}
	return k.Store.Destroy(ctx, t, id)
}

// TestDeletionWhileTheKeyStoreIsDownFinishesLater: a DELETE whose keys cannot be destroyed answers
// 503 saying the deletion was recorded (not a success, not a silent keep); the document is gone
// from search at once, and once the key store answers the deletion's processor destroys the key
// without another request.
func TestDeletionWhileTheKeyStoreIsDownFinishesLater(t *testing.T) {
	f := openSealedFolder(t)
	keys := &downKeys{Store: f.keys}
	f.sealer = sealing.New(keys)
	f.store = sealing.NewStore(f.raw, f.sealer, retrieval.SealingPolicy)
	e := f.env(t, false)
	marker := uniqueMarker()
	e.mustIngest("acme", "memo", "The "+marker+" memo.")
	keys.down.Store(true)
	r := e.do("DELETE", "/documents/memo", "acme", nil)
	if r.status != 503 || !strings.Contains(r.raw, "recorded") {
		t.Fatalf("delete while the key store is down: %d %s", r.status, r.raw)
	}
	if r := e.search("acme", map[string]any{"query": "the " + marker, "answer": false}); r.status != 200 || strings.Contains(r.raw, marker) {
		t.Fatalf("search after the recorded deletion: %d %s", r.status, r.raw)
	}
	ctx := context.Background()
	st := tenant.MustStream(tenant.MustParse("acme"), events.DocCategory, events.DocStreamKey("memo"))
	evs, err := f.store.ReadStream(ctx, st, 0, 0)
	if err != nil || len(evs) != 2 || evs[0].Erased {
		t.Fatalf("before the key store is back the ingest still reads (its key lives): %+v, %v", evs, err)
	}
	keys.down.Store(false)
	must(t, e.bus.Sync(ctx)) // the processor waits the outage out
	if evs, err = f.store.ReadStream(ctx, st, 0, 0); err != nil || !evs[0].Erased {
		t.Fatalf("after the key store is back the ingest is not erased: %+v, %v", evs, err)
	}
}

// TestANewReplicaCatchingUpSkipsErasedIngests: a replica that builds its index from the log after a
// deletion (a first start, or a rebuilt read model) meets the erased ingest: it skips it without
// stalling, applies the deletion, indexes the rest, and never shows the erased text.
func TestANewReplicaCatchingUpSkipsErasedIngests(t *testing.T) {
	f := openSealedFolder(t)
	a := f.env(t, false)
	marker := uniqueMarker()
	a.mustIngest("acme", "gone", "The "+marker+" secret.")
	a.mustIngest("acme", "kept", "The "+marker+" public note.")
	if r := a.do("DELETE", "/documents/gone", "acme", nil); r.status != 200 {
		t.Fatalf("delete: %d %s", r.status, r.raw)
	}
	for _, shared := range []bool{false, true} {
		b := newEnv(t, opts{store: f.store, index: openIndex(t, ""), sealer: f.sealer, shared: shared})
		must(t, b.bus.Sync(context.Background()))
		r := b.search("acme", map[string]any{"query": "the " + marker, "answer": false})
		if r.status != 200 || len(sources(r)) != 1 || !strings.Contains(allText(r), "public note") || strings.Contains(r.raw, "secret") {
			t.Fatalf("new replica (shared index %v): %d %s", shared, r.status, r.raw)
		}
	}
}
