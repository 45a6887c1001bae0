package app

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/crispy-enigma/crispy/modules/conversation/events"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/embedded"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// BenchmarkLoad1000 rebuilds a 1,000-message session from the embedded store: cold (fold of every
// event, what a restart or a cache miss costs) and cached (the cached fold plus a read of the events
// after its revision, what every turn and GET history costs), and cached after one new event.
func BenchmarkLoad1000(b *testing.B) {
	st, err := embedded.Open(b.TempDir(), embedded.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	t := tenant.MustParse("acme")
	s := uuid.NewString()
	stream := tenant.MustStream(t, events.SessionCategory, s)
	start, _ := eventstore.NewEventData(events.TypeSessionStarted, events.SessionStarted{SessionID: s, Tenant: "acme", Title: "long"})
	if _, err := st.Append(ctx, stream, eventstore.NoStream, start); err != nil {
		b.Fatal(err)
	}
	text := strings.Repeat("a fairly ordinary sentence of chat. ", 6)
	for i := 0; i < 500; i += 50 {
		var batch []eventstore.EventData
		for j := i; j < i+50; j++ {
			u, _ := eventstore.NewEventData(events.TypeUserMessageAdded, events.UserMessageAdded{SessionID: s, TurnID: fmt.Sprint(j), Content: text})
			a, _ := eventstore.NewEventData(events.TypeAssistantMessageCompleted, events.AssistantMessageCompleted{SessionID: s, TurnID: fmt.Sprint(j),
				Content: text + text, Model: "fake:m", Usage: events.Usage{PromptTokens: 100, CompletionTokens: 50, TotalTokens: 150}})
			batch = append(batch, u, a)
		}
		if _, err := st.Append(ctx, stream, eventstore.Any, batch...); err != nil {
			b.Fatal(err)
		}
	}
	svc := &Service{Store: st, Cache: NewCache(10)}
	b.Run("cold", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			svc.Cache.drop(cacheKey(t, s))
			sess, err := svc.load(ctx, t, s)
			if err != nil || len(sess.Messages) != 1000 {
				b.Fatalf("%d %v", len(sess.Messages), err)
			}
		}
	})
	b.Run("cached", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			sess, err := svc.load(ctx, t, s)
			if err != nil || len(sess.Messages) < 1000 {
				b.Fatalf("%d %v", len(sess.Messages), err)
			}
		}
	})
	b.Run("cached-plus-one-event", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			ev, _ := eventstore.NewEventData(events.TypeAssistantMessageFailed, events.AssistantMessageFailed{SessionID: s, TurnID: "x", Code: "cancelled"})
			if _, err := st.Append(ctx, stream, eventstore.Any, ev); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			if _, err := svc.load(ctx, t, s); err != nil {
				b.Fatal(err)
			}
		}
	})
}
