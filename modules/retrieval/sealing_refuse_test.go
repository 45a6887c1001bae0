package retrieval_test

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/crispy-enigma/crispy/modules/retrieval/events"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/keystore"
	"github.com/crispy-enigma/crispy/platform/sealing"
	"github.com/crispy-enigma/crispy/platform/tenant"

	"github.com/crispy-enigma/crispy/platform/erasuretest"
)

// Where SealingPolicy is installed, a document ingest it cannot seal under the document's own key
// is refused, not stored in plain text (F13: it used to fail open). The ingest with its key still
// seals, and the refusals leave nothing of the text in the log.
func TestSealedLogRefusesAnIngestItCannotSealUnderItsDocumentsKey(t *testing.T) {
	f := openSealedFolder(t)
	ctx := t.Context()
	acme := tenant.MustParse("acme")
	st := tenant.MustStream(acme, events.DocCategory, events.DocStreamKey("hr/jsmith.md"))
	const secret = "termination-of-jsmith-zebra"
	ingest := func(key string) eventstore.EventData {
		d, err := eventstore.NewEventData(events.TypeDocumentIngested, events.DocumentIngested{DocID: "hr/jsmith.md", Text: secret, Key: key})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	for _, c := range []struct{ name, key string }{
		{"no key (a writer without a Sealer)", ""},
		{"another document's key", events.NewDocumentKey("other.md")},
	} {
		if _, err := f.store.Append(ctx, st, eventstore.Any, ingest(c.key)); !errors.Is(err, keystore.ErrInvalid) {
			t.Fatalf("%s: append = %v, want a refusal (keystore.ErrInvalid)", c.name, err)
		}
	}
	if evs, err := f.raw.ReadTenant(ctx, acme, eventstore.Start, 0); err != nil || len(evs) != 0 {
		t.Fatalf("after the refusals the log holds %d events (%v), want none", len(evs), err)
	}
	key := events.NewDocumentKey("hr/jsmith.md")
	if _, err := f.store.Append(ctx, st, eventstore.Any, ingest(key)); err != nil {
		t.Fatalf("the ingest with its own key: %v", err)
	}
	evs, err := f.raw.ReadTenant(ctx, acme, eventstore.Start, 0)
	if err != nil || len(evs) != 1 || sealing.KeyID(evs[0].Data) != key {
		t.Fatalf("stored: %d events (%v), want one sealed under %s", len(evs), err, key)
	}
	if err := f.raw.Close(); err != nil {
		t.Fatal(err)
	}
	for _, p := range erasuretest.FilesHolding(t, filepath.Join(f.dir, "events"), []byte(secret)) {
		t.Errorf("%s holds the document's text in plain", p)
	}
}
