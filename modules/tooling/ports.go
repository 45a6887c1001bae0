package tooling

import (
	"context"

	tenancyevents "github.com/crispy-enigma/crispy/modules/tenancy/events"
	"github.com/crispy-enigma/crispy/modules/tooling/internal/domain"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// TenantPolicy gives a tenant's configuration: tools.enabled/allow/deny, and the features that revoke
// tool permissions (features "tool.model.complete", "tool.model.embed", "tool.index.write" set to
// false). cmd/crispy adapts the tenancy module to it. An unknown tenant is an error.
type TenantPolicy interface {
	Config(ctx context.Context, t tenant.ID) (tenancyevents.TenantConfig, error)
}

// Completer answers a tool's Host.Complete with the tenant's chat model. Return ErrNoModel (wrapped or
// not) when only the offline model is configured: tools then use their deterministic methods. Nil in
// Deps means the same.
type Completer interface {
	Complete(ctx context.Context, t tenant.ID, req Completion) (CompletionResult, error)
}

// Embedder answers Host.Embed with the tenant's embeddings model (the retrieval module's public Embed).
type Embedder interface {
	Embed(ctx context.Context, t tenant.ID, texts []string) (vectors [][]float32, model string, err error)
}

// Ingester answers Host.Ingest: the document goes into the tenant's index (the retrieval module's
// public Ingest).
type Ingester interface {
	Ingest(ctx context.Context, t tenant.ID, doc Document) (IngestResult, error)
}

// Types of the ports.
type (
	Completion       = domain.Completion
	CompletionResult = domain.CompletionResult
	Document         = domain.Document
	IngestResult     = domain.IngestResult
)

// ErrNoModel is what a Completer returns when only the offline model is configured.
var ErrNoModel = domain.ErrNoModel
