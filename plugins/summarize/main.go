// Command summarize is the built-in summarize tool plugin. With a real model it asks the tenant's model
// through the Host; offline it builds an extractive summary: sentences scored by the frequency of their
// content words (and a small bonus for leading sentences), the best kept in their original order within
// max_length characters.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/crispy-enigma/crispy/plugins/internal/textkit"
	"github.com/crispy-enigma/crispy/plugins/sdk"
)

const inputSchema = `{
  "type": "object",
  "required": ["text"],
  "additionalProperties": false,
  "properties": {
    "text": {"type": "string", "minLength": 1, "maxLength": 500000, "description": "The text to summarize"},
    "max_length": {"type": "integer", "minimum": 50, "maximum": 5000, "default": 500, "description": "Longest summary, in characters"},
    "format": {"type": "string", "enum": ["paragraph", "bullet_points"], "default": "paragraph"}
  }
}`

const outputSchema = `{
  "type": "object",
  "required": ["summary", "format"],
  "properties": {
    "summary": {"type": "string"},
    "format": {"type": "string", "enum": ["paragraph", "bullet_points"]}
  }
}`

type input struct {
	Text      string `json:"text"`
	MaxLength int    `json:"max_length"`
	Format    string `json:"format"`
}

type output struct {
	Summary string `json:"summary"`
	Format  string `json:"format"`
}

func describe() sdk.Description {
	return sdk.Description{
		Name: "summarize", Version: "1.0.0",
		Description:  "Summarizes text within max_length characters, as a paragraph or bullet points.",
		InputSchema:  json.RawMessage(inputSchema),
		OutputSchema: json.RawMessage(outputSchema),
		Permissions:  []string{sdk.PermModelComplete},
		Timeout:      sdk.DefaultTimeout,
	}
}

func summarize(ctx context.Context, in input, _ sdk.Request, host sdk.Host) (output, error) {
	if in.MaxLength == 0 {
		in.MaxLength = 500
	}
	if in.Format == "" {
		in.Format = "paragraph"
	}
	if host != nil && host.Capabilities().Complete {
		s, err := withModel(ctx, in, host)
		if err == nil && strings.TrimSpace(s) != "" {
			return output{Summary: s, Format: in.Format}, nil
		}
		if err != nil && !errors.Is(err, sdk.ErrUnavailable) {
			if ctx.Err() != nil {
				return output{}, ctx.Err()
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return output{}, err
	}
	return output{Summary: extractive(in.Text, in.MaxLength, in.Format), Format: in.Format}, nil
}

func withModel(ctx context.Context, in input, host sdk.Host) (string, error) {
	style := "one paragraph"
	if in.Format == "bullet_points" {
		style = "bullet points, one per line, each starting with \"- \""
	}
	c, err := host.Complete(ctx, sdk.CompleteRequest{
		System:    "You summarize text faithfully. Answer with the summary only.",
		Prompt:    fmt.Sprintf("Summarize the following text as %s in at most %d characters.\n\n%s", style, in.MaxLength, in.Text),
		MaxTokens: in.MaxLength/3 + 16,
	})
	if err != nil {
		return "", err
	}
	return fit(strings.TrimSpace(c.Text), in.MaxLength, in.Format), nil
}

// fit keeps a summary within max runes: whole bullets when it can, else a truncated text.
func fit(s string, max int, format string) string {
	if utf8.RuneCountInString(s) <= max {
		return s
	}
	if format == "bullet_points" {
		var kept []string
		n := 0
		for _, l := range strings.Split(s, "\n") {
			l = strings.TrimSpace(l)
			if l == "" {
				continue
			}
			add := utf8.RuneCountInString(l)
			if len(kept) > 0 {
				add++
			}
			if n+add > max {
				break
			}
			kept = append(kept, l)
			n += add
		}
		if len(kept) > 0 {
			return strings.Join(kept, "\n")
		}
	}
	return textkit.TruncateRunes(s, max)
}

// extractive picks the best-scoring sentences, in text order, within max runes.
func extractive(text string, max int, format string) string {
	spans := textkit.Sentences(text)
	if len(spans) == 0 {
		return ""
	}
	tf := textkit.TermFreq(text)
	type scored struct {
		i     int
		score float64
	}
	sc := make([]scored, len(spans))
	for i, s := range spans {
		words := textkit.ContentWords(s.Text(text))
		var sum float64
		seen := map[string]bool{}
		for _, w := range words {
			st := textkit.Stem(w.Lower)
			if !seen[st] {
				seen[st] = true
				sum += math.Log1p(float64(tf[st]))
			}
		}
		score := sum / math.Sqrt(float64(len(words))+1)
		if i == 0 {
			score *= 1.25 // the opening sentence usually states the topic
		}
		sc[i] = scored{i, score}
	}
	sort.SliceStable(sc, func(a, b int) bool { return sc[a].score > sc[b].score })
	sep, prefix := " ", ""
	if format == "bullet_points" {
		sep, prefix = "\n", "- "
	}
	chosen := map[int]bool{}
	used := 0
	for _, s := range sc {
		sentence := normalize(spans[s.i].Text(text))
		cost := utf8.RuneCountInString(prefix + sentence)
		if len(chosen) > 0 {
			cost += utf8.RuneCountInString(sep)
		}
		if used+cost > max {
			continue
		}
		chosen[s.i] = true
		used += cost
	}
	if len(chosen) == 0 {
		// Even the best sentence is too long: cut it.
		best := normalize(spans[sc[0].i].Text(text))
		return prefix + textkit.TruncateRunes(best, max-utf8.RuneCountInString(prefix))
	}
	var parts []string
	for i := range spans {
		if chosen[i] {
			parts = append(parts, prefix+normalize(spans[i].Text(text)))
		}
	}
	return strings.Join(parts, sep)
}

func normalize(s string) string { return strings.Join(strings.Fields(s), " ") }

func main() { sdk.Serve(sdk.Func(describe(), summarize)) }
