package observability

import (
	"context"
	"fmt"
	"time"

	convevents "github.com/crispy-enigma/crispy/modules/conversation/events"
	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// NewSessionAuditor returns a SessionAuditor that folds the conversation module's events straight
// from the store (t-{tenant}.session-{id}), for wiring without the conversation module's own
// SessionAsOf. A deleted or expired session's content is unreadable by design (the stream is
// truncated before its deletion event): such a session reads as deleted, with no messages, at any
// asOf from which its stream is visible.
func NewSessionAuditor(s eventstore.Store) SessionAuditor { return storeAuditor{s} }

type storeAuditor struct{ store eventstore.Store }

func (a storeAuditor) SessionAsOf(ctx context.Context, t tenant.ID, id string, asOf time.Time) (AuditedSession, error) {
	out := AuditedSession{SessionID: id, AsOf: asOf, Messages: []AuditedMessage{}}
	st, err := tenant.NewStream(t, convevents.SessionCategory, id)
	if err != nil {
		return out, apperr.NotFound("session_not_found", "no session with that id")
	}
	evs, err := a.store.ReadStream(ctx, st, 0, 0)
	if err != nil {
		return out, fmt.Errorf("read %s: %w", st, err)
	}
	if len(evs) > 0 && evs[0].Revision > 0 {
		// Truncated: what came before the deletion is gone. Say that it was deleted, and when.
		for i := range evs {
			if evs[i].Type == convevents.TypeSessionDeleted || evs[i].Type == convevents.TypeSessionExpired {
				at := evs[i].Time
				out.Exists, out.Deleted, out.DeletedAt, out.Events = true, true, &at, 1
				return out, nil
			}
		}
	}
	for i := range evs {
		e := &evs[i]
		if e.Time.After(asOf) {
			break
		}
		out.Events++
		out.Exists = true
		switch e.Type {
		case convevents.TypeSessionStarted:
			var v convevents.SessionStarted
			if err := e.Decode(&v); err != nil {
				return out, err
			}
			out.Title = v.Title
		case convevents.TypeUserMessageAdded:
			var v convevents.UserMessageAdded
			if err := e.Decode(&v); err != nil {
				return out, err
			}
			out.Messages = append(out.Messages, AuditedMessage{Role: "user", Content: v.Content, Timestamp: e.Time, Actor: e.Actor, User: e.User})
		case convevents.TypeAssistantMessageCompleted:
			var v convevents.AssistantMessageCompleted
			if err := e.Decode(&v); err != nil {
				return out, err
			}
			out.Messages = append(out.Messages, AuditedMessage{Role: "assistant", Content: v.Content, Timestamp: e.Time, Status: "completed", Actor: e.Actor, User: e.User})
		case convevents.TypeAssistantMessageFailed:
			var v convevents.AssistantMessageFailed
			if err := e.Decode(&v); err != nil {
				return out, err
			}
			status := "failed"
			if v.Cancelled || v.Code == convevents.CodeCancelled {
				status = "cancelled"
			}
			out.Messages = append(out.Messages, AuditedMessage{Role: "assistant", Timestamp: e.Time, Status: status, Actor: e.Actor, User: e.User})
		case convevents.TypeSessionDeleted, convevents.TypeSessionExpired:
			at := e.Time
			out.Deleted, out.DeletedAt, out.Messages, out.Title = true, &at, []AuditedMessage{}, ""
		}
	}
	return out, nil
}
