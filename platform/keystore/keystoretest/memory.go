// Package keystoretest holds the acceptance suite every keystore.Store runs, and an in-memory fake
// for tests of the packages that use one.
package keystoretest

import (
	"context"
	"crypto/rand"
	"sync"

	"github.com/crispy-enigma/crispy/platform/keystore"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// Memory is an in-memory keystore.Store with the same semantics as the real ones (tombstones on
// Destroy, none after DestroyTenant). Nothing is durable.
type Memory struct {
	mu   sync.Mutex
	keys map[[2]string][]byte // nil value: destroyed
}

var _ keystore.Store = (*Memory)(nil)

// NewMemory returns an empty in-memory key store.
func NewMemory() *Memory { return &Memory{keys: map[[2]string][]byte{}} }

func (m *Memory) Key(_ context.Context, t tenant.ID, id string) ([]byte, error) {
	if err := keystore.Validate(t, id); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	k, ok := m.keys[[2]string{t.String(), id}]
	switch {
	case !ok:
		return nil, keystore.ErrNotFound
	case k == nil:
		return nil, keystore.ErrDestroyed
	}
	return append([]byte(nil), k...), nil
}

func (m *Memory) Create(_ context.Context, t tenant.ID, id string) ([]byte, error) {
	if err := keystore.Validate(t, id); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	mk := [2]string{t.String(), id}
	if k, ok := m.keys[mk]; ok {
		if k == nil {
			return nil, keystore.ErrDestroyed
		}
		return append([]byte(nil), k...), nil
	}
	k := make([]byte, keystore.KeySize)
	if _, err := rand.Read(k); err != nil {
		return nil, err
	}
	m.keys[mk] = k
	return append([]byte(nil), k...), nil
}

func (m *Memory) Destroy(_ context.Context, t tenant.ID, id string) error {
	if err := keystore.Validate(t, id); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	mk := [2]string{t.String(), id}
	clear(m.keys[mk])
	m.keys[mk] = nil
	return nil
}

func (m *Memory) DestroyTenant(_ context.Context, t tenant.ID) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for mk, k := range m.keys {
		if mk[0] == t.String() {
			clear(k)
			delete(m.keys, mk)
		}
	}
	return nil
}

func (m *Memory) Close() error { return nil }
