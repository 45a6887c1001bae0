package sealing_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/embedded"
	"github.com/crispy-enigma/crispy/platform/keystore"
	"github.com/crispy-enigma/crispy/platform/sealing"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// sameKey answers the same key bytes for every tenant and key id. With it only the associated data
// (tenant + key id) can keep a ciphertext from opening elsewhere: with distinct keys per id a moved
// ciphertext fails anyway, so a test over a real key store passes with the associated data removed.
type sameKey struct{ key []byte }

func (k sameKey) Key(_ context.Context, t tenant.ID, id string) ([]byte, error) {
	if err := keystore.Validate(t, id); err != nil {
		return nil, err
	}
	return bytes.Clone(k.key), nil
}

func (k sameKey) Create(ctx context.Context, t tenant.ID, id string) ([]byte, error) {
	return k.Key(ctx, t, id)
}
func (sameKey) Destroy(context.Context, tenant.ID, string) error { return nil }
func (sameKey) DestroyTenant(context.Context, tenant.ID) error   { return nil }
func (sameKey) Close() error                                     { return nil }

func newSameKey() sameKey { return sameKey{key: bytes.Repeat([]byte{7}, keystore.KeySize)} }

func TestCiphertextIsBoundToItsTenantAndKeyIDEvenUnderTheSameKeyBytes(t *testing.T) {
	t.Parallel()
	s := sealing.New(newSameKey())
	secret := []byte("acme's session text")
	c, err := s.Seal(ctx, acme, "session/1", secret)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := s.Open(ctx, acme, "session/1", c); err != nil || !bytes.Equal(p, secret) {
		t.Fatalf("Open where it was sealed = %q, %v", p, err)
	}
	for _, moved := range []struct {
		name  string
		t     tenant.ID
		keyID string
	}{
		{"another key id of the same tenant", acme, "session/2"},
		{"the same key id of another tenant", bravo, "session/1"},
		{"another kind of key id", acme, "document/1"},
	} {
		p, err := s.Open(ctx, moved.t, moved.keyID, c)
		if !errors.Is(err, sealing.ErrCorrupt) {
			t.Errorf("moved to %s: Open = %q, %v; want ErrCorrupt", moved.name, p, err)
		}
	}
}

// Through the store decorator: a stored sealed event copied into another tenant, or whose envelope
// is edited to name another key id, must not open, though the key bytes are the same.
func TestMovedSealedEventDoesNotOpenUnderTheSameKeyBytes(t *testing.T) {
	t.Parallel()
	inner, err := embedded.Open(filepath.Join(t.TempDir(), "events"), embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inner.Close() })
	sealed := sealing.NewStore(inner, sealing.New(newSameKey()), sessions)
	if _, err := sealed.Append(ctx, tenant.MustStream(acme, "session", "s1"), eventstore.NoStream, msg("acme-only")); err != nil {
		t.Fatal(err)
	}
	raw, err := inner.ReadStream(ctx, tenant.MustStream(acme, "session", "s1"), 0, 0)
	if err != nil || len(raw) != 1 {
		t.Fatalf("raw read: %d events, %v", len(raw), err)
	}
	if got := sealing.KeyID(raw[0].Data); got != "session/s1" {
		t.Fatalf("stored key id %q, want session/s1", got)
	}
	// The untouched event opens (so the failures below are the move's, not the fixture's).
	if ev, err := sealed.ReadStream(ctx, tenant.MustStream(acme, "session", "s1"), 0, 0); err != nil || !bytes.Contains(ev[0].Data, []byte("acme-only")) {
		t.Fatalf("reading the original: %v", err)
	}

	copied := raw[0].Data
	if _, err := inner.Append(ctx, tenant.MustStream(bravo, "session", "s1"), eventstore.NoStream, eventstore.EventData{Type: "test.Said", Data: copied}); err != nil {
		t.Fatal(err)
	}
	// The decorator answers an event that does not open as unreadable (erased + Unreadable, no
	// content) rather than failing the read: one tenant's damage must not stop every reader.
	if evs, err := sealed.ReadStream(ctx, tenant.MustStream(bravo, "session", "s1"), 0, 0); err != nil || len(evs) != 1 || !evs[0].Unreadable ||
		bytes.Contains(evs[0].Data, []byte("acme-only")) {
		t.Fatalf("bravo reading acme's copied ciphertext: %+v, %v; want it unreadable", evs, err)
	}

	renamed := bytes.Replace(copied, []byte(`"session/s1"`), []byte(`"session/s2"`), 1)
	if bytes.Equal(renamed, copied) {
		t.Fatalf("the envelope does not name its key as expected: %s", copied)
	}
	if _, err := inner.Append(ctx, tenant.MustStream(acme, "session", "s2"), eventstore.NoStream, eventstore.EventData{Type: "test.Said", Data: renamed}); err != nil {
		t.Fatal(err)
	}
	if evs, err := sealed.ReadStream(ctx, tenant.MustStream(acme, "session", "s2"), 0, 0); err != nil || len(evs) != 1 || !evs[0].Unreadable ||
		bytes.Contains(evs[0].Data, []byte("acme-only")) {
		t.Fatalf("the ciphertext relabelled to another key id: %+v, %v; want it unreadable", evs, err)
	}
}
