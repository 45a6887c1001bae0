// Package keystore is the port to the store of data keys: one random AES-256 key per piece of
// content that must be erasable (a chat session, a document, a tenant's HMAC secret). Content is
// encrypted with its key (platform/sealing) and erased by destroying the key, so the append-only
// event log (and its Merkle tree) never has to lose an event for erasure to happen.
//
// Implementations: embedded/ (a file in the data folder whose records are overwritten in place) and
// postgres/ (a table shared by replicas). keystoretest holds the acceptance suite every
// implementation runs, and an in-memory fake.
package keystore

import (
	"context"
	"errors"
	"fmt"

	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// KeySize is the length of every data key: AES-256.
const KeySize = 32

// Errors. Callers test them with errors.Is.
var (
	// ErrNotFound: no key was ever created under this id for this tenant (or the tenant was
	// destroyed as a whole, which keeps no trace of its ids).
	ErrNotFound = errors.New("data key not found")
	// ErrDestroyed: the key existed and was destroyed; its bytes are gone. Create under the same id
	// also answers ErrDestroyed, so content sealed after a deletion cannot get a fresh key that
	// silently resurrects the id.
	ErrDestroyed = errors.New("data key destroyed")
	// ErrInvalid: an id or tenant the store cannot hold.
	ErrInvalid = errors.New("invalid data key id")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("key store closed")
)

// ErrUnavailable is the refusal of a key store that cannot be reached or written right now (the
// database is down, the disk is full): 503 storage_unavailable with retry-after, like the event
// store's, so a write that needs a key answers it without the module knowing about keys.
// Implementations join it with the cause: fmt.Errorf("%w: %w", keystore.ErrUnavailable, cause).
var ErrUnavailable = &apperr.Error{
	Kind: apperr.KindUnavailable, Code: "storage_unavailable", RetryAfterSec: 5,
	Message: "the key store cannot be reached or written right now; nothing was recorded; retry shortly",
}

// Store keeps data keys per tenant. Every method is safe for concurrent use.
type Store interface {
	// Key returns the key stored under id for t: ErrNotFound or ErrDestroyed otherwise. Another
	// tenant's key under the same id is never returned.
	Key(ctx context.Context, t tenant.ID, id string) ([]byte, error)
	// Create returns the key under id for t, creating a new random key when there is none. It
	// returns only once the new key is durable (a crash after it returns keeps the key).
	Create(ctx context.Context, t tenant.ID, id string) ([]byte, error)
	// Destroy erases the key under id for t so its bytes are in no file the store keeps (see each
	// implementation's documentation for what the medium still holds). Destroying a missing or
	// already destroyed key is not an error.
	Destroy(ctx context.Context, t tenant.ID, id string) error
	// DestroyTenant destroys every key of t.
	DestroyTenant(ctx context.Context, t tenant.ID) error
	// Close releases the store.
	Close() error
}

// MaxIDLen bounds a key id (the embedded store's record size depends on it).
const MaxIDLen = 400

// Validate reports an id or tenant no store accepts.
func Validate(t tenant.ID, id string) error {
	if t.IsZero() {
		return fmt.Errorf("%w: no tenant", ErrInvalid)
	}
	// Namespaced ids such as "session/<uuid>", "document/<id>", "tenant/hmac": printable ASCII
	// without spaces (checked by hand: every sealed event's key goes through here).
	ok := len(id) > 0 && len(id) <= MaxIDLen
	for i := 0; ok && i < len(id); i++ {
		ok = id[i] >= 0x21 && id[i] <= 0x7e
	}
	if !ok {
		return fmt.Errorf("%w: %q must be 1-%d printable ASCII characters without spaces", ErrInvalid, id, MaxIDLen)
	}
	return nil
}
