// Command tagchunkdocs is the built-in tag_chunk_docs tool plugin: it splits content into chunks on
// paragraph, sentence and word boundaries (at most chunk_size characters each) and tags every chunk
// with its salient terms (term frequency in the chunk × inverse chunk frequency), or with the tenant
// model's topic tags when there is a model. Offsets are code-point offsets into content.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/crispy-enigma/crispy/plugins/internal/textkit"
	"github.com/crispy-enigma/crispy/plugins/sdk"
)

const inputSchema = `{
  "type": "object",
  "required": ["content"],
  "additionalProperties": false,
  "properties": {
    "content": {"type": "string", "minLength": 1, "maxLength": 500000},
    "chunk_size": {"type": "integer", "minimum": 100, "maximum": 10000, "default": 1000, "description": "Largest chunk, in characters"},
    "metadata": {"type": "object", "description": "Copied onto every chunk"}
  }
}`

const outputSchema = `{
  "type": "object",
  "required": ["chunks", "chunk_count"],
  "properties": {
    "chunks": {"type": "array", "items": {"type": "object", "required": ["index", "text", "tags", "start_offset", "end_offset"],
      "properties": {"index": {"type": "integer", "minimum": 0}, "text": {"type": "string"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "start_offset": {"type": "integer", "minimum": 0}, "end_offset": {"type": "integer", "minimum": 0},
        "metadata": {"type": "object"}}}},
    "chunk_count": {"type": "integer", "minimum": 0}
  }
}`

type input struct {
	Content   string         `json:"content"`
	ChunkSize int            `json:"chunk_size"`
	Metadata  map[string]any `json:"metadata"`
}

type chunk struct {
	Index    int            `json:"index"`
	Text     string         `json:"text"`
	Tags     []string       `json:"tags"`
	Start    int            `json:"start_offset"`
	End      int            `json:"end_offset"`
	Metadata map[string]any `json:"metadata,omitempty"`
}

type output struct {
	Chunks     []chunk `json:"chunks"`
	ChunkCount int     `json:"chunk_count"`
}

const tagsPerChunk = 5

// maxModelChunks bounds the model calls of one request; later chunks get salient-term tags.
const maxModelChunks = 20

func tagChunk(ctx context.Context, in input, _ sdk.Request, host sdk.Host) (output, error) {
	if in.ChunkSize == 0 {
		in.ChunkSize = 1000
	}
	spans := textkit.Chunk(in.Content, in.ChunkSize)
	df := map[string]int{}
	for _, s := range spans {
		for t := range textkit.TermFreq(s.Text(in.Content)) {
			df[t]++
		}
	}
	useModel := host != nil && host.Capabilities().Complete
	out := output{Chunks: make([]chunk, 0, len(spans))}
	for i, s := range spans {
		if err := ctx.Err(); err != nil {
			return output{}, err
		}
		text := s.Text(in.Content)
		var tags []string
		if useModel && i < maxModelChunks {
			t, err := modelTags(ctx, host, text)
			if err != nil {
				useModel = false
			}
			tags = t
		}
		if len(tags) == 0 {
			tags = textkit.Salient(text, tagsPerChunk, df, len(spans))
		}
		if tags == nil {
			tags = []string{}
		}
		out.Chunks = append(out.Chunks, chunk{Index: i, Text: text, Tags: tags, Start: textkit.Runes(in.Content, s.Start),
			End: textkit.Runes(in.Content, s.End), Metadata: in.Metadata})
	}
	out.ChunkCount = len(out.Chunks)
	return out, nil
}

func modelTags(ctx context.Context, host sdk.Host, text string) ([]string, error) {
	c, err := host.Complete(ctx, sdk.CompleteRequest{
		System:    "You tag text with short topic tags. Answer with the tags only, comma separated, lower case.",
		Prompt:    fmt.Sprintf("Give at most %d topic tags for:\n\n%s", tagsPerChunk, text),
		MaxTokens: 40,
	})
	if err != nil {
		return nil, err
	}
	var tags []string
	for _, t := range strings.Split(c.Text, ",") {
		t = strings.ToLower(strings.Trim(strings.TrimSpace(t), ".\"'#"))
		if t != "" && len(tags) < tagsPerChunk {
			tags = append(tags, t)
		}
	}
	return tags, nil
}

func describe() sdk.Description {
	return sdk.Description{
		Name: "tag_chunk_docs", Version: "1.0.0",
		Description:  "Splits a document into chunks on paragraph, sentence and word boundaries and tags each chunk with its salient terms.",
		InputSchema:  json.RawMessage(inputSchema),
		OutputSchema: json.RawMessage(outputSchema),
		Permissions:  []string{sdk.PermModelComplete},
		Timeout:      sdk.DefaultTimeout,
	}
}

func main() { sdk.Serve(sdk.Func(describe(), tagChunk)) }
