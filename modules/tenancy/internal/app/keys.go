package app

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"time"

	"github.com/crispy-enigma/crispy/modules/tenancy/events"
	"github.com/crispy-enigma/crispy/modules/tenancy/internal/domain"
	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// Key lifecycle use cases of the admin API. Secrets are made here and returned once; only their
// SHA-256 is recorded.

// CreateKey records a new key of an active tenant and returns its secret (shown once) and the key.
func (m Manager) CreateKey(ctx context.Context, id tenant.ID, r domain.NewKeyRequest) (string, domain.Key, error) {
	if err := domain.CheckScopes(r.Scopes); err != nil {
		return "", domain.Key{}, apperr.Invalid("invalid_scope", "body.scopes", err.Error())
	}
	now := m.now()
	if r.ExpiresAt != nil && !r.ExpiresAt.After(now) {
		return "", domain.Key{}, apperr.Invalid("invalid_expiry", "body.expiresAt", "expiresAt must be in the future")
	}
	secret, hash, err := domain.NewKey()
	if err != nil {
		return "", domain.Key{}, err
	}
	var keyID string
	t, err := m.change(ctx, id, func(t *domain.Tenant) ([]any, error) {
		if !t.Active() {
			return nil, notFound(id)
		}
		ev, err := t.AddKey(hash, r, now)
		keyID = ev.ID
		return []any{ev}, err
	})
	if err != nil {
		return "", domain.Key{}, err
	}
	return secret, *t.KeyByID(keyID), nil
}

// RevokeKey records that a key no longer authenticates (401 key_revoked from then on). Revoking a
// revoked key changes nothing.
func (m Manager) RevokeKey(ctx context.Context, id tenant.ID, keyID string) (domain.Key, error) {
	t, err := m.change(ctx, id, func(t *domain.Tenant) ([]any, error) {
		k, err := existingKey(t, id, keyID)
		if err != nil {
			return nil, err
		}
		if k.Revoked {
			return nil, nil
		}
		return []any{events.ApiKeyRevoked{ID: keyID, At: m.now().UTC()}}, nil
	})
	if err != nil {
		return domain.Key{}, err
	}
	return *t.KeyByID(keyID), nil
}

// existingKey is the tenant's key keyID: 404 for a tenant that is gone or a key it never had.
func existingKey(t *domain.Tenant, id tenant.ID, keyID string) (*domain.Key, error) {
	if !t.Active() {
		return nil, notFound(id)
	}
	k := t.KeyByID(keyID)
	if k == nil {
		return nil, keyNotFound(id, keyID)
	}
	return k, nil
}

// liveKey is existingKey for a change that a revoked key cannot take (rotate, edit): 409 key_revoked.
func liveKey(t *domain.Tenant, id tenant.ID, keyID string) (*domain.Key, error) {
	k, err := existingKey(t, id, keyID)
	if err == nil && k.Revoked {
		err = apperr.New(apperr.KindConflict, domain.CodeKeyRevoked, fmt.Sprintf("API key %s is revoked; create a new one", keyID))
	}
	return k, err
}

// MaxGrace bounds a rotation's grace period.
const MaxGrace = 30 * 24 * time.Hour

// RotateKey gives a key a new secret; the old one keeps working for grace (0: it stops now). A
// revoked key cannot be rotated (409).
func (m Manager) RotateKey(ctx context.Context, id tenant.ID, keyID string, grace time.Duration) (string, domain.Key, error) {
	if grace < 0 || grace > MaxGrace {
		return "", domain.Key{}, apperr.Invalid("invalid_grace", "body.graceSeconds", fmt.Sprintf("the grace period must be between 0 and %d seconds", int(MaxGrace/time.Second)))
	}
	secret, hash, err := domain.NewKey()
	if err != nil {
		return "", domain.Key{}, err
	}
	now := m.now().UTC()
	t, err := m.change(ctx, id, func(t *domain.Tenant) ([]any, error) {
		if _, err := liveKey(t, id, keyID); err != nil {
			return nil, err
		}
		ev := events.ApiKeyRotated{ID: keyID, Hash: hash}
		if grace > 0 {
			ev.PreviousValidUntil = now.Add(grace)
		}
		return []any{ev}, nil
	})
	if err != nil {
		return "", domain.Key{}, err
	}
	return secret, *t.KeyByID(keyID), nil
}

// CodeKeyFromFile refuses an edit of what the tenants file declares of a key (its name, scopes).
const CodeKeyFromFile = "key_from_file"

// KeyEdit is what a PATCH of a key changes: each field set (non-nil) replaces the key's; Clear*
// take the optional ones away (no expiry, no limits, no budget).
type KeyEdit struct {
	Name        *string
	Scopes      []string // nil: unchanged; empty: the default scopes
	ScopesSet   bool
	ExpiresAt   *time.Time
	ClearExpiry bool
	Limits      *events.KeyLimits
	ClearLimits bool
	Budget      *events.KeyBudget
	ClearBudget bool
}

// EditKey records ApiKeyChanged with the key's name, scopes, expiry, limits and budget after the
// edit (never its secret): every replica applies them within a second. An edit that changes
// nothing records nothing; a revoked key cannot be edited (409 key_revoked).
func (m Manager) EditKey(ctx context.Context, id tenant.ID, keyID string, e KeyEdit) (domain.Key, error) {
	if e.ScopesSet {
		if err := domain.CheckScopes(e.Scopes); err != nil {
			return domain.Key{}, apperr.Invalid("invalid_scope", "body.scopes", err.Error())
		}
	}
	if e.ExpiresAt != nil && !e.ExpiresAt.After(m.now()) {
		return domain.Key{}, apperr.Invalid("invalid_expiry", "body.expiresAt", "expiresAt must be in the future")
	}
	t, err := m.change(ctx, id, func(t *domain.Tenant) ([]any, error) {
		k, err := liveKey(t, id, keyID)
		if err != nil {
			return nil, err
		}
		if k.FromFile() && (e.Name != nil && *e.Name != k.Name || e.ScopesSet && !slices.Equal(domain.NormalScopes(e.Scopes), domain.NormalScopes(k.Scopes))) {
			// The file's next sync would put them back: they are the file's to change.
			return nil, apperr.New(apperr.KindConflict, CodeKeyFromFile, fmt.Sprintf("API key %s is declared in the tenants file: change its name and scopes there (its expiresAt, limits and budget may be set here)", keyID))
		}
		ev := events.ApiKeyChanged{ID: keyID, Name: k.Name, Scopes: k.Scopes, ExpiresAt: k.ExpiresAt, Limits: k.Limits, Budget: k.Budget}
		if e.Name != nil {
			ev.Name = *e.Name
		}
		if e.ScopesSet {
			ev.Scopes = domain.NormalScopes(e.Scopes)
		}
		switch {
		case e.ClearExpiry:
			ev.ExpiresAt = nil
		case e.ExpiresAt != nil:
			at := e.ExpiresAt.UTC()
			ev.ExpiresAt = &at
		}
		switch {
		case e.ClearLimits:
			ev.Limits = nil
		case e.Limits != nil:
			ev.Limits = e.Limits
		}
		switch {
		case e.ClearBudget:
			ev.Budget = nil
		case e.Budget != nil:
			ev.Budget = e.Budget
		}
		if reflect.DeepEqual(ev, events.ApiKeyChanged{ID: keyID, Name: k.Name, Scopes: k.Scopes, ExpiresAt: k.ExpiresAt, Limits: k.Limits, Budget: k.Budget}) {
			return nil, nil
		}
		return []any{ev}, nil
	})
	if err != nil {
		return domain.Key{}, err
	}
	return *t.KeyByID(keyID), nil
}
