package domain

import "errors"

// ErrNoModel is what a Completer returns when only the offline model is configured; tools then use
// their deterministic methods.
var ErrNoModel = errors.New("no model available for tools (offline)")

// Completion is a tool's completion request.
type Completion struct {
	System    string
	Prompt    string
	MaxTokens int
	UserID    string
	RequestID string
}

// CompletionResult is the model's answer.
type CompletionResult struct {
	Text  string
	Model string
}

// Document is what a tool ingests into the calling tenant's index.
type Document struct {
	DocID     string
	Text      string
	Title     string
	Source    string
	URL       string
	Metadata  map[string]any
	ChunkSize int
	UserID    string
	RequestID string
}

// IngestResult reports an ingestion.
type IngestResult struct {
	DocID          string
	Chunks         int
	EmbeddingModel string
}
