package main

import (
	"context"
	"errors"
	"testing"

	"github.com/crispy-enigma/crispy/plugins/sdk"
)

type host struct {
	caps sdk.Capabilities
	got  *sdk.Document
}

func (h host) Capabilities() sdk.Capabilities { return h.caps }
func (h host) Complete(context.Context, sdk.CompleteRequest) (sdk.Completion, error) {
	return sdk.Completion{}, sdk.ErrUnavailable
}
func (h host) Embed(context.Context, []string) (sdk.Embeddings, error) {
	return sdk.Embeddings{}, sdk.ErrUnavailable
}
func (h host) Ingest(_ context.Context, d sdk.Document) (sdk.IngestResult, error) {
	*h.got = d
	return sdk.IngestResult{DocID: d.DocID, Chunks: 3, EmbeddingModel: "builtin:hashed"}, nil
}

func TestIngestGoesThroughTheHost(t *testing.T) {
	t.Parallel()
	var got sdk.Document
	out, err := ingest(context.Background(), input{Content: "hello", DocID: "d1", Title: "T", ChunkSize: 200, Metadata: map[string]any{"a": 1}},
		sdk.Request{}, host{caps: sdk.Capabilities{Ingest: true}, got: &got})
	if err != nil || out.DocID != "d1" || out.ChunksIngested != 3 || out.EmbeddingModel != "builtin:hashed" {
		t.Fatalf("%+v %v", out, err)
	}
	if got.Text != "hello" || got.Title != "T" || got.ChunkSize != 200 {
		t.Fatalf("host got %+v", got)
	}
	_, err = ingest(context.Background(), input{Content: "x", DocID: "d"}, sdk.Request{}, host{})
	var te *sdk.Error
	if !errors.As(err, &te) || te.Code != "ingest_unavailable" {
		t.Fatalf("without an index: %v", err)
	}
}
