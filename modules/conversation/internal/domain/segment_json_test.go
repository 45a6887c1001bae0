package domain

import (
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/crispy-enigma/crispy/modules/conversation/events"
)

// The hand-written segment decoder reads what encoding/json reads, escapes and all, and refuses
// (so that encoding/json decides) what it does not expect.
func TestDecodeSegmentMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(3, 4))
	texts := []string{"", "plain", "quote \" and backslash \\", "line\nbreak\ttab", "ünïcödé ✓ 🙂", "\u2028\u2029", "<script>&</script>", strings.Repeat("long ", 500)}
	for i := 0; i < 300; i++ {
		seg := events.SessionSnapshotted{SessionID: "0b0f6a52-6f7e-4c55-9a8e-3f3d2f1c9b10", From: r.Uint64N(1000), Through: r.Uint64N(1 << 40), Keep: r.IntN(100),
			Title: texts[r.IntN(len(texts))], UserID: texts[r.IntN(len(texts))], Turns: r.IntN(1000), Failed: r.IntN(10),
			CreatedAt: r.Int64N(1 << 62), LastActivity: r.Int64N(1 << 62)}
		for j := r.IntN(3); j > 0; j-- {
			seg.Open = append(seg.Open, events.SnapshotOpenTurn{TurnID: texts[r.IntN(len(texts))], Since: r.Int64N(1 << 62)})
		}
		for j := r.IntN(20); j > 0; j-- {
			seg.Messages = append(seg.Messages, events.SnapshotMessage{Role: []string{"user", "assistant", "tool"}[r.IntN(3)], Content: texts[r.IntN(len(texts))],
				Timestamp: r.Int64N(1 << 62), TurnID: texts[r.IntN(len(texts))], Model: []string{"", "fake:m", "openai:gpt-4o-mini"}[r.IntN(3)]})
		}
		data, err := json.Marshal(seg)
		if err != nil {
			t.Fatal(err)
		}
		var got events.SessionSnapshotted
		var msgs []Message
		if err := decodeSegment(data, &got, &msgs); err != nil {
			t.Fatalf("refused %s: %v", data, err)
		}
		var want events.SessionSnapshotted
		if err := json.Unmarshal(data, &want); err != nil {
			t.Fatal(err)
		}
		var wantMsgs []Message
		for _, m := range want.Messages {
			wantMsgs = append(wantMsgs, Message{Role: m.Role, Content: m.Content, Timestamp: fromNanos(m.Timestamp), TurnID: m.TurnID, Model: m.Model})
		}
		want.Messages = nil
		if !reflect.DeepEqual(got, want) || !reflect.DeepEqual(msgs, wantMsgs) {
			t.Fatalf("decoded differently from %s:\n got %+v %+v\nwant %+v %+v", data, got, msgs, want, wantMsgs)
		}
	}
	for _, bad := range []string{``, `[]`, `{"messages":{}}`, `{"keep":"1"}`, `{"messages":[{"content":1}]}`, `{"title":"x"} trailing`, `{"title":"x",}`, `{"through":-1}`} {
		var seg events.SessionSnapshotted
		var msgs []Message
		if decodeSegment([]byte(bad), &seg, &msgs) == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}
