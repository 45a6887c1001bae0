// Command extractentities is the built-in extract_entities tool plugin. Emails, URLs, dates, money and
// phone numbers come from patterns; people, organizations and locations from capitalised spans with
// simple cues (titles, company suffixes, prepositions, acronyms), or from the tenant's model when there
// is one. Offsets are code-point (rune) offsets: the entity text is exactly the input's runes
// [start_offset, end_offset).
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/crispy-enigma/crispy/plugins/internal/textkit"
	"github.com/crispy-enigma/crispy/plugins/sdk"
)

var allTypes = []string{"email", "url", "date", "money", "phone", "person", "organization", "location"}

const inputSchema = `{
  "type": "object",
  "required": ["text"],
  "additionalProperties": false,
  "properties": {
    "text": {"type": "string", "minLength": 1, "maxLength": 500000},
    "entity_types": {"type": "array", "minItems": 1, "uniqueItems": true,
      "items": {"type": "string", "enum": ["email", "url", "date", "money", "phone", "person", "organization", "location"]},
      "description": "Types to extract (default: all)"}
  }
}`

const outputSchema = `{
  "type": "object",
  "required": ["entities", "count"],
  "properties": {
    "entities": {"type": "array", "items": {"type": "object", "required": ["text", "type", "start_offset", "end_offset"],
      "properties": {"text": {"type": "string"}, "type": {"type": "string"},
        "start_offset": {"type": "integer", "minimum": 0}, "end_offset": {"type": "integer", "minimum": 0}}}},
    "count": {"type": "integer", "minimum": 0}
  }
}`

type input struct {
	Text        string   `json:"text"`
	EntityTypes []string `json:"entity_types"`
}

// Entity is one finding; offsets are in runes.
type Entity struct {
	Text  string `json:"text"`
	Type  string `json:"type"`
	Start int    `json:"start_offset"`
	End   int    `json:"end_offset"`
}

type output struct {
	Entities []Entity `json:"entities"`
	Count    int      `json:"count"`
}

// patterns hold the compiled expressions; built once in main and passed down (no globals).
type patterns struct {
	byType map[string][]*regexp.Regexp
}

const month = `(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)`

func newPatterns() *patterns {
	m := func(exprs ...string) []*regexp.Regexp {
		out := make([]*regexp.Regexp, len(exprs))
		for i, e := range exprs {
			out[i] = regexp.MustCompile(e)
		}
		return out
	}
	return &patterns{byType: map[string][]*regexp.Regexp{
		"email": m(`[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}`),
		"url":   m(`(?:https?://|www\.)[^\s<>"'\x60]+`),
		"date": m(`\b\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2})?(?:Z|[+-]\d{2}:?\d{2})?)?\b`,
			`\b\d{1,2}/\d{1,2}/\d{2,4}\b`,
			`\b`+month+`\.? \d{1,2}(?:st|nd|rd|th)?(?:,? \d{4})?\b`,
			`\b\d{1,2}(?:st|nd|rd|th)? (?:of )?`+month+`\.?(?:,? \d{4})?\b`),
		"money": m(`[$€£¥]\s?\d[\d,]*(?:\.\d+)?(?:\s?(?:million|billion|thousand|bn|[kKmM]\b))?`,
			`\b\d[\d,]*(?:\.\d+)?\s?(?:USD|EUR|GBP|JPY|CHF|dollars|euros|pounds)\b`),
		"phone": m(`(?:\+\d{1,3}[\s.\-]?)?(?:\(\d{1,4}\)[\s.\-]?)?\d{2,4}[\s.\-]\d{2,4}(?:[\s.\-]\d{2,4}){0,2}`),
	}}
}

// priority decides overlaps: the earlier in this list wins over a later type covering the same text.
var priority = map[string]int{"email": 0, "url": 1, "date": 2, "money": 3, "phone": 4, "organization": 5, "person": 6, "location": 7}

type found struct {
	start, end int // bytes
	typ        string
}

func (p *patterns) extract(text string) []found {
	var out []found
	for _, typ := range []string{"email", "url", "date", "money", "phone"} {
		for _, re := range p.byType[typ] {
			for _, loc := range re.FindAllStringIndex(text, -1) {
				s, e := loc[0], loc[1]
				if typ == "url" {
					e = s + len(strings.TrimRight(text[s:e], ".,;:!?)]}"))
				}
				if typ == "phone" && !phoneLike(text[s:e]) {
					continue
				}
				if typ == "money" {
					e = s + len(strings.TrimRight(text[s:e], " ,"))
				}
				out = append(out, found{s, e, typ})
			}
		}
	}
	return out
}

func phoneLike(s string) bool {
	digits := 0
	for _, r := range s {
		if unicode.IsDigit(r) {
			digits++
		}
	}
	return digits >= 7 && digits <= 15
}

var (
	titles      = set("Mr Mrs Ms Miss Dr Prof Sir Madam Mx President Senator Judge Captain CEO")
	orgSuffixes = set("Inc Corp Corporation Ltd LLC GmbH AG SA Company Co Bank University Institute Group Foundation Council Association Agency Ministry Department Labs Technologies Systems Partners Holdings Airlines Society Committee Commission")
	locCues     = set("in at from near to across into via")
	connectors  = set("of de van von der da del la & and")
	notNames    = set("I The A An This That These Those It He She We They You My Our Your His Her Their Its If When While After Before Today Tomorrow Yesterday Monday Tuesday Wednesday Thursday Friday Saturday Sunday January February March April May June July August September October November December Please Thanks Hello Hi Dear Yes No Also However But And Or So Then There Here What Who Why How Where Which")
	knownPlaces = set("London Paris Berlin Madrid Rome Tokyo Beijing Delhi Sydney Toronto Chicago Boston Seattle Amsterdam Vienna Zurich Geneva Dublin Lisbon Oslo Stockholm Helsinki Copenhagen Warsaw Prague Brussels Singapore Seoul Mumbai Cairo Lagos Nairobi Mexico Brazil Canada France Germany Spain Italy Japan China India Australia Europe Africa Asia America USA UK England Scotland Ireland California Texas York")
)

func set(words string) map[string]bool {
	m := map[string]bool{}
	for _, w := range strings.Fields(words) {
		m[w] = true
	}
	return m
}

// capitalised finds runs of capitalised words and types them.
func capitalised(text string) []found {
	words := textkit.Words(text)
	sentenceStart := map[int]bool{}
	for _, s := range textkit.Sentences(text) {
		sentenceStart[s.Start] = true
	}
	isCap := func(w textkit.Word) bool {
		r, _ := utf8.DecodeRuneInString(w.Span.Text(text))
		return unicode.IsUpper(r)
	}
	var out []found
	for i := 0; i < len(words); {
		w := words[i]
		if !isCap(w) || notNames[w.Span.Text(text)] {
			i++
			continue
		}
		j := i + 1
		for j < len(words) {
			gap := text[words[j-1].End:words[j].Start]
			if strings.TrimSpace(gap) != "" && strings.TrimSpace(gap) != "&" {
				break // punctuation ends the span
			}
			if isCap(words[j]) && !notNames[words[j].Span.Text(text)] {
				j++
				continue
			}
			if connectors[words[j].Lower] && j+1 < len(words) && isCap(words[j+1]) && strings.TrimSpace(text[words[j].End:words[j+1].Start]) == "" {
				j += 2
				continue
			}
			break
		}
		span := found{start: words[i].Start, end: words[j-1].End}
		first := words[i].Span.Text(text)
		n := j - i
		prev := ""
		if i > 0 {
			prev = words[i-1].Span.Text(text)
		}
		last := strings.TrimSuffix(words[j-1].Span.Text(text), ".")
		acronym := n == 1 && utf8.RuneCountInString(first) >= 2 && strings.ToUpper(first) == first && !isNumeric(first)
		switch {
		case titles[first] && n == 1:
			span.typ = "" // a title on its own names nobody
		case titles[first]:
			span.start = words[i+1].Start
			span.typ = "person"
		case titles[prev]:
			span.typ = "person"
		case orgSuffixes[last] || acronym:
			span.typ = "organization"
		case knownPlaces[first] || locCues[strings.ToLower(prev)] && n <= 3:
			span.typ = "location"
		case n == 1 && sentenceStart[words[i].Start]:
			span.typ = "" // an ordinary word opening a sentence
		case n >= 2 && n <= 3:
			span.typ = "person"
		case n == 1:
			span.typ = "person"
		default:
			span.typ = "organization"
		}
		if span.typ != "" {
			out = append(out, span)
		}
		i = j
	}
	return out
}

func isNumeric(s string) bool {
	for _, r := range s {
		if !unicode.IsDigit(r) {
			return false
		}
	}
	return true
}

// resolve drops overlaps (earliest start, then type priority, then longest) and converts to runes.
func resolve(text string, fs []found, want map[string]bool) []Entity {
	sort.SliceStable(fs, func(i, j int) bool {
		if fs[i].start != fs[j].start {
			return fs[i].start < fs[j].start
		}
		if priority[fs[i].typ] != priority[fs[j].typ] {
			return priority[fs[i].typ] < priority[fs[j].typ]
		}
		return fs[i].end > fs[j].end
	})
	var kept []found
	for _, f := range fs {
		if f.end <= f.start {
			continue
		}
		clash := false
		for k := range kept {
			if f.start < kept[k].end && kept[k].start < f.end {
				// A pattern entity inside a capitalised span replaces the span.
				if priority[f.typ] < priority[kept[k].typ] {
					kept[k] = f
				}
				clash = true
				break
			}
		}
		if !clash {
			kept = append(kept, f)
		}
	}
	out := []Entity{}
	for _, f := range kept {
		if want != nil && !want[f.typ] {
			continue
		}
		out = append(out, Entity{Text: text[f.start:f.end], Type: f.typ, Start: textkit.Runes(text, f.start), End: textkit.Runes(text, f.end)})
	}
	return out
}

type tool struct{ p *patterns }

func (t tool) run(ctx context.Context, in input, _ sdk.Request, host sdk.Host) (output, error) {
	var want map[string]bool
	if len(in.EntityTypes) > 0 {
		want = map[string]bool{}
		for _, ty := range in.EntityTypes {
			want[ty] = true
		}
	}
	fs := t.p.extract(in.Text)
	named := capitalised(in.Text)
	if host != nil && host.Capabilities().Complete {
		if m, err := fromModel(ctx, in.Text, host); err == nil && len(m) > 0 {
			named = m
		}
	}
	if err := ctx.Err(); err != nil {
		return output{}, err
	}
	ents := resolve(in.Text, append(fs, named...), want)
	return output{Entities: ents, Count: len(ents)}, nil
}

// fromModel asks the model for people, organizations and locations and finds each in the text.
func fromModel(ctx context.Context, text string, host sdk.Host) ([]found, error) {
	c, err := host.Complete(ctx, sdk.CompleteRequest{
		System: "You extract named entities. Answer with a JSON array only.",
		Prompt: fmt.Sprintf("List the people, organizations and locations in the text as a JSON array of objects "+
			"{\"text\": exact text as written, \"type\": \"person\"|\"organization\"|\"location\"}.\n\nText:\n%s", text),
		MaxTokens: 800,
	})
	if err != nil {
		return nil, err
	}
	raw := c.Text
	if i, j := strings.Index(raw, "["), strings.LastIndex(raw, "]"); i >= 0 && j > i {
		raw = raw[i : j+1]
	}
	var items []struct{ Text, Type string }
	if err := json.Unmarshal([]byte(raw), &items); err != nil {
		return nil, err
	}
	var out []found
	for _, it := range items {
		if it.Text == "" || (it.Type != "person" && it.Type != "organization" && it.Type != "location") {
			continue
		}
		for from := 0; ; {
			i := strings.Index(text[from:], it.Text)
			if i < 0 {
				break
			}
			out = append(out, found{from + i, from + i + len(it.Text), it.Type})
			from += i + len(it.Text)
		}
	}
	return out, nil
}

func describe() sdk.Description {
	return sdk.Description{
		Name: "extract_entities", Version: "1.0.0",
		Description:  "Finds emails, URLs, dates, money amounts, phone numbers, people, organizations and locations, with code-point offsets into the text.",
		InputSchema:  json.RawMessage(inputSchema),
		OutputSchema: json.RawMessage(outputSchema),
		Permissions:  []string{sdk.PermModelComplete},
		Timeout:      sdk.DefaultTimeout,
	}
}

func main() {
	t := tool{p: newPatterns()}
	sdk.Serve(sdk.Func(describe(), t.run))
}
