// Command ingestdocs is the built-in ingest_docs tool plugin: it ingests content into the calling
// tenant's index through the Host (the host decides the tenant from the call's capability token).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/crispy-enigma/crispy/plugins/sdk"
)

const inputSchema = `{
  "type": "object",
  "required": ["content", "doc_id"],
  "additionalProperties": false,
  "properties": {
    "content": {"type": "string", "minLength": 1, "maxLength": 500000},
    "doc_id": {"type": "string", "minLength": 1, "maxLength": 256},
    "source": {"type": "string", "maxLength": 2048},
    "title": {"type": "string", "maxLength": 1024},
    "chunk_size": {"type": "integer", "minimum": 100, "maximum": 10000, "default": 1000},
    "metadata": {"type": "object"}
  }
}`

const outputSchema = `{
  "type": "object",
  "required": ["doc_id", "chunks_ingested", "embedding_model"],
  "properties": {
    "doc_id": {"type": "string"},
    "chunks_ingested": {"type": "integer", "minimum": 0},
    "embedding_model": {"type": "string"}
  }
}`

type input struct {
	Content   string         `json:"content"`
	DocID     string         `json:"doc_id"`
	Source    string         `json:"source"`
	Title     string         `json:"title"`
	ChunkSize int            `json:"chunk_size"`
	Metadata  map[string]any `json:"metadata"`
}

type output struct {
	DocID          string `json:"doc_id"`
	ChunksIngested int    `json:"chunks_ingested"`
	EmbeddingModel string `json:"embedding_model"`
}

func ingest(ctx context.Context, in input, _ sdk.Request, host sdk.Host) (output, error) {
	if host == nil || !host.Capabilities().Ingest {
		return output{}, sdk.Errorf("ingest_unavailable", "this host has no index to ingest into")
	}
	r, err := host.Ingest(ctx, sdk.Document{DocID: in.DocID, Text: in.Content, Title: in.Title, Source: in.Source,
		Metadata: in.Metadata, ChunkSize: in.ChunkSize})
	switch {
	case err == nil:
	case errors.Is(err, sdk.ErrUnavailable):
		return output{}, sdk.Errorf("ingest_unavailable", "the index is not available")
	case errors.Is(err, sdk.ErrPermissionDenied):
		return output{}, sdk.Errorf("permission_denied", "the tenant does not let tools write to its index")
	default:
		return output{}, err
	}
	docID := r.DocID
	if docID == "" {
		docID = in.DocID
	}
	return output{DocID: docID, ChunksIngested: r.Chunks, EmbeddingModel: r.EmbeddingModel}, nil
}

func describe() sdk.Description {
	return sdk.Description{
		Name: "ingest_docs", Version: "1.0.0",
		Description:  "Ingests a document into the calling tenant's search index (chunked and embedded by the platform).",
		InputSchema:  json.RawMessage(inputSchema),
		OutputSchema: json.RawMessage(outputSchema),
		Permissions:  []string{sdk.PermIndexWrite},
		Timeout:      60 * time.Second, // SPEC §5
	}
}

func main() { sdk.Serve(sdk.Func(describe(), ingest)) }
