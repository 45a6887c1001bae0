package keystoretest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/crispy-enigma/crispy/platform/keystore"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// Run is the acceptance suite of a keystore.Store. newStore returns an empty store (closed by the
// suite).
func Run(t *testing.T, newStore func(t *testing.T) keystore.Store) {
	a, b := tenant.MustParse("acme"), tenant.MustParse("bravo")
	ctx := context.Background()

	t.Run("CreateIsIdempotentAndKeyReturnsIt", func(t *testing.T) {
		s := newStore(t)
		defer s.Close()
		k1, err := s.Create(ctx, a, "session/1")
		if err != nil {
			t.Fatal(err)
		}
		if len(k1) != keystore.KeySize || bytes.Equal(k1, make([]byte, keystore.KeySize)) {
			t.Fatalf("key %x: want %d random bytes", k1, keystore.KeySize)
		}
		k2, err := s.Create(ctx, a, "session/1")
		if err != nil || !bytes.Equal(k1, k2) {
			t.Fatalf("second Create = %x, %v; want the first key", k2, err)
		}
		k3, err := s.Key(ctx, a, "session/1")
		if err != nil || !bytes.Equal(k1, k3) {
			t.Fatalf("Key = %x, %v; want the created key", k3, err)
		}
		other, err := s.Create(ctx, a, "session/2")
		if err != nil || bytes.Equal(other, k1) {
			t.Fatalf("another id: %x, %v; want a different key", other, err)
		}
		if _, err := s.Key(ctx, a, "session/3"); !errors.Is(err, keystore.ErrNotFound) {
			t.Fatalf("missing id: %v, want ErrNotFound", err)
		}
	})

	t.Run("TenantBCannotGetTenantAsKey", func(t *testing.T) {
		s := newStore(t)
		defer s.Close()
		ka, err := s.Create(ctx, a, "session/x")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Key(ctx, b, "session/x"); !errors.Is(err, keystore.ErrNotFound) {
			t.Fatalf("tenant b reading a's id: %v, want ErrNotFound", err)
		}
		kb, err := s.Create(ctx, b, "session/x")
		if err != nil || bytes.Equal(ka, kb) {
			t.Fatalf("tenant b's own key under the same id: %x, %v; want a different key", kb, err)
		}
		if err := s.Destroy(ctx, b, "session/x"); err != nil {
			t.Fatal(err)
		}
		if k, err := s.Key(ctx, a, "session/x"); err != nil || !bytes.Equal(k, ka) {
			t.Fatalf("a's key after b destroyed its own: %x, %v", k, err)
		}
		if err := s.DestroyTenant(ctx, b); err != nil {
			t.Fatal(err)
		}
		if k, err := s.Key(ctx, a, "session/x"); err != nil || !bytes.Equal(k, ka) {
			t.Fatalf("a's key after b was destroyed: %x, %v", k, err)
		}
	})

	t.Run("DestroyedKeyIsGoneAndNotRecreated", func(t *testing.T) {
		s := newStore(t)
		defer s.Close()
		if _, err := s.Create(ctx, a, "document/d"); err != nil {
			t.Fatal(err)
		}
		if err := s.Destroy(ctx, a, "document/d"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Key(ctx, a, "document/d"); !errors.Is(err, keystore.ErrDestroyed) {
			t.Fatalf("Key after Destroy: %v, want ErrDestroyed", err)
		}
		if _, err := s.Create(ctx, a, "document/d"); !errors.Is(err, keystore.ErrDestroyed) {
			t.Fatalf("Create after Destroy: %v, want ErrDestroyed", err)
		}
		if err := s.Destroy(ctx, a, "document/d"); err != nil {
			t.Fatalf("second Destroy: %v", err)
		}
		if err := s.Destroy(ctx, a, "document/never"); err != nil {
			t.Fatalf("Destroy of a missing id: %v", err)
		}
		if _, err := s.Create(ctx, a, "document/never"); !errors.Is(err, keystore.ErrDestroyed) {
			t.Fatalf("Create after Destroy of a never-created id: %v, want ErrDestroyed", err)
		}
	})

	t.Run("DestroyTenantRemovesOnlyThatTenant", func(t *testing.T) {
		s := newStore(t)
		defer s.Close()
		for i := range 5 {
			for _, tt := range []tenant.ID{a, b} {
				if _, err := s.Create(ctx, tt, fmt.Sprintf("session/%d", i)); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := s.DestroyTenant(ctx, a); err != nil {
			t.Fatal(err)
		}
		for i := range 5 {
			id := fmt.Sprintf("session/%d", i)
			if _, err := s.Key(ctx, a, id); err == nil {
				t.Fatalf("a's %s survived DestroyTenant", id)
			}
			if _, err := s.Key(ctx, b, id); err != nil {
				t.Fatalf("b's %s after a was destroyed: %v", id, err)
			}
		}
	})

	t.Run("InvalidIDs", func(t *testing.T) {
		s := newStore(t)
		defer s.Close()
		for _, id := range []string{"", "has space", string(bytes.Repeat([]byte("x"), keystore.MaxIDLen+1))} {
			if _, err := s.Create(ctx, a, id); !errors.Is(err, keystore.ErrInvalid) {
				t.Errorf("Create(%q): %v, want ErrInvalid", id, err)
			}
		}
		if _, err := s.Create(ctx, tenant.ID{}, "session/1"); !errors.Is(err, keystore.ErrInvalid) {
			t.Errorf("Create without tenant: %v, want ErrInvalid", err)
		}
	})

	t.Run("ConcurrentCreateAgreesOnOneKey", func(t *testing.T) {
		s := newStore(t)
		defer s.Close()
		keys := make([][]byte, 16)
		var wg sync.WaitGroup
		for i := range keys {
			wg.Go(func() {
				k, err := s.Create(ctx, a, "session/race")
				if err != nil {
					t.Error(err)
				}
				keys[i] = k
			})
		}
		wg.Wait()
		for _, k := range keys[1:] {
			if !bytes.Equal(k, keys[0]) {
				t.Fatalf("concurrent Creates returned different keys: %x vs %x", k, keys[0])
			}
		}
	})
}
