package conversation

import (
	"context"
	"encoding/json"

	"github.com/crispy-enigma/crispy/modules/conversation/internal/app"
	"github.com/crispy-enigma/crispy/modules/conversation/internal/domain"
	tenancyevents "github.com/crispy-enigma/crispy/modules/tenancy/events"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// TenantPolicy gives a tenant's configuration: models (chat, fallbacks, allowed), tokenBudget,
// sessionRetentionDays, maxMessagesPerSession and features (rag, tts). cmd/crispy adapts the tenancy
// module to it. An unknown tenant is an error.
type TenantPolicy interface {
	Config(ctx context.Context, t tenant.ID) (tenancyevents.TenantConfig, error)
}

// KeyBudgets gives an API key as recorded (tenancy.Module.APIKey, by the request's credential id
// "key:<id>"). When the Policy implements it too, a key's budget.dailyTokens / monthlyTokens are
// enforced within the tenant's budget.
type KeyBudgets interface {
	APIKey(t tenant.ID, keyID string) (tenancyevents.APIKey, bool)
}

// Pricer prices a model's tokens in USD (observability.Module.Cost): prompt tokens (cached ones
// included), cached, completion (reasoning included) and reasoning. priced is false for a model the
// price table does not know (it then costs nothing).
type Pricer interface {
	Cost(model string, prompt, cached, completion, reasoning int64) (usd float64, priced bool)
}

type pricerAdapter struct{ p Pricer }

func (a pricerAdapter) Cost(model string, t domain.SpendTokens) (float64, bool) {
	return a.p.Cost(model, t.Prompt, t.Cached, t.Completion, t.Reasoning)
}

// TokenWindow is a tokens-per-minute log shared by replicas (see Deps.TokenWindow); TokenGrant is
// its reservation's answer.
type (
	TokenWindow = app.TokenWindow
	TokenGrant  = app.TokenGrant
)

// Retriever finds the tenant's passages for a query (the retrieval module's public Retrieve). A nil
// Retriever means RAG requests get no passages, and the answer says so.
type Retriever interface {
	Retrieve(ctx context.Context, t tenant.ID, query string, k int) ([]Passage, error)
}

// ToolRunner runs a tool for a chat turn (modules/tooling's Module.Execute has this signature). Its
// errors are *apperr.Error and pass through to the client unchanged.
type ToolRunner interface {
	Execute(ctx context.Context, t tenant.ID, name string, params json.RawMessage, userID string) (json.RawMessage, error)
}

// Passage is one retrieved chunk.
type Passage = domain.Passage

// Sealer is the store's sealer (platform/sealing.Sealer): Seal/Open keep the session list's titles
// at rest under the session's data key, and Destroy erases a session's content by destroying its
// key. Nil (tests): titles are kept plain and deletion destroys nothing (nothing was sealed).
type Sealer interface {
	Seal(ctx context.Context, t tenant.ID, keyID string, plaintext []byte) ([]byte, error)
	Open(ctx context.Context, t tenant.ID, keyID string, sealed []byte) ([]byte, error)
	Destroy(ctx context.Context, t tenant.ID, keyID string) error
}
