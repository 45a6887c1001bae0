package main

import (
	"context"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/crispy-enigma/crispy/plugins/sdk"
)

func TestChunksAreTaggedAndSliceTheContent(t *testing.T) {
	t.Parallel()
	content := strings.Repeat("Solar panels convert sunlight into electricity. Panel efficiency depends on temperature. ", 6) +
		"\n\n" + strings.Repeat("Wind turbines spin in strong wind and feed the grid. Turbine blades are long. ", 6) +
		"\n\nCafé naïve résumé — Ünïcode text at the end."
	out, err := tagChunk(context.Background(), input{Content: content, ChunkSize: 300, Metadata: map[string]any{"team": "energy"}}, sdk.Request{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if out.ChunkCount != len(out.Chunks) || out.ChunkCount < 3 {
		t.Fatalf("chunks: %d", out.ChunkCount)
	}
	runes := []rune(content)
	for i, c := range out.Chunks {
		if c.Index != i || string(runes[c.Start:c.End]) != c.Text || utf8.RuneCountInString(c.Text) > 300 {
			t.Fatalf("chunk %d: %+v", i, c)
		}
		if len(c.Tags) == 0 || c.Metadata["team"] != "energy" {
			t.Fatalf("chunk %d tags %v metadata %v", i, c.Tags, c.Metadata)
		}
	}
	if !contains(out.Chunks[0].Tags, "panel") && !contains(out.Chunks[0].Tags, "solar") {
		t.Errorf("first chunk tags %v", out.Chunks[0].Tags)
	}
	last := out.Chunks[len(out.Chunks)-2]
	if !contains(last.Tags, "turbine") && !contains(last.Tags, "wind") {
		t.Errorf("wind chunk tags %v", last.Tags)
	}
}

func contains(xs []string, want string) bool {
	for _, x := range xs {
		if strings.HasPrefix(x, want) {
			return true
		}
	}
	return false
}
