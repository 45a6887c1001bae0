package observability

import (
	"context"
	"fmt"
	"time"

	convevents "github.com/crispy-enigma/crispy/modules/conversation/events"
	"github.com/crispy-enigma/crispy/modules/observability/internal/domain"
	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// NewSessionAuditor returns a SessionAuditor that folds the conversation module's events straight
// from the store (t-{tenant}.session-{id}), for wiring without the conversation module's own
// SessionAsOf. Give it the store the modules read (behind platform/sealing): a session's content is
// sealed under its data key, destroyed when the session is deleted or expires, so the events stay
// and read as erased. The view at a time before a deletion therefore shows the session as it was
// then (messages, roles, times, who) with its content marked erased once it is; at or after the
// deletion it shows the deletion (when, who, why) and what it erased (counts and times). Sessions
// deleted before sealing existed had their events before the deletion truncated: they read as
// deleted, with no messages, at any asOf from which their stream is visible.
func NewSessionAuditor(s eventstore.Store) SessionAuditor { return storeAuditor{s} }

type storeAuditor struct{ store eventstore.Store }

func (a storeAuditor) SessionAsOf(ctx context.Context, t tenant.ID, id string, asOf time.Time) (AuditedSession, error) {
	out := AuditedSession{SessionID: id, AsOf: asOf, Messages: []AuditedMessage{}, Erasures: []domain.Erasure{}}
	st, err := tenant.NewStream(t, convevents.SessionCategory, id)
	if err != nil {
		return out, apperr.NotFound("session_not_found", "no session with that id")
	}
	evs, err := a.store.ReadStream(ctx, st, 0, 0)
	if err != nil {
		return out, fmt.Errorf("read %s: %w", st, err)
	}
	if len(evs) > 0 && evs[0].Revision > 0 {
		// Truncated (a deletion from before sealing): what came before it is gone. Say that it was
		// deleted, and when.
		for i := range evs {
			if evs[i].Type == convevents.TypeSessionDeleted || evs[i].Type == convevents.TypeSessionExpired {
				at := evs[i].Time
				out.Exists, out.Deleted, out.DeletedAt, out.Events = true, true, &at, 1
				out.DeletedBy, out.DeletedByUser, out.Reason = evs[i].Actor, evs[i].User, reasonOf(evs[i].Type)
				return out, nil
			}
		}
	}
	failed := 0 // failed turns of the current life
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
			// A new life: what the last one showed ended with its deletion.
			out.Title, out.Messages, failed = v.Title, []AuditedMessage{}, 0
			out.Deleted, out.DeletedAt, out.DeletedBy, out.DeletedByUser, out.Reason = false, nil, "", "", ""
		case convevents.TypeUserMessageAdded:
			var v convevents.UserMessageAdded
			if err := e.Decode(&v); err != nil {
				return out, err
			}
			out.Messages = append(out.Messages, AuditedMessage{Role: "user", Content: v.Content, Timestamp: e.Time, Actor: e.Actor, User: e.User, Erased: e.Erased})
		case convevents.TypeAssistantMessageCompleted:
			var v convevents.AssistantMessageCompleted
			if err := e.Decode(&v); err != nil {
				return out, err
			}
			out.Messages = append(out.Messages, AuditedMessage{Role: "assistant", Content: v.Content, Timestamp: e.Time, Status: "completed", Actor: e.Actor, User: e.User, Erased: e.Erased})
		case convevents.TypeAssistantMessageFailed:
			var v convevents.AssistantMessageFailed
			if err := e.Decode(&v); err != nil {
				return out, err
			}
			if v.Code == convevents.CodeSessionGone {
				continue // the outcome of a turn cut by the deletion: recorded after it, not content
			}
			status := "failed"
			if v.Cancelled || v.Code == convevents.CodeCancelled {
				status = "cancelled"
			}
			failed++
			out.Messages = append(out.Messages, AuditedMessage{Role: "assistant", Timestamp: e.Time, Status: status, Actor: e.Actor, User: e.User, Erased: e.Erased})
		case convevents.TypeSessionDeleted, convevents.TypeSessionExpired:
			at := e.Time
			out.Erasures = append(out.Erasures, erasureOf(e, out.Messages, failed))
			out.Deleted, out.DeletedAt, out.Messages, out.Title = true, &at, []AuditedMessage{}, ""
			out.DeletedBy, out.DeletedByUser, out.Reason = e.Actor, e.User, reasonOf(e.Type)
			failed = 0
		}
	}
	for _, m := range out.Messages {
		if m.Erased {
			out.ContentErased = true
		}
	}
	return out, nil
}

func reasonOf(typ string) string {
	if typ == convevents.TypeSessionExpired {
		return "expired"
	}
	return "deleted"
}

// erasureOf is what the deletion or expiry e erased of the life whose messages were msgs.
func erasureOf(e *eventstore.Event, msgs []AuditedMessage, failed int) domain.Erasure {
	er := domain.Erasure{Reason: reasonOf(e.Type), At: e.Time, By: e.Actor, ByUser: e.User, FailedTurns: failed}
	for i := range msgs {
		m := &msgs[i]
		if m.Role == "user" {
			er.UserMessages++
		} else if m.Status == "completed" {
			er.AssistantMessages++
		} else {
			continue // a failed turn's outcome: no content
		}
		er.Messages++
		ts := m.Timestamp
		if er.FirstMessageAt == nil {
			er.FirstMessageAt = &ts
		}
		er.LastMessageAt = &ts
	}
	return er
}
