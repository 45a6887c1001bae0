// Package sealing encrypts content at rest with per-item data keys from a keystore.Store, so that
// destroying a key erases the content everywhere it was written (crypto-shredding): in the event log,
// in read models and in indexes, in every copy of the data folder.
//
// A Sealer seals and opens byte strings (for read models and indexes that must keep text), and Store
// decorates an eventstore.Store so the events a Policy names are sealed on Append and opened on every
// read. The ciphertext is AES-256-GCM with a random 96-bit nonce; the associated data binds it to
// its tenant and key id, so a ciphertext copied to another tenant's or another key's place does not
// open.
package sealing

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"

	"github.com/crispy-enigma/crispy/platform/keystore"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// ErrErased is returned by Open when the content's key was destroyed (or never existed in this key
// store): the content is gone for good.
var ErrErased = errors.New("content erased")

// ErrCorrupt is returned by Open for a ciphertext that does not open with its live key (altered, or
// moved from another tenant or key).
var ErrCorrupt = errors.New("sealed content does not open with its key (altered or moved)")

// version is the first byte of every sealed value, so the format can change later.
const version byte = 1

// NonceSize is the GCM nonce length.
const NonceSize = 12

// Sealer seals and opens values with the data keys of a key store.
type Sealer struct {
	keys keystore.Store
}

// New returns a Sealer over keys.
func New(keys keystore.Store) *Sealer { return &Sealer{keys: keys} }

// Destroy destroys the key keyID of t: everything sealed under it is erased.
func (s *Sealer) Destroy(ctx context.Context, t tenant.ID, keyID string) error {
	return s.keys.Destroy(ctx, t, keyID)
}

// Keys is the key store the Sealer uses (modules destroy keys through it).
func (s *Sealer) Keys() keystore.Store { return s.keys }

// Seal encrypts plaintext under keyID for t, creating the key on first use. The result is
// version(1) || nonce(12) || ciphertext+tag. Sealing under a destroyed key fails with ErrErased.
func (s *Sealer) Seal(ctx context.Context, t tenant.ID, keyID string, plaintext []byte) ([]byte, error) {
	nonce, ct, err := s.seal(ctx, t, keyID, plaintext)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, 1+len(nonce)+len(ct))
	out = append(out, version)
	out = append(out, nonce...)
	return append(out, ct...), nil
}

// Open decrypts a value made by Seal under keyID for t: ErrErased when the key is gone, ErrCorrupt
// when it does not open.
func (s *Sealer) Open(ctx context.Context, t tenant.ID, keyID string, sealed []byte) ([]byte, error) {
	if len(sealed) < 1+NonceSize || sealed[0] != version {
		return nil, fmt.Errorf("%w: not a sealed value", ErrCorrupt)
	}
	return s.open(ctx, t, keyID, sealed[1:1+NonceSize], sealed[1+NonceSize:])
}

func (s *Sealer) seal(ctx context.Context, t tenant.ID, keyID string, plaintext []byte) (nonce, ct []byte, err error) {
	key, err := s.keys.Create(ctx, t, keyID)
	if err != nil {
		if errors.Is(err, keystore.ErrDestroyed) {
			return nil, nil, fmt.Errorf("seal under %s: %w", keyID, ErrErased)
		}
		return nil, nil, fmt.Errorf("seal under %s: %w", keyID, err)
	}
	aead, err := newAEAD(key)
	clear(key)
	if err != nil {
		return nil, nil, err
	}
	nonce = make([]byte, NonceSize)
	if _, err := rand.Read(nonce); err != nil {
		return nil, nil, fmt.Errorf("seal: nonce: %w", err)
	}
	return nonce, aead.Seal(nil, nonce, plaintext, associated(t, keyID)), nil
}

func (s *Sealer) open(ctx context.Context, t tenant.ID, keyID string, nonce, ct []byte) ([]byte, error) {
	if len(nonce) != NonceSize {
		return nil, fmt.Errorf("%w: nonce of %d bytes", ErrCorrupt, len(nonce))
	}
	key, err := s.keys.Key(ctx, t, keyID)
	if err != nil {
		if errors.Is(err, keystore.ErrDestroyed) || errors.Is(err, keystore.ErrNotFound) {
			return nil, ErrErased
		}
		return nil, fmt.Errorf("open %s: %w", keyID, err)
	}
	aead, err := newAEAD(key)
	clear(key)
	if err != nil {
		return nil, err
	}
	pt, err := aead.Open(nil, nonce, ct, associated(t, keyID))
	if err != nil {
		return nil, fmt.Errorf("%w: %s of tenant %s", ErrCorrupt, keyID, t)
	}
	return pt, nil
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("seal: cipher: %w", err)
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		return nil, fmt.Errorf("seal: gcm: %w", err)
	}
	return g, nil
}

// associated binds a ciphertext to its tenant and key id.
func associated(t tenant.ID, keyID string) []byte {
	return []byte("crispy-seal-v1\x00" + t.String() + "\x00" + keyID)
}
