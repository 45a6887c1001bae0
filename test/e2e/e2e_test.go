package e2e

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/uuid"

	crispy "github.com/crispy-enigma/crispy/openapi/clients/go"
)

// as returns a client that speaks for tenant (and key, when given), as a tenant's application would.
func as(t *testing.T, baseURL, tenantID, key string) *crispy.ClientWithResponses {
	t.Helper()
	c, err := crispy.NewClientWithResponses(baseURL, crispy.WithRequestEditorFn(func(_ context.Context, r *http.Request) error {
		if tenantID != "" {
			r.Header.Set("x-tenant-id", tenantID)
		}
		if key != "" {
			r.Header.Set("x-api-key", key)
		}
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func ptr[T any](v T) *T { return &v }

// tenantsFile writes a tenants file with two keyed tenants and returns its path.
func tenantsFile(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "tenants.yaml")
	// Keys: "ce_acme_key" and "ce_beta_key"; the file holds only their SHA-256. Each is its tenant's
	// application key and also reads the tenant's audit trail (the isolation, shutdown and kill -9
	// tests do), so it has every scope: a bare hash gets all but audit (issue 14 item 3).
	yaml := `tenants:
  - id: acme
    apiKeys: [{hash: "sha256:` + sha("ce_acme_key") + `", scopes: [chat, search, ingest, tools, audit, usage]}]
    features: {rag: false}
  - id: beta
    apiKeys: [{hash: "sha256:` + sha("ce_beta_key") + `", scopes: [chat, search, ingest, tools, audit, usage]}]
`
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestDemoTenantChatHistoryAndRestart(t *testing.T) {
	data := t.TempDir()
	srv := startServer(t, data)
	if _, ok := srv.Logs.Find("demo", "no tenants file"); !ok {
		t.Fatalf("the demo tenant was not announced in the log:\n%s", srv.Logs)
	}
	c := as(t, srv.BaseURL, "demo", "")

	hz, err := c.GetHealthzWithResponse(ctx(t))
	if err != nil || hz.StatusCode() != 200 {
		t.Fatalf("healthz: %v %v", err, hz.Status())
	}
	h, err := c.GetHealthWithResponse(ctx(t), &crispy.GetHealthParams{})
	if err != nil || h.JSON200 == nil || h.JSON200.Tenant != "demo" {
		t.Fatalf("health: %v %s", err, h.Body)
	}

	sid := uuid.New()
	resp, err := c.SendChatMessageWithResponse(ctx(t), &crispy.SendChatMessageParams{},
		crispy.SendChatMessageInput{SessionId: sid, Message: "Hello from the end-to-end test", Stream: ptr(false)})
	if err != nil || resp.JSON200 == nil {
		t.Fatalf("chat: %v %s", err, resp.Body)
	}
	if resp.JSON200.Model == "" || resp.JSON200.Response == "" || resp.JSON200.RequestId == "" {
		t.Fatalf("chat answer = %+v", resp.JSON200)
	}
	if resp.HTTPResponse.Header.Get("x-request-id") != resp.JSON200.RequestId {
		t.Fatalf("x-request-id %q, body requestId %q", resp.HTTPResponse.Header.Get("x-request-id"), resp.JSON200.RequestId)
	}

	// A clean stop (SIGTERM) exits 0, and a new process on the same data folder has the history.
	if err := srv.Stop(); err != nil {
		t.Fatalf("stop: %v\n%s", err, srv.Logs)
	}
	if _, ok := srv.Logs.Find("stopped cleanly"); !ok {
		t.Fatalf("no clean stop in the log:\n%s", srv.Logs)
	}
	srv2 := startServer(t, data)
	c2 := as(t, srv2.BaseURL, "demo", "")
	hist, err := c2.GetChatHistoryWithResponse(ctx(t), sid.String(), &crispy.GetChatHistoryParams{})
	if err != nil || hist.JSON200 == nil || hist.JSON200.Messages == nil {
		t.Fatalf("history after restart: %v %s", err, hist.Body)
	}
	msgs := hist.JSON200.Messages
	if len(msgs) != 2 || msgs[0].Role != "user" || msgs[0].Content != "Hello from the end-to-end test" || msgs[1].Role != "assistant" {
		t.Fatalf("history after restart = %+v", msgs)
	}
}

func TestAcknowledgedTurnSurvivesKill9(t *testing.T) {
	data := t.TempDir()
	srv := startServer(t, data)
	c := as(t, srv.BaseURL, "demo", "")
	sid := uuid.New()
	resp, err := c.SendChatMessageWithResponse(ctx(t), &crispy.SendChatMessageParams{},
		crispy.SendChatMessageInput{SessionId: sid, Message: "remember me", Stream: ptr(false)})
	if err != nil || resp.StatusCode() != 200 {
		t.Fatalf("chat: %v %s", err, resp.Body)
	}
	srv.Kill()
	srv2 := startServer(t, data)
	hist, err := as(t, srv2.BaseURL, "demo", "").GetChatHistoryWithResponse(ctx(t), sid.String(), &crispy.GetChatHistoryParams{})
	if err != nil || hist.JSON200 == nil || len(hist.JSON200.Messages) != 2 {
		t.Fatalf("history after kill -9: %v %s", err, hist.Body)
	}
}

func TestTenantIsolationThroughTheGeneratedClient(t *testing.T) {
	data := t.TempDir()
	srv := startServer(t, data, "--tenants", tenantsFile(t, t.TempDir()))
	acme := as(t, srv.BaseURL, "acme", "ce_acme_key")
	sid := uuid.New()
	resp, err := acme.SendChatMessageWithResponse(ctx(t), &crispy.SendChatMessageParams{},
		crispy.SendChatMessageInput{SessionId: sid, Message: "acme's secret plan", Stream: ptr(false)})
	if err != nil || resp.StatusCode() != 200 {
		t.Fatalf("acme chat: %v %s", err, resp.Body)
	}

	cases := []struct {
		name, tenant, key string
		status            int
		code              string
	}{
		{"no key", "acme", "", 401, "api_key_required"},
		{"wrong key", "acme", "ce_wrong", 401, "invalid_api_key"},
		{"beta's key for acme", "acme", "ce_beta_key", 401, "invalid_api_key"},
		{"unknown tenant", "gamma", "", 404, "tenant_not_found"},
	}
	for _, tc := range cases {
		h, err := as(t, srv.BaseURL, tc.tenant, tc.key).GetChatHistoryWithResponse(ctx(t), sid.String(), &crispy.GetChatHistoryParams{})
		if err != nil {
			t.Fatal(err)
		}
		p := problemOf(h.ApplicationproblemJSON401, h.ApplicationproblemJSON404)
		if h.StatusCode() != tc.status || p == nil || p.Code != tc.code || p.RequestId == "" {
			t.Errorf("%s: %d %s, want %d %s", tc.name, h.StatusCode(), h.Body, tc.status, tc.code)
		}
	}

	// Beta, properly authenticated, cannot see acme's session: 404, exactly like one that never existed.
	beta := as(t, srv.BaseURL, "beta", "ce_beta_key")
	h, err := beta.GetChatHistoryWithResponse(ctx(t), sid.String(), &crispy.GetChatHistoryParams{})
	if err != nil || h.StatusCode() != 404 {
		t.Fatalf("beta reading acme's session: %v %d %s", err, h.StatusCode(), h.Body)
	}
	if strings.Contains(string(h.Body), "secret") {
		t.Fatalf("beta saw acme's content: %s", h.Body)
	}
	ls, err := beta.ListSessionsWithResponse(ctx(t), &crispy.ListSessionsParams{})
	if err != nil || ls.JSON200 == nil {
		t.Fatalf("beta sessions: %v %s", err, ls.Body)
	}
	if len(ls.JSON200.Sessions) != 0 {
		t.Fatalf("beta lists sessions it does not own: %s", ls.Body)
	}
	// Beta's audit trail holds none of acme's events.
	ev, err := beta.ListAuditEventsWithResponse(ctx(t), &crispy.ListAuditEventsParams{})
	if err != nil || ev.StatusCode() != 200 {
		t.Fatalf("beta audit: %v %s", err, ev.Body)
	}
	if strings.Contains(string(ev.Body), "t-acme.") || strings.Contains(string(ev.Body), "secret") {
		t.Fatalf("beta's audit shows acme's events: %s", ev.Body)
	}
	// Acme's own audit verifies.
	v, err := acme.VerifyAuditWithResponse(ctx(t), &crispy.VerifyAuditParams{})
	if err != nil || v.JSON200 == nil || !v.JSON200.Ok || v.JSON200.EventsChecked < 3 {
		t.Fatalf("acme verify: %v %s", err, v.Body)
	}
}

func problemOf(ps ...*crispy.Problem) *crispy.Problem {
	for _, p := range ps {
		if p != nil {
			return p
		}
	}
	return nil
}

func TestToolsThroughTheGeneratedClient(t *testing.T) {
	srv := startServer(t, t.TempDir())
	c := as(t, srv.BaseURL, "demo", "")
	list, err := c.ListToolsWithResponse(ctx(t), &crispy.ListToolsParams{})
	if err != nil || list.JSON200 == nil {
		t.Fatalf("tools: %v %s", err, list.Body)
	}
	names := map[string]bool{}
	for _, tl := range list.JSON200.Tools {
		names[tl.Name] = true
	}
	for _, want := range []string{"summarize", "extract_entities", "classify_intent", "tag_chunk_docs", "ingest_docs"} {
		if !names[want] {
			t.Errorf("tool %s missing from %s", want, list.Body)
		}
	}
	text := "Write to ana@example.com before 2026-12-01."
	res, err := c.ExecuteToolWithResponse(ctx(t), &crispy.ExecuteToolParams{},
		crispy.ExecuteToolInput{ToolName: "extract_entities", Params: map[string]any{"text": text}})
	if err != nil || res.JSON200 == nil {
		t.Fatalf("execute: %v %s", err, res.Body)
	}
	if !strings.Contains(string(res.Body), "ana@example.com") {
		t.Fatalf("no email entity in %s", res.Body)
	}
	bad, err := c.ExecuteToolWithResponse(ctx(t), &crispy.ExecuteToolParams{},
		crispy.ExecuteToolInput{ToolName: "extract_entities", Params: map[string]any{"txt": 1}})
	if err != nil || bad.StatusCode() != 400 || !strings.Contains(string(bad.Body), "VALIDATION_FAILED") {
		t.Fatalf("invalid params: %v %d %s", err, bad.StatusCode(), bad.Body)
	}
}
