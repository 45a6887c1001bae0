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
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/VictoriaMetrics/metrics"

	"github.com/crispy-enigma/crispy/platform/keystore"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// ErrErased is returned by Open when the content's key was destroyed (or never existed in this key
// store): the content is gone for good.
var ErrErased = errors.New("content erased")

// ErrCorrupt is returned by Open for a ciphertext that does not open with its live key (altered, or
// moved from another tenant or key).
var ErrCorrupt = errors.New("sealed content does not open with its key (altered or moved)")

// version is the first byte of every sealed value, so the format can change later. Version 1 was
// version || nonce || ciphertext; version 2 adds the key's check value after the version byte.
const (
	version1 byte = 1
	version  byte = 2
)

// CheckSize is the length of a key check value (see check).
const CheckSize = 8

// NonceSize is the GCM nonce length.
const NonceSize = 12

// Sealer seals and opens values with the data keys of a key store.
type Sealer struct {
	keys keystore.Store

	// What OpenEvent does with an event that does not open (see Report).
	log        *slog.Logger
	unreadable *metrics.Counter
	mu         sync.Mutex
	reported   map[string]struct{} // events already logged, bounded by maxReported
}

// maxReported bounds the memory of events already logged as unreadable (past it, an event may be
// logged again: better than forgetting to log a new one).
const maxReported = 10_000

// New returns a Sealer over keys.
func New(keys keystore.Store) *Sealer {
	return &Sealer{keys: keys, log: slog.New(slog.DiscardHandler), reported: map[string]struct{}{}}
}

// Report makes OpenEvent log each sealed event that does not open with its live key at ERROR
// (once per event: tenant, stream, revision, position) and count it in set's
// crispy_sealing_unreadable_events_total (one per distinct event). Call it while wiring.
func (s *Sealer) Report(log *slog.Logger, set *metrics.Set) *Sealer {
	if log != nil {
		s.log = log
	}
	if set != nil {
		s.unreadable = set.GetOrCreateCounter("crispy_sealing_unreadable_events_total")
	}
	return s
}

// Destroy destroys the key keyID of t: everything sealed under it is erased.
func (s *Sealer) Destroy(ctx context.Context, t tenant.ID, keyID string) error {
	return s.keys.Destroy(ctx, t, keyID)
}

// Keys is the key store the Sealer uses (modules destroy keys through it).
func (s *Sealer) Keys() keystore.Store { return s.keys }

// Seal encrypts plaintext under keyID for t, creating the key on first use. The result is
// version(2) || key check(8) || nonce(12) || ciphertext+tag. Sealing under a destroyed key fails
// with ErrErased.
func (s *Sealer) Seal(ctx context.Context, t tenant.ID, keyID string, plaintext []byte) ([]byte, error) {
	chk, nonce, ct, err := s.seal(ctx, t, keyID, plaintext)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, 1+len(chk)+len(nonce)+len(ct))
	out = append(out, version)
	out = append(out, chk...)
	out = append(out, nonce...)
	return append(out, ct...), nil
}

// Open decrypts a value made by Seal under keyID for t: ErrErased when the key is gone (or was
// re-created since, see check), ErrCorrupt when it does not open.
func (s *Sealer) Open(ctx context.Context, t tenant.ID, keyID string, sealed []byte) ([]byte, error) {
	switch {
	case len(sealed) >= 1+CheckSize+NonceSize && sealed[0] == version:
		return s.open(ctx, t, keyID, sealed[1:1+CheckSize], sealed[1+CheckSize:1+CheckSize+NonceSize], sealed[1+CheckSize+NonceSize:])
	case len(sealed) >= 1+NonceSize && sealed[0] == version1:
		return s.open(ctx, t, keyID, nil, sealed[1:1+NonceSize], sealed[1+NonceSize:])
	}
	return nil, fmt.Errorf("%w: not a sealed value", ErrCorrupt)
}

func (s *Sealer) seal(ctx context.Context, t tenant.ID, keyID string, plaintext []byte) (chk, nonce, ct []byte, err error) {
	key, err := s.keys.Create(ctx, t, keyID)
	if err != nil {
		if errors.Is(err, keystore.ErrDestroyed) {
			return nil, nil, nil, fmt.Errorf("seal under %s: %w", keyID, ErrErased)
		}
		return nil, nil, nil, fmt.Errorf("seal under %s: %w", keyID, err)
	}
	c := check(key)
	chk = c[:]
	aead, err := newAEAD(key)
	clear(key)
	if err != nil {
		return nil, nil, nil, err
	}
	nonce = make([]byte, NonceSize)
	if _, err := rand.Read(nonce); err != nil {
		return nil, nil, nil, fmt.Errorf("seal: nonce: %w", err)
	}
	return chk, nonce, aead.Seal(nil, nonce, plaintext, associated(t, keyID)), nil
}

// check is a key's check value: it names the key instance a ciphertext was sealed under, so a
// ciphertext whose id was given a new key later (the tenant's keys destroyed as a whole keep no
// trace of their ids, so a Create under an old id makes a fresh key) reads as erased — its own
// key is gone — instead of as altered. SHA-256 of a fixed prefix and the random 256-bit key
// tells nothing about the key; 64 bits make two keys' values collide with probability 2^-64.
func check(key []byte) (c [CheckSize]byte) {
	var in [len(checkPrefix) + keystore.KeySize]byte // on the stack: every open computes one
	n := copy(in[:], checkPrefix)
	n += copy(in[n:], key)
	sum := sha256.Sum256(in[:n])
	clear(in[:])
	copy(c[:], sum[:])
	return c
}

const checkPrefix = "crispy-key-check-v1\x00"

// open opens ct; chk is the check value sealed beside it (nil for values of version 1, sealed
// before check values existed).
func (s *Sealer) open(ctx context.Context, t tenant.ID, keyID string, chk, nonce, ct []byte) ([]byte, error) {
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
	if live := check(key); chk != nil && subtle.ConstantTimeCompare(chk, live[:]) != 1 {
		clear(key)
		return nil, fmt.Errorf("%w: sealed under an earlier key of %s, since destroyed", ErrErased, keyID)
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
