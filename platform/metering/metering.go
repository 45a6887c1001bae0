// Package metering is the port through which a module meters the model calls it makes that are not
// chat turns (query rewrites, search answers, tool callbacks, embeddings): each call is first booked
// against the tenant's token budget (Begin, which refuses with 429 budget_exceeded when it does not
// fit) and then recorded as one usage event with its model, tokens and purpose (Hold.Done), which
// /usage, /metrics/cost and the budget count like a chat turn. The conversation module implements it
// (it owns the usage event and the budget ledger); cmd/crispy passes it to the others.
//
// Calls that reach no model provider (the built-in offline model, the hashed embedder) are neither
// booked nor recorded: they cost nothing and a search on the default deployment stays write-free.
package metering

import (
	"context"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/crispy-enigma/crispy/platform/tenant"
)

// Purposes of a metered call (recorded in the usage event; a chat turn has none).
const (
	PurposeRewrite         = "search.rewrite"    // POST /search: the query rewritten for the index
	PurposeAnswer          = "search.answer"     // POST /search answer:true: the cited answer and its follow-ups (one call)
	PurposeTool            = "tool.complete"     // a tool's Host.Complete callback
	PurposeToolEmbed       = "tool.embeddings"   // a tool's Host.Embed callback
	PurposeEmbedSearch     = "embeddings.search" // a search's (or a RAG chat turn's) query vector
	PurposeEmbedIngest     = "embeddings.ingest" // an ingested document's chunk vectors
	PurposeEmbeddings      = "embeddings"        // POST /v1/embeddings
	PurposeRerank          = "search.rerank"     // a search's (or a RAG chat turn's) candidates reordered by the tenant's reranker
	OperationChat          = "chat"
	OperationEmbeddings    = "embeddings"
	OperationRerank        = "rerank"
	OutcomeCompleted       = "completed"
	OutcomeFailed          = "failed"
	OutcomeBudgetExhausted = "budget_exceeded"
)

// Call is a finished model call.
type Call struct {
	Purpose   string // one of the Purpose* constants
	Operation string // OperationChat, OperationEmbeddings or OperationRerank
	// Model is the "provider:model" that answered (or the last one tried when none did).
	Model            string
	PromptTokens     int
	CompletionTokens int
	// Estimated is true when the provider reported no usage and the tokens were estimated.
	Estimated bool
	Latency   time.Duration
	// Fallbacks are the models tried before the one that answered, in order.
	Fallbacks []Attempt
	// Err is the call's failure (nil: completed). A failed call is still recorded: the tokens a
	// provider may have billed count, and the request shows in /usage as failed.
	Err error
}

// Attempt is a model that was tried and did not answer, and why (platform/ai's reasons).
type Attempt struct{ Model, Reason string }

// Meter books and records model calls.
type Meter interface {
	// Begin books up to tokens of t's budget for one call. It returns an *apperr.Error (429
	// budget_exceeded, or 503 while the budget's read model catches up) when the call must not run.
	Begin(ctx context.Context, t tenant.ID, tokens int) (Hold, error)
}

// Hold is one booked call.
type Hold interface {
	// Done records the call's usage event and replaces the booking by the tokens it used.
	Done(ctx context.Context, c Call) error
	// Cancel drops the booking of a call that never reached a model.
	Cancel()
}

// Nop meters nothing (tests, the CLI's reindex).
type Nop struct{}

// Begin books nothing.
func (Nop) Begin(context.Context, tenant.ID, int) (Hold, error) { return nopHold{}, nil }

type nopHold struct{}

func (nopHold) Done(context.Context, Call) error { return nil }
func (nopHold) Cancel()                          {}

// EstimateTokens is the usual estimate of about four characters a token, at least one per text.
func EstimateTokens(texts ...string) int {
	n := 0
	for _, s := range texts {
		n += max(1, (utf8.RuneCountInString(s)+3)/4)
	}
	return n
}

// Local reports whether a "provider:model" id runs in-process (the offline chat model, the hashed
// embedder): such calls are not metered.
func Local(model string) bool { return strings.HasPrefix(model, "builtin:") }
