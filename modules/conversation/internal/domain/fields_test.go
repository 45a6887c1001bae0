package domain

import (
	"encoding/json"
	"testing"

	"github.com/crispy-enigma/crispy/modules/conversation/events"
)

func TestDecodeMessageMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	cases := []any{
		events.UserMessageAdded{SessionID: "s", TurnID: "t1", Content: "plain", UserID: "u", RAG: true},
		events.UserMessageAdded{TurnID: "t2", Content: "quotes \" and \\ and \n newlines and é and <html> \u2028"},
		events.AssistantMessageCompleted{TurnID: "t3", Content: "answer [1]", Model: "openai:gpt-4o-mini",
			Usage: events.Usage{PromptTokens: 3, TotalTokens: 5}, LatencyMs: 1.5,
			Citations: []events.Citation{{Index: 1, DocID: "d\"}{", Score: 0.5}}, Fallbacks: []events.FallbackAttempt{{Model: "a:b", Reason: "x"}},
			Tool: &events.ToolCall{Name: "t"}, Offline: true},
	}
	for i, c := range cases {
		b, _ := json.Marshal(c)
		var want, got messageFields
		_ = json.Unmarshal(b, &want)
		if err := decodeMessage(b, &got); err != nil || got != want {
			t.Errorf("case %d: got %+v %v, want %+v\n%s", i, got, err, want, b)
		}
	}
	for _, bad := range []string{``, `[]`, `{"content":1}`, `{"content":"x"`, `{"a":{"b":[1,2}`, `{"content" "x"}`} {
		var got messageFields
		if decodeMessage([]byte(bad), &got) == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}
