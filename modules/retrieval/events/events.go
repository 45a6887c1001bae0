// Package events holds the retrieval module's events, recorded in t-{tenant}.doc-{key} streams (key:
// see DocStreamKey). They are the source of truth of a tenant's documents: the search index is a
// projection rebuilt from them (crispy reindex).
package events

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
)

// Event types.
const (
	TypeDocumentIngested = "retrieval.DocumentIngested"
	TypeDocumentDeleted  = "retrieval.DocumentDeleted"
)

// DocCategory is the stream category of a document.
const DocCategory = "doc"

// DocStreamKey is the stream entity of a document: the first 32 hex digits of the SHA-256 of its id
// (a docId may hold '/', spaces or 256 multi-byte characters, which stream names cannot).
func DocStreamKey(docID string) string {
	h := sha256.Sum256([]byte(docID))
	return hex.EncodeToString(h[:16])
}

// Chunk locates one chunk in the document's text. Start and End are UTF-8 byte offsets:
// Text[Start:End] is the chunk's text.
type Chunk struct {
	ID    string `json:"id"` // {docId}#{n}
	Start int    `json:"start"`
	End   int    `json:"end"`
}

// DocumentIngested records a document as ingested (a re-ingest replaces the previous version). It
// carries the full text and the chunk offsets so the index can be rebuilt without the original file.
type DocumentIngested struct {
	DocID          string         `json:"docId"`
	Title          string         `json:"title,omitempty"`
	Source         string         `json:"source,omitempty"`
	URL            string         `json:"url,omitempty"`
	Metadata       map[string]any `json:"metadata,omitempty"`
	ContentHash    string         `json:"contentHash"` // "sha256:<hex>" of Text
	Text           string         `json:"text"`
	MaxChunkSize   int            `json:"maxChunkSize"`
	Overlap        int            `json:"overlap"`
	Chunks         []Chunk        `json:"chunks"`
	ChunkIDs       []string       `json:"chunkIds"`
	EmbeddingModel string         `json:"embeddingModel"`
	// Key is the id of the data key this event is sealed under in the log (issue 12 §4), and its
	// chunks' text in the index: one per ingest (see NewDocumentKey). Empty: recorded before sealing,
	// stored as plain text. Keep it the last field: the sealing policy reads it from the JSON's end
	// (it falls back to decoding the document otherwise, ~10 ms for a large one).
	Key string `json:"key,omitempty"`
}

// NewDocumentKey names the data key of one ingest of docID: "document/<DocStreamKey>/<random>".
// One key per ingest, not per document: a destroyed key id is never given a key again (the key
// store keeps its tombstone), and a document may be ingested again after its deletion.
func NewDocumentKey(docID string) string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24)
	return "document/" + DocStreamKey(docID) + "/" + hex.EncodeToString(b[:])
}

// DocumentDeleted records that a document was removed from the tenant's index and its content
// erased. It is not sealed: the audit shows what was erased and when.
type DocumentDeleted struct {
	DocID string `json:"docId"`
	// Keys are the data keys of the document's ingests since its last deletion, destroyed with it:
	// recorded so that a destruction interrupted by a crash is finished from the log.
	Keys []string `json:"keys,omitempty"`
}

// TypeDocumentIndexed is recorded by the shared index's writer (Elasticsearch, once per
// deployment) once the index shows the document event at Position, in t-{tenant}.docindexed-{key}.
// Every replica drops its search cache and answers its waiting ingests on it, not on the document
// event itself: the index may take that one later (or be down).
const TypeDocumentIndexed = "retrieval.DocumentIndexed"

// IndexedCategory is the stream category of DocumentIndexed.
const IndexedCategory = "docindexed"

// DocumentIndexed says that the shared index shows the document event at Position (revision
// Revision of the document's stream). Recorded at least once.
type DocumentIndexed struct {
	DocID    string `json:"docId"`
	Revision uint64 `json:"revision"`
	Position uint64 `json:"position"`
}

// TypeSearchStatsRecorded is a replica's search cache numbers of one tenant for one minute.
const TypeSearchStatsRecorded = "retrieval.SearchStatsRecorded"

// StatsCategory is the stream category of the search statistics: t-{tenant}.searchstats-{yyyymmdd}.
const StatsCategory = "searchstats"

// SearchStatsRecorded adds one replica's search cache checks of one minute to the tenant's search
// statistics (GET /metrics/search-cache). Replicas each record their own; the read model sums them.
type SearchStatsRecorded struct {
	Minute    int64   `json:"minute"` // Unix minutes
	Hits      int64   `json:"hits"`
	Misses    int64   `json:"misses"`
	LatencyMs float64 `json:"latencyMs"` // sum over the checks
}

// TypeDocumentFailed records that an ingest of a document failed after it was accepted (the
// embeddings provider or the index refused it, or an upload's text could not be extracted), in
// t-{tenant}.docfailed-{key}: beside the document's stream, not in it, so that the document's
// revisions (by which the index applies it) stay its ingests and deletions. GET /documents shows
// the document as failed with Reason until a later ingest or deletion of it.
const TypeDocumentFailed = "retrieval.DocumentFailed"

// FailedCategory is the stream category of DocumentFailed.
const FailedCategory = "docfailed"

// DocumentFailed is one failed ingest of DocID. It is not sealed, so it holds no content (no title
// or text: deleting the document must leave none of it readable): only what identifies the attempt
// and why it failed (the problem the client was answered, never the provider's own words).
type DocumentFailed struct {
	DocID       string `json:"docId"`
	ContentHash string `json:"contentHash,omitempty"`
	// Stage is where it failed: extract (an upload's text), embed (the embeddings provider) or
	// index (the search index, e.g. another embeddings model's dimension).
	Stage  string `json:"stage"`
	Reason string `json:"reason"`
}

// Register adds the module's events to a codec (bus.Consumers.Codec().Add).
func Register(add func(name string, sample any)) {
	add(TypeDocumentIngested, DocumentIngested{})
	add(TypeDocumentDeleted, DocumentDeleted{})
	add(TypeSearchStatsRecorded, SearchStatsRecorded{})
	add(TypeDocumentIndexed, DocumentIndexed{})
	add(TypeDocumentFailed, DocumentFailed{})
}
