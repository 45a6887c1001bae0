// Package domain holds the tenancy rules without I/O: the tenant aggregate folded from its events, the
// difference between a desired configuration and the recorded one, key hashes, resolution of a
// request to a tenant, and the sliding-window arithmetic of the rate limiter.
package domain

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/crispy-enigma/crispy/modules/tenancy/events"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// StreamCategory is the category of a tenant's configuration stream: t-{id}.tenant.
const StreamCategory = "tenant"

// Stream is the tenant's configuration stream.
func Stream(id tenant.ID) tenant.Stream { return tenant.MustStream(id, StreamCategory, "") }

// Tenant is the aggregate of one t-{id}.tenant stream.
type Tenant struct {
	ID tenant.ID
	// Registered is true from TenantRegistered until TenantRemoved: only then is the tenant served.
	Registered bool
	// Removed is true after TenantRemoved (until a later TenantRegistered).
	Removed bool
	// Deleted is true after TenantDeleted (the admin API deleted it and destroyed its data keys).
	Deleted bool
	// Origin is where the tenant was registered: OriginAPI for the admin API, else the tenants
	// file (or the demo default). A tenants-file sync records as removed only tenants of its own.
	Origin string
	Config events.TenantConfig
	// Keys are the tenant's API keys in the order they were added, revoked ones included.
	Keys []Key
	// LastRevision is the revision of the last folded event; meaningful when Exists.
	LastRevision uint64
	Exists       bool
}

// NewTenant is the state of a tenant whose stream has no events.
func NewTenant(id tenant.ID) *Tenant { return &Tenant{ID: id} }

// Apply folds one decoded event recorded at revision rev.
func (t *Tenant) Apply(rev uint64, e any) {
	t.LastRevision, t.Exists = rev, true
	switch e := e.(type) {
	case events.TenantRegistered:
		// A registration (first, or after a removal) starts from a clean slate: keys come back
		// only through their own ApiKeyAdded events.
		t.Registered, t.Removed, t.Deleted, t.Config, t.Keys = true, false, false, e.Config, nil
		t.Origin = e.Source
	case events.TenantRemoved:
		t.Registered, t.Removed, t.Keys = false, true, nil
	case events.TenantDeleted:
		t.Registered, t.Removed, t.Deleted, t.Keys = false, true, true, nil
	case events.TenantConfigChanged:
		t.Config = e.Config
	case events.ApiKeyAdded:
		k := keyFromEvent(e)
		t.Keys = slices.Clone(t.Keys) // a directory entry may share the old array
		if old := t.KeyByID(k.ID); old != nil {
			// Added again: the file lists a revoked key again (active from here on), or changed its
			// name or scopes. In the latter case what only the admin API sets (expiry, limits,
			// budget: ApiKeyChanged) stays.
			if !old.Revoked && k.FromFile() {
				k.ExpiresAt, k.Limits, k.Budget = old.ExpiresAt, old.Limits, old.Budget
			}
			*old = k
			return
		}
		t.Keys = append(t.Keys, k)
	case events.ApiKeyRevoked:
		id := e.ID
		if id == "" {
			id = KeyIDOfHash(e.Hash)
		}
		if k := t.KeyByID(id); k != nil {
			t.Keys = slices.Clone(t.Keys)
			k = t.KeyByID(id)
			k.Revoked = true
			if !e.At.IsZero() {
				at := e.At
				k.RevokedAt = &at
			}
		}
	case events.ApiKeyRotated:
		if k := t.KeyByID(e.ID); k != nil {
			t.Keys = slices.Clone(t.Keys)
			k = t.KeyByID(e.ID)
			k.PrevHash, k.PrevValidUntil, k.Hash = k.Hash, e.PreviousValidUntil, e.Hash
		}
	case events.ApiKeyChanged:
		if k := t.KeyByID(e.ID); k != nil {
			t.Keys = slices.Clone(t.Keys)
			k = t.KeyByID(e.ID)
			k.Name, k.Scopes, k.ExpiresAt, k.Limits, k.Budget = e.Name, slices.Clone(e.Scopes), e.ExpiresAt, e.Limits, e.Budget
			if len(k.Scopes) == 0 {
				k.Scopes = events.DefaultScopes()
			}
		}
	}
}

// sortedScopes returns scopes sorted and without duplicates (nil stays nil: the default).
func sortedScopes(sc []string) []string {
	if len(sc) == 0 {
		return nil
	}
	out := slices.Clone(sc)
	slices.Sort(out)
	return slices.Compact(out)
}

// OriginAPI is the Source of a tenant registered through the admin API.
const OriginAPI = "admin-api"

// FromFile reports whether a tenants file (or the demo default) registered the tenant.
func (t *Tenant) FromFile() bool { return t.Origin != OriginAPI }

// HasKey reports whether hash is the current secret of a key not revoked (not for
// authentication: see Entry.KeyMatches).
func (t *Tenant) HasKey(hash string) bool {
	for _, k := range t.Keys {
		if k.Hash == hash && !k.Revoked {
			return true
		}
	}
	return false
}

// Desired is what the tenants file (or the demo default) says a tenant should be.
type Desired struct {
	Config events.TenantConfig
	Keys   []string // normalised "sha256:<lower hex>"
	// KeyMeta holds the name and scopes the file gives a key (by hash); a key without an entry
	// has no name and the default scopes.
	KeyMeta map[string]FileKey
}

// FileKey is what the tenants file says of a key besides its hash.
type FileKey struct {
	Name   string
	Scopes []string // empty: events.DefaultScopes()
}

// Active reports whether the folded tenant is served (registered and not removed).
func (t *Tenant) Active() bool { return t.Registered && !t.Removed }

// Remove returns the events that take a tenant that left the tenants file out of service: one
// TenantRemoved, or nothing when it is not active.
func (t *Tenant) Remove(source string) []any {
	if !t.Active() {
		return nil
	}
	return []any{events.TenantRemoved{Source: source}}
}

// Diff returns the events that take t to d, in the order they must be recorded: registration or a
// configuration change first, then key additions, then revocations. No change: no events.
func (t *Tenant) Diff(d Desired, source string) ([]any, error) {
	var out []any
	if !t.Registered {
		out = append(out, events.TenantRegistered{Config: d.Config, Source: source})
	} else {
		same, err := SameConfig(t.Config, d.Config)
		if err != nil {
			return nil, err
		}
		if !same {
			out = append(out, events.TenantConfigChanged{Config: d.Config, Source: source})
		}
	}
	// Only the file's own keys: keys made through the admin API are not the file's to revoke.
	want := make(map[string]bool, len(d.Keys))
	for _, k := range d.Keys {
		want[k] = true
		meta := d.KeyMeta[k]
		add := events.ApiKeyAdded{Hash: k, Name: meta.Name, Scopes: sortedScopes(meta.Scopes)}
		if !t.HasKey(k) {
			out = append(out, add)
			continue
		}
		// Its name or scopes changed in the file: added again, it replaces itself (same id).
		if cur := t.KeyByID(KeyIDOfHash(k)); cur != nil && cur.FromFile() &&
			(cur.Name != add.Name || !slices.Equal(cur.Scopes, keyFromEvent(add).Scopes)) {
			out = append(out, add)
		}
	}
	for _, k := range t.Keys {
		if k.FromFile() && !k.Revoked && !want[k.Hash] {
			out = append(out, events.ApiKeyRevoked{Hash: k.Hash})
		}
	}
	return out, nil
}

// SameConfig compares two configurations as they are recorded (JSON), so nil and empty lists, and a
// configuration read back from an event, compare equal to the one parsed from the file.
func SameConfig(a, b events.TenantConfig) (bool, error) {
	ja, err := json.Marshal(a)
	if err != nil {
		return false, fmt.Errorf("marshal tenant config %s: %w", a.ID, err)
	}
	jb, err := json.Marshal(b)
	if err != nil {
		return false, fmt.Errorf("marshal tenant config %s: %w", b.ID, err)
	}
	return bytes.Equal(ja, jb), nil
}
