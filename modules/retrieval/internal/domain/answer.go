package domain

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"unicode"

	"github.com/crispy-enigma/crispy/platform/ai/embeddings"
)

// NormalizeQuery is the cache's view of a query: case, spacing and trailing punctuation do not
// make a different question.
func NormalizeQuery(q string) string {
	q = strings.ToLower(strings.Join(strings.Fields(q), " "))
	return strings.TrimRightFunc(q, func(r rune) bool { return unicode.IsPunct(r) || unicode.IsSpace(r) })
}

// selfHarm matches queries about hurting oneself. It is deliberately broad: a false positive costs
// one refusal that points to help; a false negative could cost more.
var selfHarm = regexp.MustCompile(`(?i)\b(kill(ing)?\s+my\s*self|killing\s+me|suicid(e|al)|end(ing)?\s+my\s+(own\s+)?life|take\s+my\s+own\s+life|want\s+to\s+die|hurt(ing)?\s+my\s*self|self[-\s]?harm|cut(ting)?\s+my\s*self|overdose\s+on|how\s+many\s+\w+\s+(pills|tablets)\s+(to|would)\s+(die|kill))\b`)

// IsSelfHarm reports whether the query is about self-harm.
func IsSelfHarm(q string) bool { return selfHarm.MatchString(q) }

// SafetyAnswer is the refusal given to a self-harm query instead of search results.
const SafetyAnswer = "I can't help with that, but you don't have to go through this alone. If you are in danger right now, " +
	"call your local emergency number. You can reach a crisis line any time: in the US call or text 988 (Suicide & Crisis " +
	"Lifeline), in the UK and Ireland call Samaritans on 116 123, or find a helpline in your country at " +
	"https://findahelpline.com. Talking to someone you trust can help too."

// SafetyFollowUps are offered with the refusal.
var SafetyFollowUps = []string{"Where can I find a crisis helpline in my country?", "How can I support a friend who is struggling?"}

// Source is a numbered passage an answer may cite.
type Source struct {
	N     int // 1-based citation number
	Title string
	Text  string
	Score float64
}

// Prompt builds the model's messages: instructions, then the numbered sources, then the question.
func Prompt(query string, sources []Source) (system, user string) {
	system = "You answer questions using only the numbered sources provided. Cite every claim with the source number in " +
		"square brackets, like [1] or [2][3]. If the sources do not contain the answer, say so plainly. After the answer, " +
		"write a line 'Follow-up questions:' followed by up to 5 short questions the user might ask next, one per line, each starting with '- '."
	var b strings.Builder
	b.WriteString("Sources:\n")
	for _, s := range sources {
		title := s.Title
		if title == "" {
			title = "untitled"
		}
		fmt.Fprintf(&b, "[%d] %s\n%s\n\n", s.N, title, s.Text)
	}
	b.WriteString("Question: ")
	b.WriteString(query)
	return system, b.String()
}

// SplitFollowUps separates a model's answer from the follow-up questions it was asked to append.
func SplitFollowUps(text string) (answer string, followUps []string) {
	i := strings.Index(strings.ToLower(text), "follow-up questions:")
	if i < 0 {
		return strings.TrimSpace(text), nil
	}
	answer = strings.TrimSpace(text[:i])
	for _, line := range strings.Split(text[i+len("follow-up questions:"):], "\n") {
		line = strings.TrimSpace(strings.TrimLeft(strings.TrimSpace(line), "-*•0123456789.) "))
		if line != "" && len(followUps) < 5 {
			followUps = append(followUps, line)
		}
	}
	return answer, followUps
}

var sentenceEnd = regexp.MustCompile(`[^.!?。！？\n]+[.!?。！？]*`)

// ExtractiveAnswer is the offline answer: the sentences of the top sources that share the most terms
// with the query, each cited, introduced as what it is.
func ExtractiveAnswer(query string, sources []Source) string {
	if len(sources) == 0 {
		return "I found nothing in this tenant's documents that matches the question."
	}
	qterms := map[string]bool{}
	for _, t := range embeddings.Terms(query) {
		qterms[t] = true
	}
	type sent struct {
		text  string
		n     int
		score float64
		order int
	}
	var cands []sent
	for si, s := range sources {
		if si >= 3 {
			break
		}
		for _, m := range sentenceEnd.FindAllString(s.Text, -1) {
			m = strings.TrimSpace(m)
			if len([]rune(m)) < 20 {
				continue
			}
			shared := 0
			seen := map[string]bool{}
			for _, t := range embeddings.Terms(m) {
				if qterms[t] && !seen[t] {
					shared++
					seen[t] = true
				}
			}
			if shared == 0 {
				continue
			}
			cands = append(cands, sent{text: m, n: s.N, score: float64(shared) + s.Score, order: len(cands)})
		}
	}
	if len(cands) == 0 {
		// No sentence shares a word: quote the start of the best source.
		t := []rune(strings.TrimSpace(sources[0].Text))
		if len(t) > 300 {
			t = append(t[:300], '…')
		}
		return fmt.Sprintf("(Offline extractive answer: no model is configured.) The closest passage says: %s [%d]", string(t), sources[0].N)
	}
	sort.SliceStable(cands, func(i, j int) bool { return cands[i].score > cands[j].score })
	cands = cands[:min(3, len(cands))]
	sort.SliceStable(cands, func(i, j int) bool { return cands[i].order < cands[j].order })
	var b strings.Builder
	b.WriteString("(Offline extractive answer: no model is configured.) ")
	for i, c := range cands {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s [%d]", c.text, c.n)
	}
	return b.String()
}

// OfflineFollowUps suggests up to 3 questions from the sources' titles and salient terms.
func OfflineFollowUps(query string, sources []Source) []string {
	q := map[string]bool{}
	for _, t := range embeddings.Terms(query) {
		q[t] = true
	}
	var out []string
	seen := map[string]bool{}
	for _, s := range sources {
		if len(out) >= 3 {
			break
		}
		if s.Title != "" && !seen[s.Title] {
			seen[s.Title] = true
			out = append(out, fmt.Sprintf("What else does %q say?", s.Title))
			continue
		}
		for _, w := range strings.Fields(s.Text) {
			w = strings.Trim(w, ".,;:!?()[]\"'")
			t := embeddings.Terms(w)
			if len([]rune(w)) >= 6 && len(t) == 1 && !q[t[0]] && !seen[t[0]] {
				seen[t[0]] = true
				out = append(out, fmt.Sprintf("How does %s relate to %s?", strings.ToLower(w), strings.TrimRight(query, "?.! ")))
				break
			}
		}
	}
	return out
}

// Confidence is the mean of the top three scores, clamped to [0, 1].
func Confidence(scores []float64) float64 {
	if len(scores) == 0 {
		return 0
	}
	n := min(3, len(scores))
	var s float64
	for _, x := range scores[:n] {
		s += x
	}
	c := s / float64(n)
	return max(0, min(1, c))
}
