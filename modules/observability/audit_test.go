package observability_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	convevents "github.com/crispy-enigma/crispy/modules/conversation/events"
	"github.com/crispy-enigma/crispy/modules/observability"
	obsevents "github.com/crispy-enigma/crispy/modules/observability/events"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

const key = "k-123"

func (e *env) audit(path, tenantID string) resp {
	e.t.Helper()
	return e.do("GET", path, tenantID, key, nil)
}

func (e *env) accesses(t tenant.ID) []obsevents.AuditAccessed {
	e.t.Helper()
	evs, err := e.store.ReadStream(context.Background(), tenant.MustStream(t, "audit-log", ""), 0, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	out := make([]obsevents.AuditAccessed, len(evs))
	for i, ev := range evs {
		if ev.Type != obsevents.TypeAuditAccessed {
			e.t.Fatalf("audit-log holds %s", ev.Type)
		}
		if err := ev.Decode(&out[i]); err != nil {
			e.t.Fatal(err)
		}
	}
	return out
}

// domainEvents counts the listed events that are not records of audit reads.
func domainEvents(r resp) int {
	n := 0
	for _, x := range r.body["events"].([]any) {
		if x.(map[string]any)["type"] != obsevents.TypeAuditAccessed {
			n++
		}
	}
	return n
}

func seedSessions(e *env) {
	e.turn(acme, "s1", "openai:gpt-4o", 1, 1, 0, 0)
	e.clk.Advance(time.Minute)
	e.turn(beta, "s1", "openai:gpt-4o", 1, 1, 0, 0)
	e.clk.Advance(time.Minute)
	e.tool(acme, "summarize", true, 1)
	e.clk.Advance(time.Minute)
	e.turn(acme, "s2", "openai:gpt-4o", 1, 1, 0, 0)
}

func TestAuditEventsListFilterPaginate(t *testing.T) {
	t.Parallel()
	e := newEnv(t, opts{})
	seedSessions(e) // acme: 5 events, beta: 2

	all := e.audit("/audit/events", "acme")
	if all.status != 200 {
		t.Fatalf("%d %s", all.status, all.raw)
	}
	evs := all.body["events"].([]any)
	if len(evs) != 5 {
		t.Fatalf("acme events = %d, want 5: %s", len(evs), all.raw)
	}
	var lastPos float64
	for _, x := range evs {
		ev := x.(map[string]any)
		if !strings.HasPrefix(ev["stream"].(string), "t-acme.") {
			t.Fatalf("acme's audit includes %v", ev["stream"])
		}
		for _, f := range []string{"id", "type", "revision", "position", "time", "data", "prev", "hash", "requestId", "actor"} {
			if _, ok := ev[f]; !ok {
				t.Fatalf("event lacks %s: %v", f, ev)
			}
		}
		if p := ev["position"].(float64); p <= lastPos {
			t.Fatalf("not in global order")
		} else {
			lastPos = p
		}
	}

	// Pagination: the cursor continues exactly where the page stopped. Each page read is itself
	// recorded in t-acme.audit-log, so later pages also show those AuditAccessed events.
	var ids []string
	cursor := ""
	for page := 0; ; page++ {
		r := e.audit("/audit/events?limit=2&cursor="+cursor, "acme")
		if r.status != 200 {
			t.Fatalf("page %d: %d %s", page, r.status, r.raw)
		}
		for _, x := range r.body["events"].([]any) {
			if ev := x.(map[string]any); ev["type"] != obsevents.TypeAuditAccessed {
				ids = append(ids, ev["id"].(string))
			}
		}
		c, _ := r.body["nextCursor"].(string)
		if c == "" {
			break
		}
		cursor = c
		if page > 5 {
			t.Fatal("pagination does not end")
		}
	}
	if len(ids) != 5 {
		t.Fatalf("paginated ids %d, want 5", len(ids))
	}
	for i, x := range evs {
		if ids[i] != x.(map[string]any)["id"] {
			t.Fatalf("page order differs at %d", i)
		}
	}

	// Filters.
	byType := e.audit("/audit/events?type="+convevents.TypeAssistantMessageCompleted, "acme")
	if n := len(byType.body["events"].([]any)); n != 2 {
		t.Fatalf("type filter: %d events", n)
	}
	byStream := e.audit("/audit/events?stream=session-s2", "acme")
	if n := len(byStream.body["events"].([]any)); n != 2 {
		t.Fatalf("stream filter: %d events: %s", n, byStream.raw)
	}
	from := url.QueryEscape(epoch.Add(90 * time.Second).Format(time.RFC3339))
	byTime := e.audit("/audit/events?from="+from, "acme")
	if n := domainEvents(byTime); n != 3 {
		t.Fatalf("from filter: %d events", n)
	}
	until := url.QueryEscape(epoch.Add(30 * time.Second).Format(time.RFC3339))
	if n := domainEvents(e.audit("/audit/events?until="+until, "acme")); n != 2 {
		t.Fatalf("until filter: %d events", n)
	}

	// Tenant B never sees A's events, even by naming A's stream.
	b := e.audit("/audit/events?stream=t-acme.session-s1", "beta")
	if b.status != 200 || len(b.body["events"].([]any)) != 0 {
		t.Fatalf("beta reads acme's stream: %s", b.raw)
	}
	bAll := e.audit("/audit/events", "beta")
	for _, x := range bAll.body["events"].([]any) {
		if s := x.(map[string]any)["stream"].(string); !strings.HasPrefix(s, "t-beta.") {
			t.Fatalf("beta's audit includes %s", s)
		}
	}

	// Every read was recorded in the reader's own audit log.
	acc := e.accesses(acme)
	if len(acc) < 8 || acc[0].Endpoint != "events" {
		t.Fatalf("acme accesses: %+v", acc)
	}
	if got := e.accesses(beta); len(got) != 2 {
		t.Fatalf("beta accesses: %+v", got)
	}
}

func TestAuditNeedsKeyAndValidInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t, opts{})
	seedSessions(e)
	for _, p := range []string{"/audit/events", "/audit/verify", "/audit/sessions/0b0f6a2e-0c4b-4a57-9a65-3f5f0f3a1d2e"} {
		wantProblem(t, e.do("GET", p, "acme", "", nil), 401, "audit_requires_api_key")
	}
	wantProblem(t, e.audit("/audit/events?from=yesterday", "acme"), 400, "invalid_time")
	wantProblem(t, e.audit("/audit/events?until=2026-13-01", "acme"), 400, "invalid_time")
	wantProblem(t, e.audit("/audit/events?cursor=abc", "acme"), 400, "invalid_cursor")
	if n := len(e.accesses(acme)); n != 0 {
		t.Fatalf("refused reads were recorded: %d", n)
	}
}

func TestAuditSessionsAsOf(t *testing.T) {
	t.Parallel()
	store := newEnv(t, opts{}).store // an empty store to share
	e := newEnv(t, opts{store: store, deps: func(d *observability.Deps) { d.Sessions = observability.NewSessionAuditor(d.Store) }})
	sid := "0b0f6a2e-0c4b-4a57-9a65-3f5f0f3a1d2e"
	e.append(acme, "session", sid, convevents.TypeSessionStarted, convevents.SessionStarted{SessionID: sid, Tenant: "acme", Title: "hello"})
	e.append(acme, "session", sid, convevents.TypeUserMessageAdded, convevents.UserMessageAdded{SessionID: sid, TurnID: "1", Content: "question"})
	e.clk.Advance(time.Minute)
	e.append(acme, "session", sid, convevents.TypeAssistantMessageCompleted, convevents.AssistantMessageCompleted{SessionID: sid, TurnID: "1", Content: "answer", Model: "builtin:offline"})

	asOf := url.QueryEscape(epoch.Add(30 * time.Second).Format(time.RFC3339))
	r := e.audit("/audit/sessions/"+sid+"?asOf="+asOf, "acme")
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	if msgs := r.body["messages"].([]any); len(msgs) != 1 || msgs[0].(map[string]any)["content"] != "question" {
		t.Fatalf("as of 30s: %s", r.raw)
	}
	now := e.audit("/audit/sessions/"+sid, "acme")
	if msgs := now.body["messages"].([]any); len(msgs) != 2 || now.body["title"] != "hello" {
		t.Fatalf("now: %s", now.raw)
	}
	wantProblem(t, e.audit("/audit/sessions/"+sid+"?asOf=last-week", "acme"), 400, "invalid_time")
	wantProblem(t, e.audit("/audit/sessions/"+sid, "beta"), 404, "session_not_found")
	before := url.QueryEscape(epoch.Add(-time.Hour).Format(time.RFC3339))
	wantProblem(t, e.audit("/audit/sessions/"+sid+"?asOf="+before, "acme"), 404, "session_not_found")

	// Deleted: the deletion shows, the erased content does not.
	e.clk.Advance(time.Minute)
	res := e.append(acme, "session", sid, convevents.TypeSessionDeleted, convevents.SessionDeleted{SessionID: sid})
	trunc := res.Revision
	if err := e.store.SetStreamMetadata(context.Background(), tenant.MustStream(acme, "session", sid), eventstore.StreamMetadata{TruncateBefore: &trunc}); err != nil {
		t.Fatal(err)
	}
	d := e.audit("/audit/sessions/"+sid, "acme")
	if d.status != 200 || d.body["deleted"] != true || len(d.body["messages"].([]any)) != 0 || d.body["deletedAt"] == nil {
		t.Fatalf("deleted session: %s", d.raw)
	}

	// Without an auditor the endpoint is 503.
	plain := newEnv(t, opts{store: store})
	wantProblem(t, plain.audit("/audit/sessions/"+sid, "acme"), 503, "sessions_unavailable")
}

// tamper serves one event with altered data, as if someone edited the log.
type tamper struct {
	eventstore.Store
	id string
}

func (s tamper) ReadTenant(ctx context.Context, t tenant.ID, from eventstore.Position, max int) ([]eventstore.Event, error) {
	evs, err := s.Store.ReadTenant(ctx, t, from, max)
	for i := range evs {
		if evs[i].ID == s.id {
			evs[i].Data = json.RawMessage(`{"content":"forged"}`)
		}
	}
	return evs, err
}

func TestVerifyDetectsTampering(t *testing.T) {
	t.Parallel()
	e := newEnv(t, opts{})
	seedSessions(e)
	r := e.audit("/audit/verify", "acme")
	if r.status != 200 || r.body["ok"] != true || num(t, r.body, "eventsChecked") != 5 {
		t.Fatalf("clean verify: %s", r.raw)
	}
	evs, _ := e.store.ReadTenant(context.Background(), acme, eventstore.Start, 0)
	victim := evs[2]
	bad := tamper{Store: e.store, id: victim.ID}

	res, err := observability.Verify(context.Background(), bad, acme, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.OK || res.FirstBadEvent == nil || res.FirstBadEvent.ID != victim.ID || res.EventsChecked != 3 {
		t.Fatalf("tampered verify: %+v", res)
	}
	// Tenant B's chains are not affected by, and do not include, A's events.
	if rb, err := observability.Verify(context.Background(), bad, beta, nil); err != nil || !rb.OK || rb.EventsChecked != 2 {
		t.Fatalf("beta verify: %+v %v", rb, err)
	}

	// Over HTTP too.
	he := newEnv(t, opts{store: e.store, deps: func(d *observability.Deps) { d.Store = tamper{Store: e.store, id: victim.ID} }})
	hr := he.audit("/audit/verify", "acme")
	if hr.body["ok"] != false || hr.body["firstBadEvent"].(map[string]any)["id"] != victim.ID {
		t.Fatalf("http verify: %s", hr.raw)
	}
}

// A broken link (an event whose prev does not match its predecessor) is found too.
func TestVerifyDetectsBrokenLink(t *testing.T) {
	t.Parallel()
	e := newEnv(t, opts{})
	seedSessions(e)
	evs, _ := e.store.ReadTenant(context.Background(), acme, eventstore.Start, 0)
	victim := evs[1] // second event of t-acme.session-s1
	relinked := relink{Store: e.store, id: victim.ID}
	res, err := observability.Verify(context.Background(), relinked, acme, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.OK || res.FirstBadEvent.ID != victim.ID || !strings.Contains(res.FirstBadEvent.Reason, "prev") {
		t.Fatalf("relinked verify: %+v %+v", res, res.FirstBadEvent)
	}
}

// relink resels one event on a different prev hash: its own hash is consistent, the link is not.
type relink struct {
	eventstore.Store
	id string
}

func (s relink) ReadTenant(ctx context.Context, t tenant.ID, from eventstore.Position, max int) ([]eventstore.Event, error) {
	evs, err := s.Store.ReadTenant(ctx, t, from, max)
	for i := range evs {
		if evs[i].ID == s.id {
			_ = eventstore.Seal(strings.Repeat("0", 64), &evs[i])
		}
	}
	return evs, err
}

func TestReplayJSONL(t *testing.T) {
	t.Parallel()
	e := newEnv(t, opts{})
	seedSessions(e)
	var buf bytes.Buffer
	var progress []int
	n, err := observability.Replay(context.Background(), e.store, acme, observability.ReplayOptions{}, &buf, func(n int) { progress = append(progress, n) })
	if err != nil || n != 5 {
		t.Fatalf("replay: %d %v", n, err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 5 || len(progress) == 0 || progress[len(progress)-1] != 5 {
		t.Fatalf("lines %d progress %v", len(lines), progress)
	}
	for _, l := range lines {
		var ev eventstore.Event
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Tenant != acme || ev.Hash == "" || !strings.HasPrefix(ev.Stream, "t-acme.") {
			t.Fatalf("replayed %+v", ev)
		}
		// The replayed line still verifies: it is the event exactly as stored.
		if h, _ := eventstore.ComputeHash(ev.Prev, &ev); h != ev.Hash {
			t.Fatalf("replayed event %s does not hash to its hash", ev.ID)
		}
	}
	buf.Reset()
	n, err = observability.Replay(context.Background(), e.store, acme, observability.ReplayOptions{Stream: "session-s2", Until: epoch.Add(time.Hour)}, &buf, nil)
	if err != nil || n != 2 {
		t.Fatalf("filtered replay: %d %v", n, err)
	}
	n, err = observability.Replay(context.Background(), e.store, acme, observability.ReplayOptions{Until: epoch.Add(-time.Hour)}, &buf, nil)
	if err != nil || n != 0 {
		t.Fatalf("replay before anything: %d %v", n, err)
	}
	// B's replay holds only B's events.
	buf.Reset()
	if n, err := observability.Replay(context.Background(), e.store, beta, observability.ReplayOptions{}, &buf, nil); err != nil || n != 2 || strings.Contains(buf.String(), "t-acme.") {
		t.Fatalf("beta replay: %d %v %s", n, err, buf.String())
	}
}

func TestReplayAndVerifyUnknownTenant(t *testing.T) {
	t.Parallel()
	e := newEnv(t, opts{})
	seedSessions(e)
	ghost := tenant.MustParse("ghost")
	var buf bytes.Buffer
	if _, err := observability.Replay(context.Background(), e.store, ghost, observability.ReplayOptions{}, &buf, nil); !errors.Is(err, observability.ErrUnknownTenant) || !strings.Contains(err.Error(), "ghost") {
		t.Fatalf("replay of unknown tenant: %v", err)
	}
	if _, err := observability.Verify(context.Background(), e.store, ghost, nil); !errors.Is(err, observability.ErrUnknownTenant) {
		t.Fatalf("verify of unknown tenant: %v", err)
	}
	if buf.Len() != 0 {
		t.Fatalf("wrote %q", buf.String())
	}
}

// unreadable fails reads past the first page of events, as a store with a damaged record does.
type unreadable struct{ eventstore.Store }

func (s unreadable) ReadTenant(ctx context.Context, t tenant.ID, from eventstore.Position, max int) ([]eventstore.Event, error) {
	if max == 1 { // Verify's check that the tenant exists reads one event
		return s.Store.ReadTenant(ctx, t, from, max)
	}
	return nil, fmt.Errorf("record at offset 123: %w", eventstore.ErrCorrupt)
}

func TestVerifyUnreadableRecord(t *testing.T) {
	t.Parallel()
	e := newEnv(t, opts{})
	seedSessions(e)
	if _, err := observability.Verify(context.Background(), unreadable{e.store}, acme, nil); !errors.Is(err, eventstore.ErrCorrupt) {
		t.Fatalf("CLI verify: %v", err)
	}
	he := newEnv(t, opts{store: e.store, deps: func(d *observability.Deps) { d.Store = unreadable{e.store} }})
	r := he.audit("/audit/verify", "acme")
	if r.status != 200 || r.body["ok"] != false || r.body["firstBadEvent"] == nil || strings.Contains(r.raw, "offset 123") {
		t.Fatalf("http verify of an unreadable store: %s", r.raw)
	}
}

// TestAuditReadDuringAStorageFaultSaysWhenToRetry: an audit read is served only once its access is on
// record, so while the store refuses writes it is refused too, with the store's retry-after.
func TestAuditReadDuringAStorageFaultSaysWhenToRetry(t *testing.T) {
	t.Parallel()
	e := newEnv(t, opts{})
	e.store.FailAppends(eventstore.ErrStorageUnavailable)
	r := e.audit("/audit/events", "acme")
	if r.status != 503 || r.body["code"] != "audit_record_failed" || r.header.Get("Retry-After") != fmt.Sprint(eventstore.StorageRetryAfterSec) {
		t.Fatalf("audit read while the store refuses writes: %d %v %s", r.status, r.header, r.raw)
	}
	e.store.FailAppends(eventstore.ErrStorageOutcomeUnknown)
	if r := e.audit("/audit/events", "acme"); r.status != 503 || r.header.Get("Retry-After") != fmt.Sprint(eventstore.StorageRetryAfterSec) {
		t.Fatalf("audit read while the store's writes fail with an unknown outcome: %d %v %s", r.status, r.header, r.raw)
	}
	e.store.FailAppends(nil)
	if r := e.audit("/audit/events", "acme"); r.status != 200 {
		t.Fatalf("audit read after the fault: %d %s", r.status, r.raw)
	}
}
