// Command wordcount is an example tool plugin built outside the Crispy Enigma module, the way a vendor
// would: it imports only github.com/crispy-enigma/crispy/plugins/sdk. See plugins/README.md.
package main

import (
	"context"
	"encoding/json"
	"sort"
	"strings"
	"time"
	"unicode"

	"github.com/crispy-enigma/crispy/plugins/sdk"
)

type input struct {
	Text string `json:"text"`
	Top  int    `json:"top"`
}

type output struct {
	Words    int      `json:"words"`
	Runes    int      `json:"characters"`
	TopWords []string `json:"top_words"`
}

func count(ctx context.Context, in input, _ sdk.Request, _ sdk.Host) (output, error) {
	if in.Top == 0 {
		in.Top = 3
	}
	freq := map[string]int{}
	words := strings.FieldsFunc(strings.ToLower(in.Text), func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) })
	for i, w := range words {
		if i%10000 == 0 && ctx.Err() != nil {
			return output{}, ctx.Err() // honour cancellation on long inputs
		}
		freq[w]++
	}
	top := make([]string, 0, len(freq))
	for w := range freq {
		top = append(top, w)
	}
	sort.Slice(top, func(i, j int) bool {
		if freq[top[i]] != freq[top[j]] {
			return freq[top[i]] > freq[top[j]]
		}
		return top[i] < top[j]
	})
	if len(top) > in.Top {
		top = top[:in.Top]
	}
	return output{Words: len(words), Runes: len([]rune(in.Text)), TopWords: top}, nil
}

func main() {
	sdk.Serve(sdk.Func(sdk.Description{
		Name:        "word_count",
		Version:     "0.1.0",
		Description: "Counts the words and characters of a text and names its most frequent words.",
		InputSchema: json.RawMessage(`{"type": "object", "required": ["text"], "additionalProperties": false,
			"properties": {"text": {"type": "string", "minLength": 1, "maxLength": 100000},
			               "top": {"type": "integer", "minimum": 1, "maximum": 50, "default": 3}}}`),
		OutputSchema: json.RawMessage(`{"type": "object", "required": ["words", "characters", "top_words"],
			"properties": {"words": {"type": "integer"}, "characters": {"type": "integer"},
			               "top_words": {"type": "array", "items": {"type": "string"}}}}`),
		Timeout: 5 * time.Second,
	}, count))
}
