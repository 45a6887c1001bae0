package observability_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/modules/observability"
	obsevents "github.com/crispy-enigma/crispy/modules/observability/events"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// hook is a webhook receiver that fails the first `failures` deliveries with 503.
type hook struct {
	mu       sync.Mutex
	failures int
	attempts int
	got      []delivery
	signedOK []bool
	arrived  chan struct{}
}

type delivery struct {
	body   map[string]any
	header http.Header
}

func newHook(failures int) (*hook, *httptest.Server) {
	h := &hook{failures: failures, arrived: make(chan struct{}, 16)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		defer h.mu.Unlock()
		h.attempts++
		if h.attempts <= h.failures {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		// Verify as a receiver would: HMAC-SHA256 over "timestamp.body" with the shared secret.
		m := hmac.New(sha256.New, []byte("s3cret"))
		m.Write([]byte(r.Header.Get("x-crispy-timestamp") + "."))
		m.Write(b)
		want := "sha256=" + hex.EncodeToString(m.Sum(nil))
		h.signedOK = append(h.signedOK, hmac.Equal([]byte(want), []byte(r.Header.Get("x-crispy-signature"))))
		var body map[string]any
		_ = json.Unmarshal(b, &body)
		h.got = append(h.got, delivery{body: body, header: r.Header.Clone()})
		w.WriteHeader(http.StatusNoContent)
		h.arrived <- struct{}{}
	}))
	return h, srv
}

func (e *env) ruleEvents(t tenant.ID, id string) []string {
	e.t.Helper()
	evs, err := e.store.ReadStream(context.Background(), tenant.MustStream(t, "alert-rule", id), 0, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	var types []string
	for _, ev := range evs {
		types = append(types, ev.Type)
	}
	return types
}

func TestAlertRulesCRUDAndValidation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, opts{})
	rule := map[string]any{"id": "errors", "name": "Chat errors", "metric": "chatErrorRate", "comparator": "gt", "threshold": 0.1, "period": "1h"}
	r := e.do("PUT", "/metrics/alerts", "acme", "", rule)
	if r.status != 200 || r.body["id"] != "errors" || r.body["enabled"] != true || r.body["firing"] != false {
		t.Fatalf("put: %d %s", r.status, r.raw)
	}
	rule["threshold"] = 0.2
	if r := e.do("PUT", "/metrics/alerts", "acme", "", rule); r.status != 200 || r.body["threshold"] != 0.2 {
		t.Fatalf("replace: %s", r.raw)
	}
	gen := e.do("PUT", "/metrics/alerts", "acme", "", map[string]any{"name": "Spend", "metric": "costUsd", "comparator": "gte", "threshold": 5})
	if gen.status != 200 || gen.body["id"] == "" || gen.body["period"] != "24h" {
		t.Fatalf("generated id: %s", gen.raw)
	}
	list := e.get("/metrics/alerts", "acme")
	if got := list.body["alerts"].([]any); len(got) != 2 {
		t.Fatalf("list: %s", list.raw)
	}
	if got := e.get("/metrics/alerts", "beta").body["alerts"].([]any); len(got) != 0 {
		t.Fatalf("beta sees acme's rules: %v", got)
	}

	for name, bad := range map[string]map[string]any{
		"metric":     {"id": "x", "name": "n", "metric": "cpu", "comparator": "gt", "threshold": 1},
		"comparator": {"id": "x", "name": "n", "metric": "requests", "comparator": "above", "threshold": 1},
		"period":     {"id": "x", "name": "n", "metric": "requests", "comparator": "gt", "threshold": 1, "period": "2d"},
		"id":         {"id": "Bad Id!", "name": "n", "metric": "requests", "comparator": "gt", "threshold": 1},
		"webhook":    {"id": "x", "name": "n", "metric": "requests", "comparator": "gt", "threshold": 1, "webhookUrl": "ftp://example.com/hook"},
		"relative":   {"id": "x", "name": "n", "metric": "requests", "comparator": "gt", "threshold": 1, "webhookUrl": "/hook"},
		"creds":      {"id": "x", "name": "n", "metric": "requests", "comparator": "gt", "threshold": 1, "webhookUrl": "https://u:p@example.com/"},
		"name":       {"id": "x", "name": " ", "metric": "requests", "comparator": "gt", "threshold": 1},
	} {
		r := e.do("PUT", "/metrics/alerts", "acme", "", bad)
		if r.status != 400 && r.status != 422 {
			t.Errorf("%s: %d %s", name, r.status, r.raw)
		}
	}
	if len(e.ruleEvents(acme, "x")) != 0 {
		t.Fatal("an invalid rule was recorded")
	}

	// Beta cannot delete acme's rule: 404, and the rule survives.
	if r := e.do("DELETE", "/metrics/alerts?id=errors", "beta", "", nil); r.status != 404 {
		t.Fatalf("beta delete: %d %s", r.status, r.raw)
	}
	if r := e.do("DELETE", "/metrics/alerts?id=errors", "acme", "", nil); r.status != 200 || r.body["deleted"] != "errors" {
		t.Fatalf("delete: %d %s", r.status, r.raw)
	}
	wantProblem(t, e.do("DELETE", "/metrics/alerts?id=errors", "acme", "", nil), 404, "alert_rule_not_found")
	if got := e.get("/metrics/alerts", "acme").body["alerts"].([]any); len(got) != 1 {
		t.Fatalf("after delete: %v", got)
	}
	if types := e.ruleEvents(acme, "errors"); len(types) != 3 || types[2] != obsevents.TypeAlertRuleDeleted {
		t.Fatalf("rule stream: %v", types)
	}
}

func TestAlertFiresAndResolvesWithSignedWebhook(t *testing.T) {
	t.Parallel()
	h, srv := newHook(2) // two 503s before it accepts: exercises the retries
	defer srv.Close()
	e := newEnv(t, opts{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if r := e.do("PUT", "/metrics/alerts", "acme", "", map[string]any{"id": "busy", "name": "Busy", "metric": "requests",
		"comparator": "gte", "threshold": 3, "period": "1h", "webhookUrl": srv.URL + "/hook"}); r.status != 200 {
		t.Fatalf("put: %s", r.raw)
	}
	// The same rule id in beta: never fires, since beta has no traffic.
	if r := e.do("PUT", "/metrics/alerts", "beta", "", map[string]any{"id": "busy", "name": "Busy", "metric": "requests",
		"comparator": "gte", "threshold": 3, "period": "1h", "webhookUrl": srv.URL + "/hook"}); r.status != 200 {
		t.Fatalf("put beta: %s", r.raw)
	}
	for i := 0; i < 3; i++ {
		e.turn(acme, "s1", "openai:gpt-4o", 1, 1, 0, 0)
	}
	e.sync()
	if err := e.mod.EvaluateAlerts(ctx); err != nil {
		t.Fatal(err)
	}
	e.sync() // the alert-webhooks processor has handled AlertFired
	<-h.arrived
	// The notice's outcome is recorded after it: AlertDelivered, shown as the rule's lastDelivery.
	if types := e.ruleEvents(acme, "busy"); len(types) != 3 || types[1] != obsevents.TypeAlertFired || types[2] != obsevents.TypeAlertDelivered {
		t.Fatalf("acme rule stream: %v", types)
	}
	e.sync()
	if types := e.ruleEvents(beta, "busy"); len(types) != 1 {
		t.Fatalf("beta rule stream: %v", types)
	}
	list := e.get("/metrics/alerts", "acme").body["alerts"].([]any)
	if list[0].(map[string]any)["firing"] != true {
		t.Fatalf("not firing: %v", list)
	}
	if ld, _ := list[0].(map[string]any)["lastDelivery"].(map[string]any); ld["delivered"] != true || ld["state"] != "firing" {
		t.Fatalf("lastDelivery: %v", list[0])
	}
	// Evaluating again while still firing records nothing new.
	e.sync()
	if err := e.mod.EvaluateAlerts(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(e.ruleEvents(acme, "busy")); n != 3 {
		t.Fatalf("re-fired: %d events", n)
	}

	h.mu.Lock()
	if h.attempts != 3 || len(h.got) != 1 || !h.signedOK[0] {
		t.Fatalf("webhook attempts %d deliveries %d signed %v", h.attempts, len(h.got), h.signedOK)
	}
	d := h.got[0]
	if d.body["state"] != "firing" || d.body["tenant"] != "acme" || d.body["value"] != 3.0 || d.header.Get("x-crispy-event") != "alert.firing" {
		t.Fatalf("notice: %v %v", d.body, d.header)
	}
	// The notice names the recorded transition, so a receiver can drop a redelivery.
	fired, _ := e.store.ReadStream(context.Background(), tenant.MustStream(acme, "alert-rule", "busy"), 1, 1)
	if d.body["id"] != fired[0].ID || d.header.Get("x-crispy-delivery") != fired[0].ID {
		t.Fatalf("notice id %v / header %q, want the AlertFired event id %s", d.body["id"], d.header.Get("x-crispy-delivery"), fired[0].ID)
	}
	h.mu.Unlock()

	// An hour later the window is empty: the rule resolves, driven by Run's ticks. The process
	// restarts first: rules, their firing state and the processor resume from their checkpoints
	// (the firing notice is not sent again).
	if err := e.stop(); err != nil {
		t.Fatal(err)
	}
	ticks := make(chan time.Time)
	e2 := newEnv(t, opts{store: e.store, clk: e.clk, dir: e.dir, deps: func(d *observability.Deps) { d.AlertTicks = ticks }})
	done := make(chan error)
	go func() { done <- e2.mod.Run(ctx) }()
	e.clk.Advance(2 * time.Hour)
	ticks <- e.clk.Now()
	<-h.arrived
	e2.sync()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	types := e.ruleEvents(acme, "busy")
	if len(types) < 4 || types[3] != obsevents.TypeAlertResolved {
		t.Fatalf("after resolve: %v", types)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.got) != 2 || h.got[1].body["state"] != "resolved" || !h.signedOK[1] {
		t.Fatalf("resolve notice: %+v", h.got)
	}
	evs, _ := e.store.ReadStream(context.Background(), tenant.MustStream(acme, "alert-rule", "busy"), 3, 0)
	var res obsevents.AlertResolved
	if err := evs[0].Decode(&res); err != nil || res.Value != 0 || !res.At.Equal(e.clk.Now()) {
		t.Fatalf("resolved event: %+v %v", res, err)
	}
}

// A signature made with another secret does not verify: the receiver's check is meaningful.
func TestWebhookSignatureDependsOnSecret(t *testing.T) {
	t.Parallel()
	h, srv := newHook(0)
	defer srv.Close()
	e := newEnv(t, opts{deps: func(d *observability.Deps) { d.Config.WebhookSecret = "other" }})
	e.do("PUT", "/metrics/alerts", "acme", "", map[string]any{"id": "r", "name": "any", "metric": "requests", "comparator": "gte", "threshold": 0, "webhookUrl": srv.URL})
	e.sync()
	if err := e.mod.EvaluateAlerts(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.sync()
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.signedOK) != 1 || h.signedOK[0] {
		t.Fatalf("signature with the wrong secret verified: %v", h.signedOK)
	}
}

// By default a webhook cannot point at an internal address (the httptest server is on 127.0.0.1):
// the rule is refused at save with 422 naming the field and the flag that allows it (before: it was
// saved, and every notice was refused at connect time, silently). The connect-time check stays
// (DNS may change after the save): TestWebhookClientRefusesInternalAddresses.
func TestWebhookToInternalAddressRefused(t *testing.T) {
	t.Parallel()
	h, srv := newHook(0)
	defer srv.Close()
	e := newEnv(t, opts{deps: func(d *observability.Deps) { d.Config.WebhookAllowInternal = false }})
	for _, u := range []string{srv.URL, "http://localhost:9/hook", "http://10.0.0.7/hook", "http://[::1]:8080/x", "http://169.254.169.254/latest"} {
		r := e.do("PUT", "/metrics/alerts", "acme", "", map[string]any{"id": "r", "name": "any", "metric": "requests", "comparator": "gte", "threshold": 0, "webhookUrl": u})
		if r.status != 422 || !strings.Contains(r.raw, "body.webhookUrl") || !strings.Contains(r.raw, "CRISPY_WEBHOOK_ALLOW_INTERNAL") {
			t.Fatalf("PUT with webhookUrl %s: %d %s, want 422 naming body.webhookUrl and the flag", u, r.status, r.raw)
		}
	}
	if r := e.do("PUT", "/metrics/alerts", "acme", "", map[string]any{"id": "r", "name": "any", "metric": "requests", "comparator": "gte", "threshold": 0, "webhookUrl": "https://203.0.113.9/hook"}); r.status != 200 {
		t.Fatalf("PUT with a public address: %d %s", r.status, r.raw)
	}
	e.sync()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.attempts != 0 {
		t.Fatalf("internal webhook reached %d times", h.attempts)
	}
}

// The webhook client refuses internal addresses at connect time too.
func TestWebhookClientRefusesInternalAddresses(t *testing.T) {
	t.Parallel()
	h, srv := newHook(0)
	defer srv.Close()
	_, err := observability.NewWebhookClient(time.Second, false).Post(srv.URL, "application/json", strings.NewReader("{}"))
	if err == nil || !strings.Contains(err.Error(), "internal") {
		t.Fatalf("POST to %s: %v, want the internal address refused", srv.URL, err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.attempts != 0 {
		t.Fatalf("reached %d times", h.attempts)
	}
}

// No webhook is ever signed with an empty key: without a secret a rule with a webhookUrl is
// refused at save (before: it was saved and its notices were signed with an empty key), and a rule
// without one is accepted.
func TestWebhookWithoutSecretRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, opts{deps: func(d *observability.Deps) { d.Config.WebhookSecret = "" }})
	r := e.do("PUT", "/metrics/alerts", "acme", "", map[string]any{"id": "r", "name": "any", "metric": "requests", "comparator": "gte", "threshold": 0, "webhookUrl": "https://203.0.113.9/hook"})
	if r.status != 422 || !strings.Contains(r.raw, "CRISPY_WEBHOOK_SECRET") {
		t.Fatalf("PUT with a webhook and no secret: %d %s, want 422 naming CRISPY_WEBHOOK_SECRET", r.status, r.raw)
	}
	if r := e.do("PUT", "/metrics/alerts", "acme", "", map[string]any{"id": "r", "name": "any", "metric": "requests", "comparator": "gte", "threshold": 0}); r.status != 200 {
		t.Fatalf("PUT without a webhook: %d %s", r.status, r.raw)
	}
}

// A notice that cannot be delivered is an event of the rule's stream (AlertDeliveryFailed), shown
// by GET /metrics/alerts as the rule's lastDelivery with its error. Before it was a log line only.
func TestAlertDeliveryFailureIsVisible(t *testing.T) {
	t.Parallel()
	_, srv := newHook(0)
	url := srv.URL + "/hook"
	srv.Close() // nothing listens there any more
	e := newEnv(t, opts{})
	if r := e.do("PUT", "/metrics/alerts", "acme", "", map[string]any{"id": "busy", "name": "Busy", "metric": "requests",
		"comparator": "gte", "threshold": 1, "period": "1h", "webhookUrl": url}); r.status != 200 {
		t.Fatalf("put: %s", r.raw)
	}
	e.turn(acme, "s1", "openai:gpt-4o", 1, 1, 0, 0)
	e.sync()
	if err := e.mod.EvaluateAlerts(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.sync() // the processor tried, failed, and recorded it
	e.sync() // the rules read model applied the record
	if types := e.ruleEvents(acme, "busy"); len(types) != 3 || types[2] != obsevents.TypeAlertDeliveryFailed {
		t.Fatalf("rule stream: %v", types)
	}
	list := e.get("/metrics/alerts", "acme").body["alerts"].([]any)
	ld, _ := list[0].(map[string]any)["lastDelivery"].(map[string]any)
	if ld["delivered"] != false || ld["state"] != "firing" || ld["error"] == "" || ld["error"] == nil {
		t.Fatalf("lastDelivery %v, want the failure and its error", list[0])
	}
	// Another tenant sees none of it.
	if got := e.get("/metrics/alerts", "beta").body["alerts"].([]any); len(got) != 0 {
		t.Fatalf("beta sees %v", got)
	}
}

// A rule with a for duration fires only once its condition has held that long, evaluation after
// evaluation; a single evaluation over the threshold is not enough.
func TestAlertForDuration(t *testing.T) {
	t.Parallel()
	e := newEnv(t, opts{})
	if r := e.do("PUT", "/metrics/alerts", "acme", "", map[string]any{"id": "busy", "name": "Busy", "metric": "requests",
		"comparator": "gte", "threshold": 1, "period": "1h", "for": "10m"}); r.status != 200 || r.body["for"] != "10m" {
		t.Fatalf("put: %d %s", r.status, r.raw)
	}
	wantProblem(t, e.do("PUT", "/metrics/alerts", "acme", "", map[string]any{"id": "bad", "name": "Bad", "metric": "requests",
		"comparator": "gte", "threshold": 1, "for": "forever"}), 400, "invalid_alert_rule")
	e.turn(acme, "s1", "openai:gpt-4o", 1, 1, 0, 0)
	e.sync()
	firing := func() bool {
		e.sync()
		return e.get("/metrics/alerts", "acme").body["alerts"].([]any)[0].(map[string]any)["firing"] == true
	}
	for _, step := range []time.Duration{0, 5 * time.Minute, 4 * time.Minute} {
		e.clk.Advance(step)
		if err := e.mod.EvaluateAlerts(context.Background()); err != nil {
			t.Fatal(err)
		}
		if firing() {
			t.Fatalf("fired %s into a 10m for duration", step)
		}
	}
	e.clk.Advance(2 * time.Minute) // 11 minutes over the threshold
	if err := e.mod.EvaluateAlerts(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !firing() {
		t.Fatal("not firing after the condition held for 11 minutes")
	}
}
