package observability_test

import (
	"context"
	"sync"
	"testing"
	"time"

	obsevents "github.com/crispy-enigma/crispy/modules/observability/events"
	"github.com/crispy-enigma/crispy/platform/bus"
	"github.com/crispy-enigma/crispy/platform/bus/bustest"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// natsTransport puts a test's buses on one NATS JetStream stream of their own (deleted after the
// test): replicas of one deployment.
func natsTransport(t *testing.T) func(*bus.Config) {
	url, prefix := bustest.NATS(t, "obs")
	return func(c *bus.Config) { c.Transport, c.Prefix, c.AckWait = url, prefix, 30*time.Second }
}

// Two replicas on one store and one NATS JetStream evaluate the same rule at the same moment: the
// transition is recorded once (the rule stream's expected revision) and its webhook is sent once
// (the alert-webhooks processor is one durable consumer for the deployment), named by the event id.
// The same rule id in another tenant, with no traffic, does not fire.
func TestIntegrationAlertFiresOnceAcrossTwoReplicasOnNATS(t *testing.T) {
	t.Parallel()
	transport := natsTransport(t)
	h, srv := newHook(0)
	defer srv.Close()
	store := eventstoretest.NewMemory()
	clk := &clock{now: epoch}
	one := newEnv(t, opts{store: store, clk: clk, cfg: transport})
	two := newEnv(t, opts{store: store, clk: clk, cfg: transport})
	rule := map[string]any{"id": "busy", "name": "Busy", "metric": "requests", "comparator": "gte", "threshold": 3, "period": "1h",
		"webhookUrl": srv.URL + "/hook"}
	if r := one.do("PUT", "/metrics/alerts", "acme", "", rule); r.status != 200 {
		t.Fatalf("put: %s", r.raw)
	}
	if r := two.do("PUT", "/metrics/alerts", "beta", "", rule); r.status != 200 {
		t.Fatalf("put beta: %s", r.raw)
	}
	for range 3 {
		one.turn(acme, "s1", "openai:gpt-4o", 1, 1, 0, 0)
	}
	one.sync()
	two.sync()

	var wg sync.WaitGroup
	for _, e := range []*env{one, two} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := e.mod.EvaluateAlerts(context.Background()); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if types := one.ruleEvents(acme, "busy"); len(types) != 2 || types[1] != obsevents.TypeAlertFired {
		t.Fatalf("acme's rule stream: %v, want one AlertFired", types)
	}
	if types := one.ruleEvents(beta, "busy"); len(types) != 1 {
		t.Fatalf("beta's rule stream: %v", types)
	}
	// Each replica's read model shows the rule firing for acme only.
	for i, e := range []*env{one, two} {
		if got := e.get("/metrics/alerts", "acme").body["alerts"].([]any); len(got) != 1 || got[0].(map[string]any)["firing"] != true {
			t.Errorf("replica %d, acme: %v", i+1, got)
		}
		if got := e.get("/metrics/alerts", "beta").body["alerts"].([]any); len(got) != 1 || got[0].(map[string]any)["firing"] != false {
			t.Errorf("replica %d, beta: %v", i+1, got)
		}
	}
	select {
	case <-h.arrived:
	case <-time.After(time.Minute): // bounds a broken test only
		t.Fatal("no webhook")
	}
	// Stopping the replicas waits for the handlers in flight: whatever was to be sent has been.
	for _, e := range []*env{one, two} {
		if err := e.stop(); err != nil {
			t.Fatal(err)
		}
	}
	fired, err := store.ReadStream(context.Background(), tenant.MustStream(acme, "alert-rule", "busy"), 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.got) != 1 || h.attempts != 1 {
		t.Fatalf("%d notices (%d attempts) for one firing, want 1", len(h.got), h.attempts)
	}
	if d := h.got[0]; d.body["tenant"] != "acme" || d.body["state"] != "firing" || d.header.Get("x-crispy-delivery") != fired[0].ID || !h.signedOK[0] {
		t.Fatalf("notice %v %v, want acme firing with delivery id %s", d.body, d.header, fired[0].ID)
	}
}
