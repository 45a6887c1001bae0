// Command classifyintent is the built-in classify_intent tool plugin. Offline it scores each category
// by keyword cues plus the similarity between the text and the category's description (through the
// Host's embeddings when there are any, else a hashed bag-of-words), and turns the scores into a
// confidence with a softmax. With a real model, the model's pick is blended with that confidence.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"

	"github.com/crispy-enigma/crispy/plugins/internal/textkit"
	"github.com/crispy-enigma/crispy/plugins/sdk"
)

var defaultCategories = []string{"question", "request", "complaint", "feedback", "greeting", "other"}

const inputSchema = `{
  "type": "object",
  "required": ["text"],
  "additionalProperties": false,
  "properties": {
    "text": {"type": "string", "minLength": 1, "maxLength": 10000},
    "categories": {"type": "array", "minItems": 2, "maxItems": 50, "uniqueItems": true,
      "items": {"type": "string", "minLength": 1, "maxLength": 64},
      "default": ["question", "request", "complaint", "feedback", "greeting", "other"]}
  }
}`

const outputSchema = `{
  "type": "object",
  "required": ["intent", "confidence", "categories_considered"],
  "properties": {
    "intent": {"type": "string"},
    "confidence": {"type": "number", "minimum": 0, "maximum": 1},
    "categories_considered": {"type": "array", "items": {"type": "string"}}
  }
}`

type input struct {
	Text       string   `json:"text"`
	Categories []string `json:"categories"`
}

type output struct {
	Intent     string   `json:"intent"`
	Confidence float64  `json:"confidence"`
	Considered []string `json:"categories_considered"`
}

// cues are phrases that signal a default category; descriptions feed the similarity.
var cues = map[string][]string{
	"question":  {"?", "what", "how", "why", "when", "where", "who", "which", "is it", "are there", "do you", "does", "can i", "could i"},
	"request":   {"please", "can you", "could you", "would you", "i need", "i want", "i'd like", "i would like", "send me", "help me", "let me", "book", "schedule", "reset", "cancel my"},
	"complaint": {"not working", "broken", "terrible", "awful", "angry", "disappointed", "refund", "worst", "problem", "issue", "failed", "unacceptable", "complain", "still waiting", "never arrived", "overcharged", "doesn't work", "does not work"},
	"feedback":  {"suggest", "suggestion", "feedback", "love", "great", "like the", "improve", "would be nice", "recommend", "thank", "thanks", "awesome", "nice work", "well done"},
	"greeting":  {"hello", "hi", "hey", "good morning", "good afternoon", "good evening", "greetings", "howdy"},
}

var descriptions = map[string]string{
	"question":  "question asking what how why when where who which information",
	"request":   "request asking someone to do something please help send book schedule reset change",
	"complaint": "complaint problem broken not working refund angry disappointed bad service failure",
	"feedback":  "feedback opinion suggestion improve love great like recommend thanks",
	"greeting":  "greeting hello hi hey good morning welcome",
	"other":     "other statement misc",
}

func keywordScore(cat, lower string, words map[string]bool) float64 {
	var s float64
	list, ok := cues[cat]
	if !ok {
		// A custom category: its own name's words are its cues.
		for _, w := range textkit.ContentWords(cat) {
			if words[textkit.Stem(w.Lower)] {
				s += 1
			}
		}
		return s
	}
	for _, c := range list {
		switch {
		case c == "?":
			if strings.HasSuffix(strings.TrimSpace(lower), "?") {
				s += 1.5
			}
		case strings.Contains(c, " "):
			if strings.Contains(lower, c) {
				s += 1
			}
		case words[c]:
			s += 0.75
			if cat == "question" && strings.HasPrefix(lower, c+" ") {
				s += 0.5 // a question word that opens the sentence
			}
			if cat == "greeting" && strings.HasPrefix(lower, c) {
				s += 0.75
			}
		}
	}
	return s
}

func describeCategory(cat string) string {
	if d, ok := descriptions[cat]; ok {
		return d
	}
	return strings.ReplaceAll(strings.ReplaceAll(cat, "_", " "), "-", " ")
}

// scores returns a probability per category.
func scores(ctx context.Context, text string, cats []string, host sdk.Host) []float64 {
	lower := strings.ToLower(text)
	words := map[string]bool{}
	for _, w := range textkit.Words(lower) {
		words[w.Lower] = true
		words[textkit.Stem(w.Lower)] = true
	}
	sims := similarities(ctx, text, cats, host)
	raw := make([]float64, len(cats))
	for i, c := range cats {
		raw[i] = keywordScore(c, lower, words) + 2*sims[i]
		if c == "other" {
			raw[i] += 0.4 // wins only when nothing else speaks up
		}
	}
	// Softmax with a temperature that makes a clear cue confident and no cue uncertain.
	const temp = 0.6
	maxv := math.Inf(-1)
	for _, v := range raw {
		maxv = math.Max(maxv, v)
	}
	var sum float64
	p := make([]float64, len(raw))
	for i, v := range raw {
		p[i] = math.Exp((v - maxv) / temp)
		sum += p[i]
	}
	for i := range p {
		p[i] /= sum
	}
	return p
}

func similarities(ctx context.Context, text string, cats []string, host sdk.Host) []float64 {
	protos := make([]string, len(cats))
	for i, c := range cats {
		protos[i] = describeCategory(c)
	}
	out := make([]float64, len(cats))
	if host != nil && host.Capabilities().Embed {
		if e, err := host.Embed(ctx, append([]string{text}, protos...)); err == nil && len(e.Vectors) == len(cats)+1 {
			for i := range cats {
				out[i] = math.Max(0, textkit.Cosine(e.Vectors[0], e.Vectors[i+1]))
			}
			return out
		}
	}
	tv := textkit.Embed(text)
	for i, p := range protos {
		out[i] = math.Max(0, textkit.Cosine(tv, textkit.Embed(p)))
	}
	return out
}

func classify(ctx context.Context, in input, _ sdk.Request, host sdk.Host) (output, error) {
	cats := in.Categories
	if len(cats) == 0 {
		cats = defaultCategories
	}
	p := scores(ctx, in.Text, cats, host)
	best := 0
	for i := range p {
		if p[i] > p[best] {
			best = i
		}
	}
	intent, conf := cats[best], p[best]
	if host != nil && host.Capabilities().Complete {
		c, err := host.Complete(ctx, sdk.CompleteRequest{
			System:    "You classify the intent of a message. Answer with exactly one category name.",
			Prompt:    fmt.Sprintf("Categories: %s\n\nMessage: %s\n\nCategory:", strings.Join(cats, ", "), in.Text),
			MaxTokens: 10,
		})
		if err == nil {
			ans := strings.ToLower(strings.Trim(strings.TrimSpace(c.Text), ".\"'"))
			for i, cat := range cats {
				if ans == strings.ToLower(cat) {
					intent, conf = cat, 0.5+0.5*math.Max(p[i], 0.5)
					break
				}
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return output{}, err
	}
	return output{Intent: intent, Confidence: math.Round(conf*1000) / 1000, Considered: cats}, nil
}

func describe() sdk.Description {
	return sdk.Description{
		Name: "classify_intent", Version: "1.0.0",
		Description:  "Classifies a message into one of the given categories (default: question, request, complaint, feedback, greeting, other) with a confidence.",
		InputSchema:  json.RawMessage(inputSchema),
		OutputSchema: json.RawMessage(outputSchema),
		Permissions:  []string{sdk.PermModelComplete, sdk.PermModelEmbed},
		Timeout:      sdk.DefaultTimeout,
	}
}

func main() { sdk.Serve(sdk.Func(describe(), classify)) }
