// Package convtest builds conversation test data shared by the module's tests and benchmarks.
package convtest

import (
	"context"
	"fmt"
	"strings"

	"github.com/crispy-enigma/crispy/modules/conversation/events"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// SeedSession appends a session of pairs user/assistant turns (2*pairs messages of ordinary chat
// length) to st, in batches of 50 turns, and returns its stream.
func SeedSession(ctx context.Context, st eventstore.Store, t tenant.ID, sessionID string, pairs int) (tenant.Stream, error) {
	stream := tenant.MustStream(t, events.SessionCategory, sessionID)
	start, err := eventstore.NewEventData(events.TypeSessionStarted, events.SessionStarted{SessionID: sessionID, Tenant: t.String(), Title: "long"})
	if err != nil {
		return stream, err
	}
	if _, err := st.Append(ctx, stream, eventstore.NoStream, start); err != nil {
		return stream, err
	}
	text := strings.Repeat("a fairly ordinary sentence of chat. ", 6)
	for i := 0; i < pairs; i += 50 {
		var batch []eventstore.EventData
		for j := i; j < min(i+50, pairs); j++ {
			u, err := eventstore.NewEventData(events.TypeUserMessageAdded, events.UserMessageAdded{SessionID: sessionID, TurnID: fmt.Sprint(j), Content: text})
			if err != nil {
				return stream, err
			}
			a, err := eventstore.NewEventData(events.TypeAssistantMessageCompleted, events.AssistantMessageCompleted{SessionID: sessionID, TurnID: fmt.Sprint(j),
				Content: text + text, Model: "fake:m", Usage: events.Usage{PromptTokens: 100, CompletionTokens: 50, TotalTokens: 150}})
			if err != nil {
				return stream, err
			}
			batch = append(batch, u, a)
		}
		if _, err := st.Append(ctx, stream, eventstore.Any, batch...); err != nil {
			return stream, fmt.Errorf("seed %s: %w", stream, err)
		}
	}
	return stream, nil
}
