package sealing_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/embedded"
	"github.com/crispy-enigma/crispy/platform/keystore"
	keysembedded "github.com/crispy-enigma/crispy/platform/keystore/embedded"
	"github.com/crispy-enigma/crispy/platform/keystore/keystoretest"
	"github.com/crispy-enigma/crispy/platform/sealing"
	"github.com/crispy-enigma/crispy/platform/tenant"

	"github.com/crispy-enigma/crispy/platform/erasuretest"
)

var (
	ctx   = context.Background()
	acme  = tenant.MustParse("acme")
	bravo = tenant.MustParse("bravo")
)

// sessions seals every event of a "session" stream but its deletion record, under "session/<id>".
func sessions(st tenant.Stream, e eventstore.EventData) (string, bool) {
	if st.Category() != "session" || e.Type == "test.Deleted" {
		return "", false
	}
	return "session/" + st.Entity(), true
}

func TestSealOpen(t *testing.T) {
	t.Parallel()
	keys := keystoretest.NewMemory()
	s := sealing.New(keys)
	secret := []byte("the secret text")
	c, err := s.Seal(ctx, acme, "session/1", secret)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(c, secret) {
		t.Fatal("the sealed value holds the plaintext")
	}
	if p, err := s.Open(ctx, acme, "session/1", c); err != nil || !bytes.Equal(p, secret) {
		t.Fatalf("Open = %q, %v", p, err)
	}
	// Moved to another key of the same tenant, or to the same key id of another tenant: no plaintext.
	if _, err := keys.Create(ctx, acme, "session/2"); err != nil {
		t.Fatal(err)
	}
	// (Another key instance: its check value differs, so it reads as erased, the way a key id
	// re-created after its tenant's keys were destroyed must; associated_test.go covers the AAD.)
	if p, err := s.Open(ctx, acme, "session/2", c); p != nil || (!errors.Is(err, sealing.ErrCorrupt) && !errors.Is(err, sealing.ErrErased)) {
		t.Fatalf("moved to another key: %q, %v, want no plaintext and ErrErased or ErrCorrupt", p, err)
	}
	if _, err := s.Open(ctx, bravo, "session/1", c); !errors.Is(err, sealing.ErrErased) {
		t.Fatalf("tenant b without the key: %v, want ErrErased", err)
	}
	if _, err := keys.Create(ctx, bravo, "session/1"); err != nil {
		t.Fatal(err)
	}
	if p, err := s.Open(ctx, bravo, "session/1", c); p != nil || (!errors.Is(err, sealing.ErrCorrupt) && !errors.Is(err, sealing.ErrErased)) {
		t.Fatalf("tenant b with its own key of that id: %q, %v, want no plaintext", p, err)
	}
	flipped := append([]byte(nil), c...)
	flipped[len(flipped)-1] ^= 1
	if _, err := s.Open(ctx, acme, "session/1", flipped); !errors.Is(err, sealing.ErrCorrupt) {
		t.Fatalf("altered: %v, want ErrCorrupt", err)
	}
	if err := keys.Destroy(ctx, acme, "session/1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Open(ctx, acme, "session/1", c); !errors.Is(err, sealing.ErrErased) {
		t.Fatalf("after Destroy: %v, want ErrErased", err)
	}
	if _, err := s.Seal(ctx, acme, "session/1", secret); !errors.Is(err, sealing.ErrErased) {
		t.Fatalf("Seal under a destroyed key: %v, want ErrErased", err)
	}
}

type fixture struct {
	dir    string
	inner  *embedded.Store
	keys   keystore.Store
	sealed *sealing.Store
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	inner, err := embedded.Open(filepath.Join(dir, "events"), embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := keysembedded.Open(filepath.Join(dir, keysembedded.FileName))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inner.Close(); keys.Close() })
	return &fixture{dir: dir, inner: inner, keys: keys, sealed: sealing.NewStore(inner, sealing.New(keys), sessions)}
}

func msg(text string) eventstore.EventData {
	b, _ := json.Marshal(map[string]string{"text": text})
	return eventstore.EventData{Type: "test.Said", Data: b}
}

func TestStoreSealsOnAppendOpensOnReadAndErases(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	const marker = "marker-7f3a9c-plaintext"
	st := tenant.MustStream(acme, "session", "s1")
	res, err := f.sealed.Append(ctx, st, eventstore.NoStream, msg(marker), msg("second "+marker))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(res.Events[0].Data), marker) {
		t.Fatalf("append result data %s: want the plaintext back", res.Events[0].Data)
	}
	cfg := tenant.MustStream(acme, "tenant", "")
	if _, err := f.sealed.Append(ctx, cfg, eventstore.Any, msg("not sealed")); err != nil {
		t.Fatal(err)
	}

	raw, err := f.inner.ReadTenant(ctx, acme, eventstore.Start, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !sealing.IsSealed(raw[0].Data) || sealing.KeyID(raw[0].Data) != "session/s1" || sealing.IsSealed(raw[2].Data) {
		t.Fatalf("raw data: %s / %s", raw[0].Data, raw[2].Data)
	}
	v := eventstore.NewChainVerifier()
	for i := range raw {
		if err := v.Check(&raw[i]); err != nil {
			t.Fatalf("raw chain: %v", err)
		}
	}
	if res.Events[0].Hash != raw[0].Hash || res.Events[1].Prev != raw[0].Hash {
		t.Fatal("the append result's hashes are not the stored ones")
	}
	if len(erasuretest.FilesHolding(t, f.dir, []byte(marker))) > 0 {
		t.Fatal("the plaintext is in the data folder")
	}

	read, err := f.sealed.ReadStream(ctx, st, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(read) != 2 || !strings.Contains(string(read[0].Data), marker) || read[0].Erased || read[0].Hash != raw[0].Hash {
		t.Fatalf("read before erasure: %+v", read)
	}

	// The deletion record stays plain; the key goes.
	if _, err := f.sealed.Append(ctx, st, eventstore.Exact(1), eventstore.EventData{Type: "test.Deleted", Data: []byte(`{"by":"x"}`)}); err != nil {
		t.Fatal(err)
	}
	if err := f.keys.Destroy(ctx, acme, "session/s1"); err != nil {
		t.Fatal(err)
	}
	read, err = f.sealed.ReadStream(ctx, st, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(read) != 3 || !read[0].Erased || !read[1].Erased || read[2].Erased {
		t.Fatalf("after erasure: %+v", read)
	}
	if string(read[0].Data) != "{}" || read[0].Type != "test.Said" || read[0].Hash != raw[0].Hash || string(read[2].Data) != `{"by":"x"}` {
		t.Fatalf("erased event: %+v / deletion %s", read[0], read[2].Data)
	}
	var got []eventstore.Event
	sctx, cancel := context.WithCancel(ctx)
	err = f.sealed.Subscribe(sctx, eventstore.SubscribeOptions{Tenant: acme, CaughtUp: func(context.Context, eventstore.Position) error {
		cancel()
		return nil
	}}, func(_ context.Context, e eventstore.Event) error {
		got = append(got, e)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 || !got[0].Erased || got[2].Erased || !strings.Contains(string(got[2].Data), "not sealed") {
		t.Fatalf("subscription after erasure: %+v", got)
	}
	if _, err := f.sealed.Append(ctx, st, eventstore.Any, msg("late")); !errors.Is(err, sealing.ErrErased) {
		t.Fatalf("append to an erased session: %v, want ErrErased", err)
	}
}

// Tenant B cannot read A's content by copying A's sealed event into its own stream.
func TestCopiedCiphertextDoesNotOpenForAnotherTenant(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	const marker = "acme-only-secret"
	if _, err := f.sealed.Append(ctx, tenant.MustStream(acme, "session", "s1"), eventstore.NoStream, msg(marker)); err != nil {
		t.Fatal(err)
	}
	raw, _ := f.inner.ReadTenant(ctx, acme, eventstore.Start, 0)
	// bravo has a key of the same id (its own session s1).
	if _, err := f.sealed.Append(ctx, tenant.MustStream(bravo, "session", "s1"), eventstore.NoStream, msg("bravo's")); err != nil {
		t.Fatal(err)
	}
	if _, err := f.inner.Append(ctx, tenant.MustStream(bravo, "session", "copy"), eventstore.NoStream, eventstore.EventData{Type: "test.Said", Data: raw[0].Data}); err != nil {
		t.Fatal(err)
	}
	evs, err := f.sealed.ReadStream(ctx, tenant.MustStream(bravo, "session", "copy"), 0, 0)
	if err != nil || len(evs) != 1 || !evs[0].Erased || strings.Contains(string(evs[0].Data), marker) {
		t.Fatalf("bravo reading acme's copied ciphertext: %+v, %v; want it erased, without acme's content", evs, err)
	}
}

// Fields kept plain stay readable in the stored event and after erasure; the rest is sealed; a key
// given in the context replaces the policy's.
func TestKeepPlainAndWithKey(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.sealed.KeepPlain(map[string][]string{"test.Said": {"turn", "tokens"}})
	st := tenant.MustStream(acme, "session", "s2")
	data := []byte(`{"turn":"t1","text":"secret-words-xyz","tokens":42}`)
	kctx := sealing.WithKey(ctx, "session/s2/7")
	if _, err := f.sealed.Append(kctx, st, eventstore.NoStream, eventstore.EventData{Type: "test.Said", Data: data}); err != nil {
		t.Fatal(err)
	}
	raw, _ := f.inner.ReadStream(ctx, st, 0, 0)
	if sealing.KeyID(raw[0].Data) != "session/s2/7" || bytes.Contains(raw[0].Data, []byte("secret-words-xyz")) || !bytes.Contains(raw[0].Data, []byte(`"tokens":42`)) {
		t.Fatalf("stored: %s", raw[0].Data)
	}
	read, _ := f.sealed.ReadStream(ctx, st, 0, 0)
	var got map[string]any
	if err := json.Unmarshal(read[0].Data, &got); err != nil || got["text"] != "secret-words-xyz" || got["turn"] != "t1" || got["tokens"] != float64(42) {
		t.Fatalf("opened: %s, %v", read[0].Data, err)
	}
	if err := f.keys.Destroy(ctx, acme, "session/s2/7"); err != nil {
		t.Fatal(err)
	}
	read, _ = f.sealed.ReadStream(ctx, st, 0, 0)
	got = nil
	if err := json.Unmarshal(read[0].Data, &got); err != nil || !read[0].Erased || got["text"] != nil || got["tokens"] != float64(42) {
		t.Fatalf("erased: %s erased=%v", read[0].Data, read[0].Erased)
	}
}
