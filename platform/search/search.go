// Package search is the port to the vector index that retrieval searches: chunks with their tenant,
// document, text and vector, nearest-neighbour search filtered by tenant INSIDE the query (never after
// it), and deletion per (tenant, document). Implementations: embedded/ (an in-process HNSW per tenant,
// persisted under the data folder) and elastic/ (Elasticsearch dense_vector + knn with the tenant in
// knn.filter). searchtest holds the acceptance suite both run.
package search

import (
	"cmp"
	"context"
	"errors"
	"slices"

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
	// Terms are the chunk's analysed words (lexical.Analyze of its plain text), for the lexical
	// half of the index. The caller analyses before sealing the text, so an engine that only ever
	// sees ciphertext can still match words; engines keep them as hashes (lexical.Hash), never as
	// words. Empty: the chunk is found by its vector only.
	Terms []string `json:"-"`
	// EmbedKey names what Vector was computed from (retrieval: a hash of the embeddings model and
	// the text it embedded). An engine that keeps it hands the vector back by it (VectorSource), so
	// a re-ingest or a repair embeds, and pays for, only the texts it holds no vector of. Empty: the
	// vector cannot be reused.
	EmbedKey string `json:"-"`
}

// Hit is a search result. Score is what the query's mode ranked by: in ModeVector the cosine
// similarity of the query and the chunk, in [-1, 1], whatever the engine's native scale; in
// ModeLexical the BM25 score normalised to [0, 1) (lexical.Normalize); in ModeHybrid the fused
// reciprocal-rank score divided by the most a hit can get (first in both lists), in (0, 1].
// VectorScore and LexicalScore are the two halves' own scores (0 where the engine does not know
// them: a hit that one half did not return), which a relevance threshold reads.
type Hit struct {
	Chunk
	Score        float64 `json:"score"`
	VectorScore  float64 `json:"vectorScore,omitempty"`
	LexicalScore float64 `json:"lexicalScore,omitempty"`
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

// Mode says which half of the index a query searches.
type Mode string

// Modes. The zero Mode is ModeVector (callers written before the lexical half).
const (
	ModeHybrid  Mode = "hybrid"  // both, fused by reciprocal rank
	ModeVector  Mode = "vector"  // nearest neighbours of Query.Vector
	ModeLexical Mode = "lexical" // BM25 over Query.Terms
)

// Modes lists the modes a request may name.
var Modes = []Mode{ModeHybrid, ModeVector, ModeLexical}

// Fusion weighs the two halves of a hybrid query: reciprocal rank fusion, a hit's score being
// the sum over the lists that hold it of weight / (K + rank), rank from 1.
type Fusion struct {
	K             int     // default 60 (Cormack, Clarke and Büttcher 2009)
	VectorWeight  float64 // default 1
	LexicalWeight float64 // default 1
}

// WithDefaults fills the zero fields.
func (f Fusion) WithDefaults() Fusion {
	if f.K <= 0 {
		f.K = 60
	}
	if f.VectorWeight <= 0 {
		f.VectorWeight = 1
	}
	if f.LexicalWeight <= 0 {
		f.LexicalWeight = 1
	}
	return f
}

// Query is a search within one tenant.
type Query struct {
	Mode   Mode      // "": ModeVector
	Vector []float32 // ModeVector and ModeHybrid
	Terms  []string  // the query's analysed words (lexical.Analyze): ModeLexical and ModeHybrid
	Text   string    // the query as typed, for engines that analyse it themselves (Elasticsearch)
	Fusion Fusion    // ModeHybrid
	// Feedback asks for pseudo-relevance feedback (ModeLexical, ModeHybrid): the best passages of
	// a first lexical pass expand the query before the ranking that is returned. Engines that
	// cannot (Elasticsearch) ignore it.
	Feedback bool
	K        int
	Filter   Filter
	// MinScore drops hits whose Score is below it; -1 keeps every hit.
	MinScore float64
}

// Relevance thresholds, per half, calibrated with test/cranfield TestCalibrateRelevanceThresholds
// (the offline embedder; BM25 normalised by lexical.Normalize): just above the best score that
// off-topic questions (cooking, travel, passwords, asked of the aeronautics collection) reach, which
// keeps 93% of the passages judged relevant in the dev queries' top 10. A semantic embeddings model
// scores unrelated text higher than the offline one does; its tenants may need a higher
// MinVectorScore.
var (
	MinVectorScore  = 0.25 // cosine
	MinLexicalScore = 0.20 // share of the query's BM25 weight matched
)

// Relevant reports whether h passes mode's threshold: vector, its cosine; lexical, its normalised
// BM25; hybrid, either (a passage that matches the words well or the meaning well is citable). An
// engine that reports only Score (no halves) is judged on it in the vector and lexical modes.
func Relevant(h Hit, mode Mode) bool {
	v, l := h.VectorScore, h.LexicalScore
	if v == 0 && l == 0 {
		switch mode {
		case ModeLexical:
			l = h.Score
		case ModeVector, "":
			v = h.Score
		}
	}
	switch mode {
	case ModeVector, "":
		return v >= MinVectorScore
	case ModeLexical:
		return l >= MinLexicalScore
	default:
		return v >= MinVectorScore || l >= MinLexicalScore
	}
}

// Depth is how many hits of each half a hybrid query fuses: enough below the k returned that a
// hit ranked well by one half and poorly by the other still meets its second vote.
func Depth(k int) int { return max(k, 100) }

// FuseRRF fuses two rankings (best first) by weighted reciprocal rank and returns the k best, each
// with Score set to its fused score over the best possible (first in both lists) and the two halves'
// scores kept from the lists that held it. Ties keep the vector list's order.
func FuseRRF(vector, lexical []Hit, f Fusion, k int) []Hit {
	f = f.WithDefaults()
	type acc struct {
		hit   Hit
		score float64
		first int // order of first appearance, for ties
	}
	by := make(map[string]*acc, len(vector)+len(lexical))
	order := 0
	add := func(list []Hit, w float64, lexicalList bool) {
		for i, h := range list {
			a := by[h.ChunkID]
			if a == nil {
				a = &acc{hit: h, first: order}
				order++
				by[h.ChunkID] = a
			}
			if lexicalList {
				a.hit.LexicalScore = h.LexicalScore
			} else {
				a.hit.VectorScore = h.VectorScore
			}
			a.score += w / float64(f.K+i+1)
		}
	}
	add(vector, f.VectorWeight, false)
	add(lexical, f.LexicalWeight, true)
	all := make([]*acc, 0, len(by))
	for _, a := range by {
		all = append(all, a)
	}
	slices.SortFunc(all, func(a, b *acc) int {
		if c := cmp.Compare(b.score, a.score); c != 0 {
			return c
		}
		return cmp.Compare(a.first, b.first)
	})
	best := (f.VectorWeight + f.LexicalWeight) / float64(f.K+1)
	out := make([]Hit, 0, min(k, len(all)))
	for _, a := range all[:min(k, len(all))] {
		a.hit.Score = a.score / best
		out = append(out, a.hit)
	}
	return out
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
	// Search returns up to q.K hits of t, best first, scoring at least q.MinScore, in q.Mode.
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

// VectorSource is implemented by indexes that keep each chunk's vector with its EmbedKey (the
// embedded index): Vectors returns the vectors of docID's chunks in t by EmbedKey (chunks stored
// without one are left out). A vector may come back normalised to unit length: its cosine with any
// query is the same. Retrieval reads them before embedding a document again.
type VectorSource interface {
	Vectors(ctx context.Context, t tenant.ID, docID string) (map[string][]float32, error)
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
