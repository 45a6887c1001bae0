// Package events holds the tenancy module's events. It is the only tenancy package other modules may
// import: TenantConfig is the tenant policy they read (models, budgets, tools, features).
package events

import "time"

// Event types, recorded in t-{tenant}.tenant.
const (
	TypeTenantRegistered    = "tenancy.TenantRegistered"
	TypeTenantConfigChanged = "tenancy.TenantConfigChanged"
	TypeApiKeyAdded         = "tenancy.ApiKeyAdded"
	TypeApiKeyRevoked       = "tenancy.ApiKeyRevoked"
	TypeTenantRemoved       = "tenancy.TenantRemoved"
)

// Register adds these events to an event codec (platform/bus/codec: pass its Add), so the bus
// decodes them once and typed handlers receive them.
func Register(add func(typeName string, sample any)) {
	add(TypeTenantRegistered, TenantRegistered{})
	add(TypeTenantConfigChanged, TenantConfigChanged{})
	add(TypeApiKeyAdded, ApiKeyAdded{})
	add(TypeApiKeyRevoked, ApiKeyRevoked{})
	add(TypeTenantRemoved, TenantRemoved{})
	add(TypeApiKeyRotated, ApiKeyRotated{})
	add(TypeTenantDeleted, TenantDeleted{})
	add(TypeApiKeyChanged, ApiKeyChanged{})
	add(TypeApiKeysUsed, ApiKeysUsed{})
}

// TenantConfig is a tenant's configuration (SPEC §1) without its API keys, which are events of their
// own. Zero values mean "the server's default" (see the field docs).
type TenantConfig struct {
	ID                    string          `json:"id" yaml:"id"`
	Hosts                 []string        `json:"hosts,omitempty" yaml:"hosts"`
	Models                Models          `json:"models" yaml:"models"`
	RateLimit             RateLimit       `json:"rateLimit" yaml:"rateLimit"`
	TokenBudget           TokenBudget     `json:"tokenBudget" yaml:"tokenBudget"`
	SessionRetentionDays  int             `json:"sessionRetentionDays" yaml:"sessionRetentionDays"`   // default 30
	MaxMessagesPerSession int             `json:"maxMessagesPerSession" yaml:"maxMessagesPerSession"` // default 1000
	Tools                 Tools           `json:"tools" yaml:"tools"`
	Features              map[string]bool `json:"features,omitempty" yaml:"features"`
	CORS                  CORS            `json:"cors" yaml:"cors"`
	// SystemPrompt, when set, is sent first in every /v1/chat/completions call of the tenant
	// (nothing is injected otherwise).
	SystemPrompt string `json:"systemPrompt,omitempty" yaml:"systemPrompt"`
	// Search tunes POST /search and the chat's retrieval (issue 16).
	Search Search `json:"search,omitzero" yaml:"search"`
}

// Search is a tenant's retrieval settings; zero values mean the server's defaults.
type Search struct {
	// Mode of a request that names none: hybrid (default), vector or lexical.
	Mode string `json:"mode,omitempty" yaml:"mode"`
	// RRFK is the reciprocal rank fusion constant of hybrid search (default 60).
	RRFK int `json:"rrfK,omitempty" yaml:"rrfK"`
	// VectorWeight and LexicalWeight weigh the two halves in the fusion (default 1 each).
	VectorWeight  float64 `json:"vectorWeight,omitempty" yaml:"vectorWeight"`
	LexicalWeight float64 `json:"lexicalWeight,omitempty" yaml:"lexicalWeight"`
	// Feedback turns pseudo-relevance feedback on or off (default on).
	Feedback *bool `json:"feedback,omitempty" yaml:"feedback"`
	// MinRerankScore is the relevance threshold of hits ordered by the reranker (models.rerank),
	// on its [0, 1] score (default 0.1, retrieval's DefaultMinRerankScore).
	MinRerankScore float64 `json:"minRerankScore,omitempty" yaml:"minRerankScore"`
}

// Models selects chat and embedding models as "provider:model".
type Models struct {
	Chat       string   `json:"chat,omitempty" yaml:"chat"`
	Embeddings string   `json:"embeddings,omitempty" yaml:"embeddings"`
	Fallbacks  []string `json:"fallbacks,omitempty" yaml:"fallbacks"`
	Allowed    []string `json:"allowed,omitempty" yaml:"allowed"`
	// Rerank is the reranker that reorders search candidates ("provider:model": cohere:…,
	// openai:… for an OpenAI-compatible /rerank, workers-ai:@cf/baai/bge-reranker-base); "" the
	// server's default (CRISPY_RERANK_MODEL), "none" no reranking.
	Rerank string `json:"rerank,omitempty" yaml:"rerank"`
	// Aliases name models for clients ("fast": "openai:gpt-4o-mini"); they win over the server's.
	Aliases map[string]string `json:"aliases,omitempty" yaml:"aliases"`
	// Retry, when set, is how often a model is retried on 429/5xx before the next one is tried.
	Retry *Retry `json:"retry,omitempty" yaml:"retry"`
	// MaxTokens is the max_tokens of a call to a model ("provider:model") that names none: what
	// its budgets reserve and what it is told it may write (else the server's default).
	MaxTokens map[string]int `json:"maxTokens,omitempty" yaml:"maxTokens"`
}

// Retry is a tenant's per-model retry policy: Attempts retries after the first try, the first one
// after BackoffMs (doubled each time, jittered).
type Retry struct {
	Attempts  int `json:"attempts" yaml:"attempts"`
	BackoffMs int `json:"backoffMs" yaml:"backoffMs"`
}

// RateLimit is the tenant's rate limit (defaults 60 per minute, burst 10). Every ceiling holds over
// any span: PerMinute accepted requests in any 60 s span and Burst in any 1 s span, for each
// (tenant, x-user-id) and for the tenant's requests without x-user-id. KeyPerMinute (default
// PerMinute, same Burst) caps each API key over all its users, and TenantPerMinute (default
// 10*PerMinute, 10*Burst) the tenant over all keys and users: a request must fit every ceiling
// that applies, so inventing x-user-id values cannot lift a client above its key's ceiling.
// TokensPerMinute (0: none) caps the model tokens of the tenant's chat turns in any 60 s span.
// WindowSec is accepted for old files and ignored.
type RateLimit struct {
	PerMinute       int `json:"perMinute" yaml:"perMinute"`
	Burst           int `json:"burst" yaml:"burst"`
	WindowSec       int `json:"windowSec" yaml:"windowSec"`
	TenantPerMinute int `json:"tenantPerMinute,omitempty" yaml:"tenantPerMinute"`
	KeyPerMinute    int `json:"keyPerMinute,omitempty" yaml:"keyPerMinute"`
	TokensPerMinute int `json:"tokensPerMinute,omitempty" yaml:"tokensPerMinute"`
}

// TokenBudget ceilings; 0 means no ceiling.
type TokenBudget struct {
	Daily   int64 `json:"daily,omitempty" yaml:"daily"`
	Monthly int64 `json:"monthly,omitempty" yaml:"monthly"`
}

// Tools says which tools the tenant may run. Enabled nil means true; an empty Allow means all;
// Deny wins over Allow.
type Tools struct {
	Enabled *bool    `json:"enabled,omitempty" yaml:"enabled"`
	Allow   []string `json:"allow,omitempty" yaml:"allow"`
	Deny    []string `json:"deny,omitempty" yaml:"deny"`
}

// CORS lists browser origins allowed to call the API.
type CORS struct {
	AllowedOrigins []string `json:"allowedOrigins,omitempty" yaml:"allowedOrigins"`
}

// Feature reports a named flag.
func (c TenantConfig) Feature(name string) bool { return c.Features[name] }

// ToolsEnabled reports whether the tenant may run tools at all.
func (c TenantConfig) ToolsEnabled() bool { return c.Tools.Enabled == nil || *c.Tools.Enabled }

// ToolAllowed applies enabled, allow and deny (deny wins).
func (c TenantConfig) ToolAllowed(name string) bool {
	if !c.ToolsEnabled() {
		return false
	}
	for _, d := range c.Tools.Deny {
		if d == name {
			return false
		}
	}
	if len(c.Tools.Allow) == 0 {
		return true
	}
	for _, a := range c.Tools.Allow {
		if a == name {
			return true
		}
	}
	return false
}

// RetentionDays is SessionRetentionDays with its default.
func (c TenantConfig) RetentionDays() int {
	if c.SessionRetentionDays <= 0 {
		return 30
	}
	return c.SessionRetentionDays
}

// MaxMessages is MaxMessagesPerSession with its default.
func (c TenantConfig) MaxMessages() int {
	if c.MaxMessagesPerSession <= 0 {
		return 1000
	}
	return c.MaxMessagesPerSession
}

// TenantRegistered is the first event of a tenant's stream.
type TenantRegistered struct {
	Config TenantConfig `json:"config"`
	Source string       `json:"source"` // the tenants file, or "default" for the demo tenant
}

// TenantConfigChanged replaces the configuration when the tenants file changes.
type TenantConfigChanged struct {
	Config TenantConfig `json:"config"`
	Source string       `json:"source"`
}

// ApiKeyAdded records a key by its hash ("sha256:<hex>"); the key itself is never stored. Events of
// the tenants file before keys had ids hold only Hash: the ID is then derived from it, the scopes
// are DefaultScopes and the source is the file.
type ApiKeyAdded struct {
	Hash      string     `json:"hash"`
	ID        string     `json:"id,omitempty"`
	Name      string     `json:"name,omitempty"`
	Scopes    []string   `json:"scopes,omitempty"` // empty: DefaultScopes
	CreatedAt time.Time  `json:"createdAt,omitzero"`
	ExpiresAt *time.Time `json:"expiresAt,omitempty"`
	Limits    *KeyLimits `json:"limits,omitempty"`
	Budget    *KeyBudget `json:"budget,omitempty"`
	User      string     `json:"user,omitempty"`
	Source    string     `json:"source,omitempty"` // KeySourceAPI, or the file ("" in older events)
}

// ApiKeyRevoked revokes a key: by ID, or (events of the tenants file before keys had ids) by Hash.
// A revoked key is refused with 401 key_revoked from then on.
type ApiKeyRevoked struct {
	Hash string    `json:"hash,omitempty"`
	ID   string    `json:"id,omitempty"`
	At   time.Time `json:"at,omitzero"`
}

// TenantRemoved records that the tenant is no longer in the tenants file: it stops being resolvable
// and its keys stop authenticating. Its other streams (sessions, documents, audit) are untouched. A
// tenant that comes back in the file is registered again (TenantRegistered, then its keys).
type TenantRemoved struct {
	Source string `json:"source"`
}
