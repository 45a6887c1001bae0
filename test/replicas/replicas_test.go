package replicas

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	convevents "github.com/crispy-enigma/crispy/modules/conversation/events"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/postgres"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// TestIntegrationReplicasAgreeOnSessionsAndUsage: a chat turn acknowledged by A is in B's history
// at once (B had the session folded and cached before), and in B's session list and /usage within
// a second. The other tenant sees none of it on B.
func TestIntegrationReplicasAgreeOnSessionsAndUsage(t *testing.T) {
	d := newDeployment(t, "")
	a, b := d.start("A", ""), d.start("B", "")
	ten := d.tenant
	list := lags{what: "turn acknowledged by A -> in B's session list"}
	usage := lags{what: "turn acknowledged by A -> counted in B's /usage"}
	sessions := []string{uuid.NewString(), uuid.NewString()}
	turns := 0
	for i := range 6 {
		sid := sessions[i%2]
		msg := fmt.Sprintf("turn %d of the replicas test", i)
		a.chat(ten, sid, msg).must(t, "chat on A", 200)
		acked := time.Now()
		turns++

		// At once: one read on B, no waiting. B read this session after A's previous turn, so a fold
		// it keeps must not hide the new one.
		h, r := b.history(ten, sid)
		if r.status != 200 {
			t.Fatalf("turn %d: B's history of the session right after A acknowledged the turn: %v %d %s", i, r.err, r.status, r.raw)
		}
		if n := len(h); n != 2*(i/2+1) || h[n-2] != "user:"+msg || !strings.HasPrefix(h[n-1], "assistant:") {
			t.Fatalf("turn %d: B's history right after A acknowledged %q: %q", i, msg, h)
		}

		if lag, ok := until(acked, func() bool { n, _ := b.sessionCount(ten, sid); return n == len(h) }); ok {
			list.add(lag)
		} else {
			n, r := b.sessionCount(ten, sid)
			t.Fatalf("turn %d: B's session list never showed the session with %d messages (after %s: %d, %d %s)", i, len(h), patience, n, r.status, r.raw)
		}
		if lag, ok := until(acked, func() bool { n, _ := b.usageRequests(ten); return n == turns }); ok {
			usage.add(lag)
		} else {
			n, r := b.usageRequests(ten)
			t.Fatalf("turn %d: B's /usage never counted %d requests (after %s: %d, %d %s)", i, turns, patience, n, r.status, r.raw)
		}
	}
	list.check(t)
	usage.check(t)

	// A's own answers agree with B's.
	for _, sid := range sessions {
		ha, _ := a.history(ten, sid)
		hb, _ := b.history(ten, sid)
		if strings.Join(ha, "\n") != strings.Join(hb, "\n") {
			t.Errorf("A and B disagree on session %s:\nA %q\nB %q", sid, ha, hb)
		}
	}
	if n, r := a.usageRequests(ten); n != turns {
		t.Errorf("A's /usage: %d requests, want %d (%s)", n, turns, r.raw)
	}

	// Tenant isolation on B: the other tenant cannot read, list or count the first tenant's turns.
	if r := b.call(d.other, "GET", "/chat/"+sessions[0]+"/history", nil); r.status != 404 || strings.Contains(r.raw, "replicas test") {
		t.Errorf("the other tenant reading the session on B: %d %s", r.status, r.raw)
	}
	if r := b.call(d.other, "GET", "/sessions", nil); r.status != 200 || strings.Contains(r.raw, sessions[0]) || strings.Contains(r.raw, sessions[1]) {
		t.Errorf("the other tenant's session list on B: %d %s", r.status, r.raw)
	}
	if n, r := b.usageRequests(d.other); n != 0 {
		t.Errorf("the other tenant's /usage on B counts %d requests: %s", n, r.raw)
	}
}

// TestIntegrationReplicasAgreeOnSearch: a document ingested on A is searchable on B within a second;
// an answer B has cached stops being served within a second of a re-ingest, and of a delete, on A.
func TestIntegrationReplicasAgreeOnSearch(t *testing.T) {
	d := newDeployment(t, "")
	a, b := d.start("A", ""), d.start("B", "")
	ten := d.tenant
	a.waitSearchReady(ten)
	b.waitSearchReady(ten)

	ingest := func(id, text string) time.Time {
		t.Helper()
		a.call(ten, "POST", "/ingest", map[string]any{"docId": id, "text": text}).must(t, "ingest "+id+" on A", 200)
		return time.Now()
	}
	// found reports whether B's search finds id's text holding want. Each poll asks a query of its
	// own (the filter names the document, so any query finds it once it is indexed), so what B's
	// cache keeps plays no part here.
	polls := 0
	found := func(id, want string) bool {
		polls++
		texts, _, _ := b.search(ten, fmt.Sprintf("%s poll %d", want, polls), id)
		return len(texts) > 0 && strings.Contains(texts[0], want)
	}

	searchable := lags{what: "document ingested on A -> searchable on B"}
	for i := range 5 {
		id, marker := fmt.Sprintf("doc-%d", i), "marker"+randHex(t, 4)
		acked := ingest(id, fmt.Sprintf("Page %d of the replicas handbook mentions %s.", i, marker))
		if lag, ok := until(acked, func() bool { return found(id, marker) }); ok {
			searchable.add(lag)
		} else {
			t.Fatalf("document %s ingested on A is not searchable on B after %s", id, patience)
		}
	}
	searchable.check(t)

	// B's search cache: B answers a query and caches it; A replaces the document, then deletes it.
	const id, q = "cached-doc", "what does the cached page say"
	ingest(id, "The cached page says alpha.")
	if _, ok := until(time.Now(), func() bool { return found(id, "alpha") }); !ok {
		t.Fatalf("%s ingested on A is not searchable on B after %s", id, patience)
	}
	cacheOnB := func(want string) {
		t.Helper()
		texts, _, r := b.search(ten, q, id)
		if r.status != 200 || len(texts) != 1 || !strings.Contains(texts[0], want) {
			t.Fatalf("B's search: %v %d %s, want the page saying %s", r.err, r.status, r.raw, want)
		}
		if _, cached, r := b.search(ten, q, id); !cached {
			t.Fatalf("B did not cache the answer (the test needs it cached): %s", r.raw)
		}
	}
	stale := lags{what: "re-ingest or delete on A -> B's cached answer dropped"}
	cacheOnB("alpha")
	acked := ingest(id, "The cached page now says bravo.")
	if lag, ok := until(acked, func() bool {
		texts, _, r := b.search(ten, q, id)
		return r.status == 200 && len(texts) == 1 && strings.Contains(texts[0], "bravo")
	}); ok {
		stale.add(lag)
	} else {
		texts, cached, r := b.search(ten, q, id)
		t.Errorf("B still answers the version before A's re-ingest after %s: %q cached=%t (%d)", patience, texts, cached, r.status)
	}
	cacheOnB("bravo")
	a.call(ten, "DELETE", "/documents/"+id, nil).must(t, "delete on A", 200)
	acked = time.Now()
	if lag, ok := until(acked, func() bool {
		texts, _, r := b.search(ten, q, id)
		return r.status == 200 && len(texts) == 0
	}); ok {
		stale.add(lag)
	} else {
		texts, cached, r := b.search(ten, q, id)
		t.Errorf("B still answers with the document A deleted after %s: %q cached=%t (%d)", patience, texts, cached, r.status)
	}
	stale.check(t)

	// Tenant isolation on B: the other tenant finds none of the first tenant's documents.
	if texts, _, r := b.search(d.other, "replicas handbook", ""); r.status != 200 || len(texts) != 0 {
		t.Errorf("the other tenant's search on B: %d %s", r.status, r.raw)
	}
}

// hook counts the webhook notices it receives.
type hook struct {
	mu      sync.Mutex
	notices []string
	srv     *httptest.Server
}

func newHook(t *testing.T) *hook {
	h := &hook{}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		h.notices = append(h.notices, r.Header.Get("x-crispy-event")+" "+string(b))
		h.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hook) received() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.notices...)
}

// TestIntegrationReplicasFireAnAlertOnce: both replicas evaluate the rules (every 200 ms here), and
// a rule that starts firing sends one webhook notice for the deployment, not one per replica, and
// records one AlertFired.
func TestIntegrationReplicasFireAnAlertOnce(t *testing.T) {
	d := newDeployment(t, "")
	h := newHook(t)
	const interval = 200 * time.Millisecond
	d.extraArgs = []string{"--alert-interval", interval.String()}
	d.extraEnv = []string{"CRISPY_WEBHOOK_ALLOW_INTERNAL=true"} // the receiver is on loopback
	a, b := d.start("A", ""), d.start("B", "")
	ten := d.tenant

	rule := map[string]any{"id": "busy", "name": "Any chat", "metric": "requests", "comparator": "gte", "threshold": 1, "period": "1h",
		"webhookUrl": h.srv.URL + "/hook"}
	a.call(ten, "PUT", "/metrics/alerts", rule).must(t, "save the rule on A", 200)
	// Both replicas know the rule before it can fire, so both evaluate it when it does.
	if _, ok := until(time.Now(), func() bool {
		r := b.call(ten, "GET", "/metrics/alerts", nil)
		return r.status == 200 && strings.Contains(r.raw, `"busy"`)
	}); !ok {
		t.Fatalf("B never listed the rule saved on A: %s", b.call(ten, "GET", "/metrics/alerts", nil).raw)
	}
	a.chat(ten, uuid.NewString(), "one request is enough to fire the rule").must(t, "chat on A", 200)

	if _, ok := until(time.Now(), func() bool { return len(h.received()) > 0 }); !ok {
		t.Fatalf("no webhook notice within %s of the rule breaking (both replicas evaluate every %s)", patience, interval)
	}
	// Both replicas report it firing, then many more evaluations pass on each: a second notice
	// (one per replica, or one per evaluation) would come in this time.
	for _, r := range []*replica{a, b} {
		if _, ok := until(time.Now(), func() bool {
			x := r.call(ten, "GET", "/metrics/alerts", nil)
			return x.status == 200 && strings.Contains(x.raw, `"firing":true`)
		}); !ok {
			t.Errorf("replica %s never reports the rule firing: %s", r.name, r.call(ten, "GET", "/metrics/alerts", nil).raw)
		}
	}
	time.Sleep(15 * interval)
	got := h.received()
	if len(got) != 1 || !strings.HasPrefix(got[0], "alert.firing ") || !strings.Contains(got[0], `"tenant":"`+ten.String()+`"`) {
		t.Errorf("webhook notices for one rule that started firing once, with two replicas: %d, want 1:\n%s", len(got), strings.Join(got, "\n"))
	}
	var fired int
	for _, e := range d.events(ten) {
		if e.Type == "observability.AlertFired" {
			fired++
		}
	}
	if fired != 1 {
		t.Errorf("AlertFired recorded %d times, want 1", fired)
	}
	if r := b.call(d.other, "GET", "/metrics/alerts", nil); r.status != 200 || strings.Contains(r.raw, "busy") {
		t.Errorf("the other tenant's rules on B: %d %s", r.status, r.raw)
	}
}

// TestIntegrationReplicasRunRetentionOnce: sessions idle past their tenant's retention are expired
// once for the deployment (one SessionExpired each, and at most one sweep request per tenant and
// slot) while both replicas run the retention clock (every second here); a recent session stays.
func TestIntegrationReplicasRunRetentionOnce(t *testing.T) {
	d := newDeployment(t, "    sessionRetentionDays: 7\n")
	ten := d.tenant

	// Sessions whose last activity was 40 days ago, written through a store whose clock says so.
	ctx := context.Background()
	old, err := postgres.Open(ctx, postgres.Config{URL: d.eventStore}, postgres.Options{Now: func() time.Time { return time.Now().Add(-40 * 24 * time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	idle := map[string]bool{}
	for i := range 3 {
		sid := uuid.NewString()
		idle[sid] = true
		turn := uuid.NewString()
		var evs []eventstore.EventData
		for _, ev := range []struct {
			typ string
			v   any
		}{
			{convevents.TypeSessionStarted, convevents.SessionStarted{SessionID: sid, Tenant: ten.String(), Title: "old session"}},
			{convevents.TypeUserMessageAdded, convevents.UserMessageAdded{SessionID: sid, TurnID: turn, Content: fmt.Sprintf("an old question %d", i), Source: "chat"}},
			{convevents.TypeAssistantMessageCompleted, convevents.AssistantMessageCompleted{SessionID: sid, TurnID: turn, Content: "an old answer",
				Model: "builtin:offline", Usage: convevents.Usage{PromptTokens: 3, CompletionTokens: 3, TotalTokens: 6}, Source: "chat", Offline: true}},
		} {
			data, err := eventstore.NewEventData(ev.typ, ev.v)
			if err != nil {
				t.Fatal(err)
			}
			evs = append(evs, data)
		}
		if _, err := old.Append(ctx, tenant.MustStream(ten, convevents.SessionCategory, sid), eventstore.NoStream, evs...); err != nil {
			t.Fatal(err)
		}
	}
	old.Close()

	const interval = time.Second
	d.extraArgs = []string{"--retention-interval", interval.String()}
	a, b := d.start("A", ""), d.start("B", "")
	fresh := uuid.NewString()
	a.chat(ten, fresh, "a recent question").must(t, "chat on A", 200)

	expired := func() map[string]int {
		n := map[string]int{}
		for _, e := range d.events(ten) {
			if e.Type == convevents.TypeSessionExpired {
				n[field(e, "sessionId")]++
			}
		}
		return n
	}
	if _, ok := until(time.Now(), func() bool { return len(expired()) >= len(idle) }); !ok {
		t.Fatalf("after %s, expired sessions: %v; want the %d idle ones", patience, expired(), len(idle))
	}
	time.Sleep(4 * interval) // several more sweeps on each replica
	n := expired()
	for sid := range idle {
		if n[sid] != 1 {
			t.Errorf("idle session %s expired %d times, want once", sid, n[sid])
		}
	}
	if n[fresh] != 0 || len(n) != len(idle) {
		t.Errorf("expiries: %v; want one for each of the %d idle sessions and none for the recent %s", n, len(idle), fresh)
	}
	slots := map[string]int{}
	var requests int
	for _, e := range d.events(ten) {
		if e.Type == "conversation.RetentionSweepRequested" { // a slot's sweep request (retention as a processor)
			slots[e.Stream]++
			requests++
		}
	}
	for s, c := range slots {
		if c != 1 {
			t.Errorf("retention stream %s holds %d sweep requests, want 1", s, c)
		}
	}
	t.Logf("%d sweep requests recorded for %d sessions expired", requests, len(n))
	for _, r := range []*replica{a, b} {
		for sid := range idle {
			if x := r.call(ten, "GET", "/chat/"+sid+"/history", nil); x.status != 404 {
				t.Errorf("replica %s: history of an expired session: %d %s", r.name, x.status, x.raw)
			}
		}
		if h, x := r.history(ten, fresh); len(h) != 2 {
			t.Errorf("replica %s: history of the recent session: %d %s", r.name, x.status, x.raw)
		}
		if errs := r.Logs.Matching("retention", `"level":"ERROR"`); len(errs) > 0 {
			t.Errorf("replica %s logged retention errors:\n%s", r.name, strings.Join(errs, "\n"))
		}
	}
}

// TestIntegrationReplicasLoseNothingAcknowledgedOnKill9: several clients take chat turns and ingest
// documents on A; A is killed with SIGKILL in the middle. Every write A acknowledged is there
// exactly once, on B (which ran throughout) and on A restarted on its data folder.
func TestIntegrationReplicasLoseNothingAcknowledgedOnKill9(t *testing.T) {
	d := newDeployment(t, "")
	dirA := t.TempDir()
	a, b := d.start("A", dirA), d.start("B", "")
	ten := d.tenant
	a.waitSearchReady(ten)

	var (
		mu       sync.Mutex
		turns    = map[string][]string{} // session -> acknowledged messages, in order
		docs     []string                // acknowledged document ids
		failures []string                // answers other than 200 before the kill
		killed   = make(chan struct{})
		wg       sync.WaitGroup
	)
	refused := func(what string, r answer) {
		select {
		case <-killed: // in flight at the kill: neither acknowledged nor refused
		default:
			if r.err == nil { // a transport error can only be the kill
				mu.Lock()
				failures = append(failures, fmt.Sprintf("%s: %d %s", what, r.status, r.raw))
				mu.Unlock()
			}
		}
	}
	for w := range 4 {
		sid := uuid.NewString()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				msg := fmt.Sprintf("client %d message %d", w, i)
				r := a.chat(ten, sid, msg)
				if r.status != 200 {
					refused(msg, r)
					return
				}
				mu.Lock()
				turns[sid] = append(turns[sid], msg)
				mu.Unlock()
			}
		}()
	}
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				id := fmt.Sprintf("w%d-doc%d", w, i)
				r := a.call(ten, "POST", "/ingest", map[string]any{"docId": id, "text": "Acknowledged document " + id + " of the kill test."})
				if r.status != 200 {
					refused(id, r)
					return
				}
				mu.Lock()
				docs = append(docs, id)
				mu.Unlock()
			}
		}()
	}
	// Kill once there is a fair load behind it (or after 20 s, whatever there is).
	enough := func() bool {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, m := range turns {
			n += len(m)
		}
		return n >= 60 && len(docs) >= 30
	}
	for deadline := time.Now().Add(20 * time.Second); !enough() && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	close(killed)
	a.Kill()
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(failures) > 0 {
		t.Fatalf("A refused writes before the kill: %q", failures)
	}
	var nTurns int
	for _, m := range turns {
		nTurns += len(m)
	}
	t.Logf("A acknowledged %d chat turns in %d sessions and %d ingests before kill -9", nTurns, len(turns), len(docs))

	// The store holds each acknowledged ingest once.
	ingested := map[string]int{}
	for _, e := range d.events(ten) {
		if e.Type == "retrieval.DocumentIngested" {
			ingested[field(e, "docId")]++
		}
	}
	for _, id := range docs {
		if ingested[id] != 1 {
			t.Errorf("acknowledged document %s recorded %d times, want once", id, ingested[id])
		}
	}

	a2 := d.start("A-restarted", dirA)
	a2.waitSearchReady(ten)
	b.waitSearchReady(ten)
	for _, r := range []*replica{b, a2} {
		// Each acknowledged message is in its session exactly once, as a user message with the
		// assistant's answer after it; a turn in flight at the kill may follow the last of them.
		for sid, msgs := range turns {
			h, x := r.history(ten, sid)
			if x.status != 200 {
				t.Errorf("replica %s: history of %s: %v %d %s", r.name, sid, x.err, x.status, x.raw)
				continue
			}
			at := map[string][]int{}
			for i, m := range h {
				at[m] = append(at[m], i)
			}
			for _, msg := range msgs {
				pos := at["user:"+msg]
				if len(pos) != 1 {
					t.Errorf("replica %s: acknowledged message %q is in the history %d times, want once", r.name, msg, len(pos))
					continue
				}
				if p := pos[0]; p+1 >= len(h) || !strings.HasPrefix(h[p+1], "assistant:") {
					t.Errorf("replica %s: acknowledged message %q has no answer after it: %q", r.name, msg, h[p:])
				}
			}
		}
		// Each acknowledged document is searchable, once (one chunk each).
		var missing []string
		for _, id := range docs {
			texts, _, x := r.search(ten, "acknowledged document "+id, id)
			if x.status != 200 || len(texts) != 1 {
				missing = append(missing, fmt.Sprintf("%s (%d sources, status %d)", id, len(texts), x.status))
			}
		}
		if len(missing) > 0 {
			t.Errorf("replica %s: %d of %d acknowledged documents not searchable exactly once: %v", r.name, len(missing), len(docs), missing[:min(len(missing), 10)])
		}
	}
}
