package observability_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	convevents "github.com/crispy-enigma/crispy/modules/conversation/events"
	"github.com/crispy-enigma/crispy/modules/observability"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/keystore/keystoretest"
	"github.com/crispy-enigma/crispy/platform/request"
	"github.com/crispy-enigma/crispy/platform/sealing"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// sessionSealing seals a session's events but its deletion records, as the conversation module's
// policy does (modules may not import each other, tests included).
func sessionSealing(st tenant.Stream, e eventstore.EventData) (string, bool) {
	if st.Category() != convevents.SessionCategory || e.Type == convevents.TypeSessionDeleted || e.Type == convevents.TypeSessionExpired {
		return "", false
	}
	return "session/" + st.Entity(), true
}

// GET /audit/sessions/{id}?asOf=: before the deletion the session as it was (roles, times, who),
// its content marked erased since the deletion destroyed its key; at and after the deletion, the
// deletion (when, who, why) and what it erased (counts and times), never the content. Another
// tenant sees nothing.
func TestSessionAsOfBeforeAndAfterErasure(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	keys := keystoretest.NewMemory()
	store := sealing.NewStore(eventstoretest.NewMemory(), sealing.New(keys), sessionSealing)
	acme := tenant.MustParse("acme")
	const id = "0b0f6a52-6f7e-4c55-9a8e-3f3d2f1c9b10"
	st := tenant.MustStream(acme, convevents.SessionCategory, id)
	const secret = "the secret question"
	userCtx := request.With(ctx, request.Info{ID: "r1", Actor: "key:0123456789ab", User: "alice"})
	ev := func(typ string, v any) eventstore.EventData {
		d, err := eventstore.NewEventData(typ, v)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	res, err := store.Append(userCtx, st, eventstore.NoStream,
		ev(convevents.TypeSessionStarted, convevents.SessionStarted{SessionID: id, Title: secret}),
		ev(convevents.TypeUserMessageAdded, convevents.UserMessageAdded{SessionID: id, TurnID: "t1", Content: secret}),
		ev(convevents.TypeAssistantMessageCompleted, convevents.AssistantMessageCompleted{SessionID: id, TurnID: "t1", Content: "the secret answer"}))
	if err != nil {
		t.Fatal(err)
	}
	during := res.Events[2].Time
	auditor := observability.NewSessionAuditor(store)
	before, err := auditor.SessionAsOf(ctx, acme, id, during)
	if err != nil || len(before.Messages) != 2 || before.Messages[0].Content != secret || before.ContentErased || before.Title != secret {
		t.Fatalf("before the deletion, key alive: %+v %v", before, err)
	}
	time.Sleep(2 * time.Millisecond) // the deletion is recorded strictly after asOf
	delCtx := request.With(ctx, request.Info{ID: "r2", Actor: "key:ba9876543210", User: "bob"})
	del, err := store.Append(delCtx, st, eventstore.Exact(2), ev(convevents.TypeSessionDeleted, convevents.SessionDeleted{SessionID: id, RequestID: "r2"}))
	if err != nil {
		t.Fatal(err)
	}
	if err := keys.Destroy(ctx, acme, "session/"+id); err != nil {
		t.Fatal(err)
	}

	before, err = auditor.SessionAsOf(ctx, acme, id, during)
	if err != nil {
		t.Fatal(err)
	}
	if !before.Exists || before.Deleted || !before.ContentErased || before.Title != "" || len(before.Messages) != 2 {
		t.Fatalf("asOf before the deletion: %+v", before)
	}
	for i, role := range []string{"user", "assistant"} {
		m := before.Messages[i]
		if m.Role != role || !m.Erased || m.Content != "" || m.Actor != "key:0123456789ab" || m.User != "alice" || m.Timestamp.IsZero() {
			t.Fatalf("message %d before the deletion: %+v", i, m)
		}
	}

	after, err := auditor.SessionAsOf(ctx, acme, id, del.Events[0].Time.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if !after.Deleted || after.DeletedAt == nil || !after.DeletedAt.Equal(del.Events[0].Time) || after.DeletedBy != "key:ba9876543210" || after.DeletedByUser != "bob" ||
		after.Reason != "deleted" || len(after.Messages) != 0 || len(after.Erasures) != 1 {
		t.Fatalf("asOf after the deletion: %+v", after)
	}
	er := after.Erasures[0]
	if er.Messages != 2 || er.UserMessages != 1 || er.AssistantMessages != 1 || er.By != "key:ba9876543210" || er.FirstMessageAt == nil || !er.LastMessageAt.Equal(during) {
		t.Fatalf("erasure: %+v", er)
	}
	b, _ := json.Marshal([]any{before, after})
	if strings.Contains(string(b), "secret") {
		t.Fatalf("the audit view shows erased content: %s", b)
	}

	// Another tenant's view of the same id is empty (the module answers it 404, as a session that never was).
	if v, err := auditor.SessionAsOf(ctx, tenant.MustParse("globex"), id, time.Now()); err != nil || v.Exists || len(v.Messages) != 0 || len(v.Erasures) != 0 {
		t.Fatalf("another tenant's view of acme's session: %+v %v", v, err)
	}
}
