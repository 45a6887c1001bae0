package app

import (
	"strings"

	"github.com/crispy-enigma/crispy/modules/conversation/events"
	"github.com/crispy-enigma/crispy/modules/conversation/internal/domain"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/sealing"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// SealPolicy seals a session's events and its snapshot segments under the session's data key
// (conversation.SealPolicy documents it).
func SealPolicy() sealing.Policy {
	return func(st tenant.Stream, e eventstore.EventData) (string, bool) {
		switch st.Category() {
		case events.SessionCategory:
			switch e.Type {
			case events.TypeSessionDeleted, events.TypeSessionExpired:
				return "", false
			}
			return domain.KeyID(st.Entity(), 0), true
		case events.SnapshotCategory:
			id, ok := strings.CutPrefix(st.Entity(), events.SnapshotEntityPrefix)
			if !ok || e.Type != events.TypeSessionSnapshotted {
				return "", false
			}
			return domain.KeyID(id, 0), true
		}
		return "", false
	}
}

// PlainFields are the fields of the sealed events that stay readable (conversation.PlainFields).
func PlainFields() map[string][]string {
	return map[string][]string{
		events.TypeSessionStarted:   {"sessionId", "tenant", "userId"},
		events.TypeUserMessageAdded: {"sessionId", "turnId", "userId", "requestedModel", "chosenModel", "toolName", "rag", "source", "instance", "run"},
		events.TypeAssistantMessageCompleted: {"sessionId", "turnId", "model", "usage", "latencyMs", "ttftMs", "tool", "userId", "source",
			"offline"},
		events.TypeAssistantMessageFailed: {"sessionId", "turnId", "code", "cancelled", "partialContentLength", "model", "usage", "latencyMs",
			"ttftMs", "tool", "userId", "source"},
		events.TypeSessionSnapshotted: {"sessionId", "from", "through", "keep", "life"},
	}
}
