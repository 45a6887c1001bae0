// Package search is the port to the vector index that retrieval searches: chunks with their tenant,
// document, text and vector, nearest-neighbour search filtered by tenant INSIDE the query (never after
// it), and deletion per (tenant, document). Implementations: embedded/ (an in-process HNSW per tenant,
// persisted under the data folder) and elastic/ (Elasticsearch dense_vector + knn with the tenant in
// knn.filter). searchtest holds the acceptance suite both run.
package search

import (
	"context"
	"errors"

	"github.com/crispy-enigma/crispy/platform/tenant"
)

// Chunk is one indexed passage.
type Chunk struct {
	DocID    string            `json:"docId"`
	ChunkID  string            `json:"chunkId"` // unique within the tenant: {docId}#{n}
	Text     string            `json:"text"`
	Title    string            `json:"title,omitempty"`
	Source   string            `json:"source,omitempty"`
	URL      string            `json:"url,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
	Vector   []float32         `json:"-"`
}

// Hit is a search result. Score is the cosine similarity of the query and the chunk, in [-1, 1],
// whatever the engine's native scale.
type Hit struct {
	Chunk
	Score float64 `json:"score"`
}

// Filter narrows a search. Every condition must hold.
type Filter struct {
	// DocIDs, when non-empty, keeps chunks of these documents only.
	DocIDs []string `json:"docIds,omitempty"`
	// Metadata keeps chunks whose metadata has every key with exactly this value.
	Metadata map[string]string `json:"metadata,omitempty"`
}

// IsZero reports whether f keeps everything.
func (f Filter) IsZero() bool { return len(f.DocIDs) == 0 && len(f.Metadata) == 0 }

// Matches reports whether c satisfies f (for engines that evaluate filters themselves).
func (f Filter) Matches(c *Chunk) bool {
	if len(f.DocIDs) > 0 {
		ok := false
		for _, d := range f.DocIDs {
			if d == c.DocID {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	for k, v := range f.Metadata {
		if c.Metadata[k] != v {
			return false
		}
	}
	return true
}

// Query is a kNN search within one tenant.
type Query struct {
	Vector []float32
	K      int
	Filter Filter
	// MinScore drops hits scoring below it; -1 keeps every hit.
	MinScore float64
}

// Index is the vector index port. Every method takes the tenant; no method can reach another
// tenant's chunks.
//
// The index is a projection of the event log (retrieval's document events), so it also keeps, per
// tenant, a checkpoint: a position in the log such that every document whose last event is at or
// below it shows that event's state in the index. The retrieval module catches a tenant up from its
// checkpoint at start (0: from the beginning of the log) and refuses reads until it has.
type Index interface {
	// Upsert adds chunks to t's index, replacing chunks with the same ChunkID. Vectors of one tenant
	// must share a dimension.
	Upsert(ctx context.Context, t tenant.ID, chunks []Chunk) error
	// DeleteDoc removes every chunk of docID from t's index (no error when there is none).
	DeleteDoc(ctx context.Context, t tenant.ID, docID string) error
	// DeleteTenant removes all of t's chunks and its checkpoint (before a rebuild).
	DeleteTenant(ctx context.Context, t tenant.ID) error
	// Search returns up to q.K hits of t, best first, scoring at least q.MinScore.
	Search(ctx context.Context, t tenant.ID, q Query) ([]Hit, error)
	// Count returns how many chunks t has.
	Count(ctx context.Context, t tenant.ID) (int, error)
	// CheckWrite reports whether an Upsert of dim-dimensional vectors into t's index (dim 0: a
	// deletion) would be taken now: ErrDimension when t's index holds vectors of another dimension,
	// ErrUnavailable or ErrClosed when the engine cannot take writes. Retrieval asks before it records
	// a change, so a change the index refuses is not recorded either.
	CheckWrite(ctx context.Context, t tenant.ID, dim int) error
	// Checkpoint returns t's checkpoint (see above): 0 when the index knows nothing of t's place in
	// the log (a new tenant, or an embedded index whose files were missing, torn, corrupt or of an
	// older format).
	Checkpoint(ctx context.Context, t tenant.ID) (uint64, error)
	// SetCheckpoint records t's checkpoint. The caller must have made the index reflect every document
	// event at or below pos first. Indexes that persist in the background store it with the content it
	// describes (the embedded index: in the manifest of the same flush), never ahead of it.
	SetCheckpoint(ctx context.Context, t tenant.ID, pos uint64) error
	// Close flushes (embedded: appends what changed and writes its manifest) and releases the index.
	Close() error
}

// Flusher is implemented by indexes that persist in the background (the embedded index's files).
type Flusher interface {
	Flush(ctx context.Context) error
}

// Errors callers test with errors.Is.
var (
	// ErrUnavailable: the engine cannot be reached or failed on its side (map to 503).
	ErrUnavailable = errors.New("search index unavailable")
	// ErrDimension: a vector's dimension differs from the tenant's index (the tenant changed its
	// embeddings model without a reindex).
	ErrDimension = errors.New("vector dimension mismatch")
	// ErrClosed: the index was closed.
	ErrClosed = errors.New("search index closed")
)
