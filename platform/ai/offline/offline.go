// Package offline is the built-in model "builtin:offline": deterministic, no network. It says that it
// is the offline model; it answers extractively from the passages and tool results in its context (the
// sentences that share most words with the question, with [n] citations), else with a short honest
// reply. It streams its answer word by word.
package offline

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"unicode"

	"github.com/crispy-enigma/crispy/platform/ai"
)

// Name is the provider name of the offline model ("builtin").
const Name = "builtin"

// Provider is the offline model. The zero value is ready.
type Provider struct {
	// MaxSentences bounds an extractive answer (default 3).
	MaxSentences int
}

// New returns the offline provider.
func New() *Provider { return &Provider{MaxSentences: 3} }

// Prefix opens every answer, so nobody mistakes it for a language model.
const Prefix = "[offline model] "

// Answer composes the offline answer for req.
func (p *Provider) Answer(req ai.Request) string {
	question := lastUser(req.Messages)
	var b strings.Builder
	b.WriteString(Prefix)
	var tools []ai.Document
	var passages []ai.Document
	for _, d := range req.Documents {
		if d.Tool {
			tools = append(tools, d)
		} else {
			passages = append(passages, d)
		}
	}
	for _, t := range tools {
		fmt.Fprintf(&b, "The tool %s returned: %s ", t.Title, clip(strings.TrimSpace(t.Text), 600))
	}
	picked := p.extract(question, passages)
	switch {
	case len(picked) > 0:
		b.WriteString("From the retrieved passages: ")
		for i, s := range picked {
			if i > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(s)
		}
	case len(passages) > 0:
		b.WriteString("None of the retrieved passages shares words with your question, so I cannot answer it from them.")
	case len(tools) == 0:
		b.WriteString("No language model is configured on this server, and there are no retrieved passages or tool " +
			"results for this message, so I cannot answer it. An operator can configure a model with CRISPY_OPENAI_BASE_URL " +
			"or CRISPY_CF_ACCOUNT_ID and CRISPY_CF_API_TOKEN.")
	}
	return strings.TrimSpace(b.String())
}

// Stream implements ai.Provider: the answer, a word (with its leading space) at a time.
func (p *Provider) Stream(ctx context.Context, req ai.Request, emit ai.Emit) (ai.Result, error) {
	text := p.Answer(req)
	start := 0
	for i := 1; i <= len(text); i++ {
		if i == len(text) || text[i] == ' ' {
			if err := ctx.Err(); err != nil {
				return ai.Result{Content: text[:start]}, err
			}
			if err := emit(text[start:i]); err != nil {
				return ai.Result{Content: text[:start]}, err
			}
			start = i
		}
	}
	return ai.Result{Content: text, FinishReason: "stop"}, nil
}

// Complete implements ai.Provider.
func (p *Provider) Complete(ctx context.Context, req ai.Request) (ai.Result, error) {
	if err := ctx.Err(); err != nil {
		return ai.Result{}, err
	}
	return ai.Result{Content: p.Answer(req), FinishReason: "stop"}, nil
}

type scored struct {
	text  string
	score float64
	order int
}

// extract picks the sentences of passages that share most distinct words with the question, keeps
// them in their original order, and appends the passage's [n] to each.
func (p *Provider) extract(question string, passages []ai.Document) []string {
	max := p.MaxSentences
	if max <= 0 {
		max = 3
	}
	q := terms(question)
	if len(q) == 0 {
		return nil
	}
	var cands []scored
	order := 0
	for _, d := range passages {
		for _, s := range sentences(d.Text) {
			seen := map[string]bool{}
			hits := 0
			for _, w := range words(s) {
				if q[w] && !seen[w] {
					seen[w] = true
					hits++
				}
			}
			if hits > 0 {
				cite := ""
				if d.N > 0 {
					cite = fmt.Sprintf(" [%d]", d.N)
				}
				cands = append(cands, scored{text: s + cite, score: float64(hits) / float64(len(q)), order: order})
			}
			order++
		}
	}
	sort.SliceStable(cands, func(i, j int) bool { return cands[i].score > cands[j].score })
	if len(cands) > max {
		cands = cands[:max]
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].order < cands[j].order })
	out := make([]string, len(cands))
	for i, c := range cands {
		out[i] = c.text
	}
	return out
}

func lastUser(ms []ai.Message) string {
	for i := len(ms) - 1; i >= 0; i-- {
		if ms[i].Role == ai.RoleUser {
			return ms[i].Content
		}
	}
	return ""
}

var stop = map[string]bool{"the": true, "and": true, "for": true, "are": true, "was": true, "what": true, "which": true,
	"who": true, "how": true, "why": true, "when": true, "where": true, "does": true, "did": true, "with": true, "that": true,
	"this": true, "from": true, "you": true, "your": true, "about": true, "can": true, "tell": true, "is": true, "of": true}

func words(s string) []string {
	return strings.FieldsFunc(strings.ToLower(s), func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) })
}

func terms(s string) map[string]bool {
	out := map[string]bool{}
	for _, w := range words(s) {
		if len(w) > 2 && !stop[w] {
			out[w] = true
		}
	}
	return out
}

// sentences splits on . ! ? followed by space, and on blank lines.
func sentences(text string) []string {
	var out []string
	start := 0
	rs := []rune(text)
	for i, r := range rs {
		end := (r == '.' || r == '!' || r == '?') && (i+1 == len(rs) || unicode.IsSpace(rs[i+1]))
		if r == '\n' && i+1 < len(rs) && rs[i+1] == '\n' {
			end = true
		}
		if end {
			if s := strings.TrimSpace(string(rs[start : i+1])); s != "" {
				out = append(out, strings.Join(strings.Fields(s), " "))
			}
			start = i + 1
		}
	}
	if s := strings.TrimSpace(string(rs[start:])); s != "" {
		out = append(out, strings.Join(strings.Fields(s), " "))
	}
	return out
}

func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "…"
}
