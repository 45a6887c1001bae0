package domain

import (
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/crispy-enigma/crispy/modules/tenancy/events"
)

// Codes of the key lifecycle and of scopes (issue 14).
const (
	CodeKeyExpired    = "key_expired"
	CodeKeyRevoked    = "key_revoked"
	CodeScopeRequired = "scope_required"
)

// Refusal reasons of the key lifecycle, for the auth-failure metric.
const (
	ReasonKeyExpired = "key_expired"
	ReasonKeyRevoked = "key_revoked"
)

// Key is an API key as folded from its events: what events.APIKey says, and the hashes of its
// current secret and (during a rotation's grace period) of its previous one. Revoked and expired
// keys are kept, so presenting one is answered key_revoked or key_expired rather than "unknown".
type Key struct {
	events.APIKey
	Hash           string    `json:"hash"`
	Revoked        bool      `json:"revoked,omitempty"`
	PrevHash       string    `json:"prevHash,omitempty"`
	PrevValidUntil time.Time `json:"prevValidUntil,omitzero"`
}

// FromFile reports whether the tenants file declared the key (so a file sync may revoke it).
func (k *Key) FromFile() bool { return k.Source != events.KeySourceAPI }

// Usable reports whether the key's current secret authenticates at now.
func (k *Key) Usable(now time.Time) bool {
	return !k.Revoked && (k.ExpiresAt == nil || now.Before(*k.ExpiresAt))
}

// OnlyAudit reports whether the key can do nothing but audit: such keys do not make a tenant
// require a key on its other routes.
func (k *Key) OnlyAudit() bool {
	for _, s := range k.Scopes {
		if s != events.ScopeAudit {
			return false
		}
	}
	return true
}

// KeyIDOfHash is KeyID of a "sha256:<hex>" hash (the id of a key first recorded without one).
func KeyIDOfHash(hash string) string {
	h := strings.TrimPrefix(hash, HashPrefix)
	if len(h) < KeyIDHexLen {
		return KeyIDPrefix + h
	}
	return KeyIDPrefix + strings.ToLower(h[:KeyIDHexLen])
}

// keyFromEvent folds an ApiKeyAdded into a Key.
func keyFromEvent(e events.ApiKeyAdded) Key {
	k := Key{APIKey: events.APIKey{ID: e.ID, Name: e.Name, Scopes: e.Scopes, CreatedAt: e.CreatedAt, ExpiresAt: e.ExpiresAt,
		Limits: e.Limits, Budget: e.Budget, User: e.User, Source: e.Source}, Hash: e.Hash}
	if k.ID == "" {
		k.ID = KeyIDOfHash(e.Hash)
	}
	if len(k.Scopes) == 0 {
		k.Scopes = events.DefaultScopes()
	}
	if k.Source == "" {
		k.Source = events.KeySourceFile
	}
	return k
}

// KeyByID returns the tenant's key with that id (nil: none).
func (t *Tenant) KeyByID(id string) *Key {
	for i := range t.Keys {
		if t.Keys[i].ID == id {
			return &t.Keys[i]
		}
	}
	return nil
}

// ActiveHashes lists the current secrets' hashes of the keys not revoked, in the order they were
// added.
func (t *Tenant) ActiveHashes() []string {
	var out []string
	for _, k := range t.Keys {
		if !k.Revoked {
			out = append(out, k.Hash)
		}
	}
	return out
}

// NewKeyRequest is what the admin API asks of a new key.
type NewKeyRequest struct {
	Name      string
	Scopes    []string
	ExpiresAt *time.Time
	Limits    *events.KeyLimits
	Budget    *events.KeyBudget
	User      string
}

// CheckScopes validates a list of scopes (empty is fine: the default applies).
func CheckScopes(scopes []string) error {
	for _, s := range scopes {
		if !events.ValidScope(s) {
			return fmt.Errorf("unknown scope %q; the scopes are %s", s, strings.Join(events.AllScopes, ", "))
		}
	}
	return nil
}

// NormalScopes is a key's scopes as recorded: sorted, without duplicates, the default when empty.
func NormalScopes(sc []string) []string {
	scopes := slices.Clone(sc)
	if len(scopes) == 0 {
		scopes = events.DefaultScopes()
	}
	slices.Sort(scopes)
	return slices.Compact(scopes)
}

// AddKey returns the event that records a new key whose secret hashes to hash, made at now.
func (t *Tenant) AddKey(hash string, r NewKeyRequest, now time.Time) (events.ApiKeyAdded, error) {
	_, d, err := ParseHash(hash)
	if err != nil {
		return events.ApiKeyAdded{}, err
	}
	id := KeyID(&d)
	if t.KeyByID(id) != nil {
		return events.ApiKeyAdded{}, fmt.Errorf("key id %s is taken", id) // 2^-48: make another
	}
	scopes := NormalScopes(r.Scopes)
	return events.ApiKeyAdded{Hash: hash, ID: id, Name: r.Name, Scopes: scopes, CreatedAt: now.UTC(), ExpiresAt: r.ExpiresAt,
		Limits: r.Limits, Budget: r.Budget, User: r.User, Source: events.KeySourceAPI}, nil
}

// digestOf is the digest of a recorded hash (zero on a malformed one, which then matches nothing
// a SHA-256 could produce in practice).
func digestOf(hash string) [32]byte {
	var d [32]byte
	_, _ = hex.Decode(d[:], []byte(strings.TrimPrefix(hash, HashPrefix)))
	return d
}
