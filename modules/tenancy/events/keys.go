package events

import (
	"slices"
	"time"
)

// Event types of the key lifecycle and of a tenant's deletion, recorded in t-{tenant}.tenant beside
// the configuration events.
const (
	TypeApiKeyRotated = "tenancy.ApiKeyRotated"
	TypeApiKeyChanged = "tenancy.ApiKeyChanged"
	TypeApiKeysUsed   = "tenancy.ApiKeysUsed"
	TypeTenantDeleted = "tenancy.TenantDeleted"
)

// Scopes an API key may hold: what a key is allowed to do on the tenant's routes. A key without a
// route's scope is refused with 403 scope_required naming it.
const (
	ScopeChat   = "chat"   // /chat, /sessions, /v1/chat/completions, /tts
	ScopeSearch = "search" // /search, /v1/embeddings
	ScopeIngest = "ingest" // /ingest, /documents
	ScopeTools  = "tools"  // /tools, /schema/tools
	ScopeAudit  = "audit"  // /audit/* (and every user's sessions)
	ScopeUsage  = "usage"  // /usage, the tenant's /metrics/* views
)

// AllScopes lists every scope, in this order.
var AllScopes = []string{ScopeChat, ScopeSearch, ScopeIngest, ScopeTools, ScopeAudit, ScopeUsage}

// DefaultScopes are a key's scopes when none are given: all but audit.
func DefaultScopes() []string {
	return []string{ScopeChat, ScopeSearch, ScopeIngest, ScopeTools, ScopeUsage}
}

// ValidScope reports whether s names a scope.
func ValidScope(s string) bool { return slices.Contains(AllScopes, s) }

// KeyLimits are an API key's own rate limits (zero: the tenant's keyPerMinute/burst apply, and no
// token limit of its own). They apply within the tenant's: a key can be held lower, never higher.
type KeyLimits struct {
	PerMinute       int `json:"perMinute,omitempty" yaml:"perMinute"`
	Burst           int `json:"burst,omitempty" yaml:"burst"`
	TokensPerMinute int `json:"tokensPerMinute,omitempty" yaml:"tokensPerMinute"`
}

// KeyBudget is an API key's own spend ceilings (0: none), within the tenant's.
type KeyBudget struct {
	DailyTokens   int64   `json:"dailyTokens,omitempty" yaml:"dailyTokens"`
	MonthlyTokens int64   `json:"monthlyTokens,omitempty" yaml:"monthlyTokens"`
	DailyUSD      float64 `json:"dailyUsd,omitempty" yaml:"dailyUsd"`
	MonthlyUSD    float64 `json:"monthlyUsd,omitempty" yaml:"monthlyUsd"`
}

// Key sources: where a key was declared. A tenants-file sync adds and revokes only the keys of the
// file; keys made through the admin API are left alone by it.
const (
	KeySourceFile = "file"
	KeySourceAPI  = "api"
)

// APIKey is an API key as recorded (never its secret): what other modules read of the key that
// authenticated a request (tenancy.Module.APIKey), by its ID (the request's credential).
type APIKey struct {
	ID        string     `json:"id"`
	Name      string     `json:"name,omitempty"`
	Scopes    []string   `json:"scopes"`
	CreatedAt time.Time  `json:"createdAt,omitzero"`
	ExpiresAt *time.Time `json:"expiresAt,omitempty"`
	Limits    *KeyLimits `json:"limits,omitempty"`
	Budget    *KeyBudget `json:"budget,omitempty"`
	// User binds the key to one end user: its requests act as that x-user-id whatever they send.
	User      string     `json:"user,omitempty"`
	Source    string     `json:"source"`
	RevokedAt *time.Time `json:"revokedAt,omitempty"`
}

// HasScope reports whether the key holds scope s.
func (k APIKey) HasScope(s string) bool { return slices.Contains(k.Scopes, s) }

// ApiKeyRotated gives a key a new secret (its hash); the previous secret stays valid until
// PreviousValidUntil (zero: not at all), so clients can move over without an outage.
type ApiKeyRotated struct {
	ID                 string    `json:"id"`
	Hash               string    `json:"hash"`
	PreviousValidUntil time.Time `json:"previousValidUntil,omitzero"`
}

// ApiKeyChanged records an edit of a key through the admin API (PATCH): the name, scopes, expiry,
// limits and budget it has from then on, all of them (nil: none). Its secret, id, user and source
// are unchanged: a new secret is a rotation.
type ApiKeyChanged struct {
	ID        string     `json:"id"`
	Name      string     `json:"name,omitempty"`
	Scopes    []string   `json:"scopes"`
	ExpiresAt *time.Time `json:"expiresAt,omitempty"`
	Limits    *KeyLimits `json:"limits,omitempty"`
	Budget    *KeyBudget `json:"budget,omitempty"`
}

// KeyUseCategory is the category of the streams that record when keys were used: one stream a day
// per tenant, t-{tenant}.keyuse-YYYYMMDD, so the configuration stream does not grow with traffic.
const KeyUseCategory = "keyuse"

// ApiKeysUsed records when a replica last saw each of a tenant's keys authenticate a request (key
// id -> Unix seconds). A replica records at most one a minute per tenant, with every key used since
// its last, so a key's lastUsedAt is shared by the replicas and survives restarts, to the minute.
type ApiKeysUsed struct {
	Keys map[string]int64 `json:"keys"`
}

// TenantDeleted records that the tenant was deleted through the admin API: like TenantRemoved it is
// no longer resolvable and its keys stop authenticating, and its data keys are destroyed (its sealed
// sessions and documents read as erased from then on).
type TenantDeleted struct {
	Source string `json:"source"`
}
