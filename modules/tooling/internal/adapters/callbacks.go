// Package adapters turns the module's ports into the SDK's host callbacks.
package adapters

import (
	"context"
	"errors"
	"fmt"

	"github.com/crispy-enigma/crispy/modules/tooling/internal/domain"
	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/tenant"
	"github.com/crispy-enigma/crispy/plugins/sdk"
)

// Completer, Embedder and Ingester mirror the module's ports.
type Completer interface {
	Complete(ctx context.Context, t tenant.ID, req domain.Completion) (domain.CompletionResult, error)
}

type Embedder interface {
	Embed(ctx context.Context, t tenant.ID, texts []string) ([][]float32, string, error)
}

type Ingester interface {
	Ingest(ctx context.Context, t tenant.ID, doc domain.Document) (domain.IngestResult, error)
}

// Callbacks answers tools' Host calls. The tenant comes only from the scope the SDK resolved from the
// call's capability token.
type Callbacks struct {
	Completer Completer
	Embedder  Embedder
	Ingester  Ingester
}

// Capabilities says which callbacks have a backend.
func (c Callbacks) Capabilities() sdk.Capabilities {
	return sdk.Capabilities{Complete: c.Completer != nil, Embed: c.Embedder != nil, Ingest: c.Ingester != nil}
}

func scopeTenant(s sdk.Scope) (tenant.ID, error) {
	t, err := tenant.Parse(s.TenantID)
	if err != nil {
		return tenant.ID{}, fmt.Errorf("callback scope: %w", err)
	}
	return t, nil
}

// mapErr keeps refusals the tool can act on and hides the rest behind a generic message. A refusal
// of the tenant's token budget is also recorded in the call's context (domain.Refusals), so that
// the call answers 429 budget_exceeded whatever the tool does with the error.
func mapErr(ctx context.Context, op string, err error) error {
	if e, ok := apperr.As(err); ok && e.Kind == apperr.KindRateLimited {
		domain.RecordRefusal(ctx, err)
		return fmt.Errorf("%s: %s: %w", op, e.Message, sdk.ErrUnavailable)
	}
	switch {
	case errors.Is(err, domain.ErrNoModel), errors.Is(err, sdk.ErrUnavailable):
		return fmt.Errorf("%s: %w", op, sdk.ErrUnavailable)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	}
	if e, ok := apperr.As(err); ok {
		switch e.Kind {
		case apperr.KindInvalid, apperr.KindTooLarge:
			return &sdk.Error{Code: e.Code, Message: e.Message}
		case apperr.KindForbidden:
			return fmt.Errorf("%s: %s: %w", op, e.Message, sdk.ErrPermissionDenied)
		case apperr.KindUnavailable:
			return fmt.Errorf("%s: %s: %w", op, e.Message, sdk.ErrUnavailable)
		}
	}
	return fmt.Errorf("%s failed", op)
}

func (c Callbacks) Complete(ctx context.Context, s sdk.Scope, req sdk.CompleteRequest) (sdk.Completion, error) {
	if c.Completer == nil {
		return sdk.Completion{}, sdk.ErrUnavailable
	}
	t, err := scopeTenant(s)
	if err != nil {
		return sdk.Completion{}, err
	}
	r, err := c.Completer.Complete(ctx, t, domain.Completion{System: req.System, Prompt: req.Prompt, MaxTokens: req.MaxTokens, UserID: s.UserID, RequestID: s.RequestID})
	if err != nil {
		return sdk.Completion{}, mapErr(ctx, "complete", err)
	}
	return sdk.Completion{Text: r.Text, Model: r.Model}, nil
}

func (c Callbacks) Embed(ctx context.Context, s sdk.Scope, texts []string) (sdk.Embeddings, error) {
	if c.Embedder == nil {
		return sdk.Embeddings{}, sdk.ErrUnavailable
	}
	t, err := scopeTenant(s)
	if err != nil {
		return sdk.Embeddings{}, err
	}
	v, model, err := c.Embedder.Embed(ctx, t, texts)
	if err != nil {
		return sdk.Embeddings{}, mapErr(ctx, "embed", err)
	}
	return sdk.Embeddings{Vectors: v, Model: model}, nil
}

func (c Callbacks) Ingest(ctx context.Context, s sdk.Scope, d sdk.Document) (sdk.IngestResult, error) {
	if c.Ingester == nil {
		return sdk.IngestResult{}, sdk.ErrUnavailable
	}
	t, err := scopeTenant(s)
	if err != nil {
		return sdk.IngestResult{}, err
	}
	r, err := c.Ingester.Ingest(ctx, t, domain.Document{DocID: d.DocID, Text: d.Text, Title: d.Title, Source: d.Source,
		URL: d.URL, Metadata: d.Metadata, ChunkSize: d.ChunkSize, UserID: s.UserID, RequestID: s.RequestID})
	if err != nil {
		return sdk.IngestResult{}, mapErr(ctx, "ingest", err)
	}
	return sdk.IngestResult{DocID: r.DocID, Chunks: r.Chunks, EmbeddingModel: r.EmbeddingModel}, nil
}
