package domain

import (
	"fmt"
	"strings"

	"github.com/crispy-enigma/crispy/platform/ai"
)

// EstimateTokens is the fallback token count when a provider reports none: about four characters a
// token, plus a few for the message envelope.
func EstimateTokens(s string) int { return (len(s)+3)/4 + 4 }

// Prompt is the input of context assembly.
type Prompt struct {
	System        string
	Passages      []Passage
	RAGRequested  bool // rag was on; with no passages the model is told there are none
	ToolName      string
	ToolResult    string
	History       []Message
	Message       string
	ContextTokens int // the model's window
	MaxCompletion int // tokens kept free for the answer
	MaxMessages   int // the tenant's maxMessagesPerSession
}

// Assembled is the request for the model and its size.
type Assembled struct {
	Messages     []ai.Message
	Documents    []ai.Document
	PromptTokens int // estimated
	HistoryUsed  int // history messages that fit
}

// Assemble builds the messages: system prompt with numbered passages and the tool result, then as
// much history as fits the token budget and the message cap (newest kept, oldest dropped), then the
// user's message last.
func Assemble(p Prompt) Assembled {
	var sys strings.Builder
	sys.WriteString(p.System)
	var docs []ai.Document
	if len(p.Passages) > 0 {
		sys.WriteString("\n\nAnswer from these numbered sources and cite them as [n]:\n")
		for i, ps := range p.Passages {
			n := i + 1
			title := ps.Title
			if title == "" {
				title = ps.DocID
			}
			fmt.Fprintf(&sys, "[%d] %s: %s\n", n, title, ps.Text)
			docs = append(docs, ai.Document{N: n, Title: title, Text: ps.Text})
		}
	} else if p.RAGRequested {
		sys.WriteString("\n\nNo sources were found for this question in the knowledge base; say so if the answer depends on them.")
	}
	if p.ToolName != "" {
		fmt.Fprintf(&sys, "\n\nThe tool %s was run for this message and returned:\n%s\n", p.ToolName, p.ToolResult)
		docs = append(docs, ai.Document{Tool: true, Title: p.ToolName, Text: p.ToolResult})
	}
	system := ai.Message{Role: ai.RoleSystem, Content: sys.String()}
	user := ai.Message{Role: ai.RoleUser, Content: p.Message}
	used := EstimateTokens(system.Content) + EstimateTokens(user.Content)
	budget := p.ContextTokens - p.MaxCompletion
	maxMsgs := p.MaxMessages
	if maxMsgs <= 0 || maxMsgs > len(p.History) {
		maxMsgs = len(p.History)
	}
	start := len(p.History)
	for i := len(p.History) - 1; i >= 0 && len(p.History)-i <= maxMsgs; i-- {
		t := EstimateTokens(p.History[i].Content)
		if used+t > budget {
			break
		}
		used += t
		start = i
	}
	msgs := make([]ai.Message, 0, len(p.History)-start+2)
	msgs = append(msgs, system)
	for _, m := range p.History[start:] {
		msgs = append(msgs, ai.Message{Role: m.Role, Content: m.Content})
	}
	msgs = append(msgs, user)
	return Assembled{Messages: msgs, Documents: docs, PromptTokens: used, HistoryUsed: len(p.History) - start}
}
