package retrieval

import (
	"context"

	"github.com/crispy-enigma/crispy/modules/retrieval/internal/domain"
	tenancyevents "github.com/crispy-enigma/crispy/modules/tenancy/events"
	"github.com/crispy-enigma/crispy/platform/ai/embeddings"
	"github.com/crispy-enigma/crispy/platform/ai/rerank"
	"github.com/crispy-enigma/crispy/platform/metering"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// TenantPolicy gives a tenant's configuration (models.embeddings selects its embeddings model).
// cmd/crispy adapts the tenancy module to it. Nil in Deps: every tenant uses the default model.
type TenantPolicy interface {
	Config(ctx context.Context, t tenant.ID) (tenancyevents.TenantConfig, error)
}

// Message is one chat message of a completion request.
type Message struct {
	Role    string // system, user or assistant
	Content string
}

// CompletionRequest asks the tenant's chat model for text.
type CompletionRequest struct {
	Messages  []Message
	MaxTokens int
	// Purpose names the call in the tenant's usage (platform/metering: PurposeRewrite, PurposeAnswer).
	Purpose string
}

// CompletionResult is the model's answer.
type CompletionResult struct {
	Text  string
	Model string
}

// Completer writes RAG answers and rewrites queries with the tenant's chat model. It returns
// ErrNoModel (wrapped or not) when only the offline model is configured: the module then writes an
// extractive answer itself and skips the rewrite. Nil in Deps means the same. It meters the call
// (usage and token budget): an *apperr.Error 429 budget_exceeded refuses the search.
type Completer interface {
	Complete(ctx context.Context, t tenant.ID, req CompletionRequest) (CompletionResult, error)
}

// ErrNoModel is what a Completer returns when only the offline model is configured.
var ErrNoModel = domain.ErrNoModel

// Embedders resolves a "provider:model" spec ("" = the deployment default) to an embedder;
// *embeddings.Resolver implements it.
type Embedders interface {
	Resolve(spec string) (embeddings.Embedder, error)
}

// Rerankers resolves a tenant's models.rerank ("provider:model"; "": the server's default; "none":
// off) to a reranker, nil when there is none; *rerank.Resolver implements it. Its calls are
// metered like the embeddings' (purpose search.rerank).
type Rerankers interface {
	Resolve(spec string) (rerank.Reranker, error)
}

// Meter books and records the embeddings calls the module makes in a request (a search's query
// vector, an ingest's chunk vectors) against the tenant's token budget and usage; the conversation
// module's Meter implements it. Nil in Deps: not metered (the CLI's ingest and reindex). Calls to
// the built-in hashed embedder are never metered.
type Meter = metering.Meter
