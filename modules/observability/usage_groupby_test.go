package observability_test

import (
	"context"
	"testing"

	convevents "github.com/crispy-enigma/crispy/modules/conversation/events"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// call records a model call of t as made by credential actor for user (the events' attribution):
// a chat turn, or a metered call of another module when purpose is set.
func (e *env) call(t tenant.ID, actor, user, model, purpose string, prompt, completion int) {
	e.t.Helper()
	u := convevents.Usage{PromptTokens: prompt, CompletionTokens: completion, TotalTokens: prompt + completion}
	var ev eventstore.EventData
	var err error
	if purpose == "" {
		ev, err = eventstore.NewEventData(convevents.TypeAssistantMessageCompleted, convevents.AssistantMessageCompleted{
			SessionID: "s", TurnID: "t", Content: "hi", Model: model, Usage: u})
	} else {
		ev, err = eventstore.NewEventData(convevents.TypeCompletionRecorded, convevents.CompletionRecorded{
			CallID: "c", Model: model, Purpose: purpose, Outcome: convevents.OutcomeCompleted, Usage: u})
	}
	if err != nil {
		e.t.Fatal(err)
	}
	ev.Actor, ev.User = actor, user
	if _, err := e.store.Append(context.Background(), tenant.MustStream(t, "session", "s"), eventstore.Any, ev); err != nil {
		e.t.Fatal(err)
	}
}

type group struct {
	requests, in, out float64
	cost              float64
}

func groupsOf(t *testing.T, r resp) map[string]group {
	t.Helper()
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	gs, ok := r.body["groups"].([]any)
	if !ok {
		t.Fatalf("no groups array: %s", r.raw)
	}
	out := map[string]group{}
	for _, g := range gs {
		m := g.(map[string]any)
		out[m["group"].(string)] = group{requests: num(t, m, "requests"), in: num(t, m, "tokensIn"), out: num(t, m, "tokensOut"), cost: num(t, m, "costUsd")}
	}
	return out
}

// GET /usage?groupBy=key|user|model reports every model call (chat turns and other modules'
// metered calls) by credential, by user id and by model, priced per model; another value is 422;
// another tenant never sees the first one's keys, users or models; a rebuild of the read model from
// the log gives the same groups.
func TestUsageGroupedByKeyUserAndModel(t *testing.T) {
	t.Parallel()
	globex := tenant.MustParse("globex")
	e := newEnv(t, opts{})
	e.call(acme, "key:aaaaaaaaaaaa", "alice", "openai:gpt-4o-mini", "", 1000, 500)
	e.call(acme, "key:aaaaaaaaaaaa", "bob", "openai:gpt-4o-mini", "search.answer", 100, 50)
	e.call(acme, "key:bbbbbbbbbbbb", "alice", "acme:private", "", 10, 10)
	e.call(acme, "", "", "openai:gpt-4o-mini", "", 1, 1)
	e.call(globex, "key:cccccccccccc", "carol", "openai:gpt-4o-mini", "", 7, 7)

	check := func(e *env) {
		t.Helper()
		keys := groupsOf(t, e.get("/usage?groupBy=key", "acme"))
		mini := func(in, out float64) float64 { return (in*0.15 + out*0.60) / 1e6 }
		if a := keys["key:aaaaaaaaaaaa"]; a.requests != 2 || a.in != 1100 || a.out != 550 || !approx(a.cost, round6(mini(1100, 550))) {
			t.Errorf("key a: %+v", a)
		}
		if b := keys["key:bbbbbbbbbbbb"]; b.requests != 1 || b.in != 10 || b.cost != 0 {
			t.Errorf("key b: %+v", b)
		}
		if n := keys[""]; n.requests != 1 || len(keys) != 3 {
			t.Errorf("keys: %+v", keys)
		}
		users := groupsOf(t, e.get("/usage?groupBy=user&period=1h", "acme"))
		if a, b := users["alice"], users["bob"]; a.requests != 2 || a.in != 1010 || b.requests != 1 || b.out != 50 || len(users) != 3 {
			t.Errorf("users: %+v", users)
		}
		models := groupsOf(t, e.get("/usage?groupBy=model", "acme"))
		if m := models["openai:gpt-4o-mini"]; m.requests != 3 || m.in != 1101 || len(models) != 2 {
			t.Errorf("models: %+v", models)
		}
		// Tenant isolation: globex sees its own key, user and model only.
		for _, by := range []string{"key", "user", "model"} {
			g := groupsOf(t, e.get("/usage?groupBy="+by, "globex"))
			if len(g) != 1 {
				t.Errorf("globex groupBy=%s sees %+v", by, g)
			}
			for name, x := range g {
				if name == "key:aaaaaaaaaaaa" || name == "alice" || name == "acme:private" || x.requests != 1 || x.in != 7 {
					t.Errorf("globex groupBy=%s: %s %+v", by, name, x)
				}
			}
		}
		if r := e.get("/usage", "acme"); r.status != 200 || r.body["groups"] != nil {
			t.Errorf("groups without groupBy: %d %s", r.status, r.raw)
		}
	}
	check(e)
	wantProblem(t, e.get("/usage?groupBy=tenant", "acme"), 422, "")

	// A rebuild from zero (a new folder, the same log) holds the same groups.
	if err := e.stop(); err != nil {
		t.Fatal(err)
	}
	check(newEnv(t, opts{store: e.store}))
}
