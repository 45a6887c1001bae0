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
type Index interface {
	// Upsert adds chunks to t's index, replacing chunks with the same ChunkID. Vectors of one tenant
	// must share a dimension.
	Upsert(ctx context.Context, t tenant.ID, chunks []Chunk) error
	// DeleteDoc removes every chunk of docID from t's index (no error when there is none).
	DeleteDoc(ctx context.Context, t tenant.ID, docID string) error
	// DeleteTenant removes all of t's chunks (before a reindex).
	DeleteTenant(ctx context.Context, t tenant.ID) error
	// Search returns up to q.K hits of t, best first, scoring at least q.MinScore.
	Search(ctx context.Context, t tenant.ID, q Query) ([]Hit, error)
	// Count returns how many chunks t has.
	Count(ctx context.Context, t tenant.ID) (int, error)
	// Close flushes (embedded: writes its snapshot) and releases the index.
	Close() error
}

// Rebuilder is implemented by indexes that can lose content the event log still has (the embedded
// index when a tenant's snapshot is missing, corrupt or older than its last change). The retrieval
// module reindexes such a tenant from its events at start.
type Rebuilder interface {
	NeedsRebuild(t tenant.ID) bool
}

// Flusher is implemented by indexes that persist in the background (the embedded index's snapshot).
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
