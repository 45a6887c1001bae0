package tenancy_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/modules/tenancy"

	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
)

// PATCH /admin/tenants/{tenantId}/keys/{keyId} changes a key's name, scopes, expiry, limits and
// budget (never its secret) as an event: the key keeps authenticating with the same secret, with
// the new scopes, on this replica at once and on another replica (within a second: pollEvery 200 ms
// plus the bus's delivery); null takes an
// expiry, limits or budget away.
func TestAdminAPIEditsAKey(t *testing.T) {
	store := eventstoretest.NewMemory()
	a := newAdminServer(t, store, "")
	b := newAdminServer(t, store, "")
	// Limits high enough for the polling below (a probe each 20 ms).
	want(t, a.do(t, call{method: http.MethodPost, path: "/admin/tenants", admin: adminKey, body: map[string]any{"id": "acme",
		"rateLimit": map[string]any{"perMinute": 100000, "burst": 10000}}}), 201, "")
	secret, id := a.newKey(t, "acme", map[string]any{"name": "ci", "scopes": []string{"chat"}, "budget": map[string]any{"dailyTokens": 100}})
	want(t, a.do(t, call{path: "/search/probe", key: secret}), 403, "scope_required")
	eventually(t, "replica b admits the key", func() bool { return b.do(t, call{path: "/chat/probe", key: secret}).status == 200 })

	exp := a.clock.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	r := a.do(t, call{method: http.MethodPatch, path: "/admin/tenants/acme/keys/" + id, admin: adminKey,
		body: map[string]any{"name": "ci-2", "scopes": []string{"chat", "search"}, "expiresAt": exp, "limits": map[string]any{"perMinute": 50000},
			"budget": map[string]any{"dailyUsd": 2.5}}})
	want(t, r, 200, "")
	if r.body["name"] != "ci-2" || len(r.body["scopes"].([]any)) != 2 || r.body["expiresAt"] == nil || r.body["secret"] != nil {
		t.Fatalf("edited key = %v", r.body)
	}
	if bud := r.body["budget"].(map[string]any); bud["dailyUsd"] != 2.5 || bud["dailyTokens"] != nil {
		t.Fatalf("budget = %v, want replaced whole", bud)
	}
	// The same secret, now with search, here at once and on replica b within a second.
	want(t, a.do(t, call{path: "/search/probe", key: secret}), 200, "")
	start := time.Now()
	eventually(t, "replica b applies the edit", func() bool { return b.do(t, call{path: "/search/probe", key: secret}).status == 200 })
	t.Logf("edit applied by the other replica after %s", time.Since(start).Round(time.Millisecond)) // a log, not an assertion: timing is the machine's
	// Fields left out stay; null takes the expiry and the budget away.
	r = a.do(t, call{method: http.MethodPatch, path: "/admin/tenants/acme/keys/" + id, admin: adminKey, body: `{"expiresAt": null, "budget": null}`})
	want(t, r, 200, "")
	if r.body["name"] != "ci-2" || r.body["expiresAt"] != nil || r.body["budget"] != nil || r.body["limits"] == nil {
		t.Fatalf("after nulls = %v", r.body)
	}
	lr := a.do(t, call{path: "/admin/tenants/acme/keys", admin: adminKey})
	if k := lr.body["keys"].([]any)[0].(map[string]any); k["name"] != "ci-2" || k["budget"] != nil {
		t.Fatalf("key list = %v", k)
	}
}

// Bad edits are problem JSON naming the field; an unknown tenant or key is 404; a revoked key 409;
// and tenant B's path never reaches tenant A's key (tenant isolation).
func TestAdminAPIKeyEditRefusals(t *testing.T) {
	s := newAdminServer(t, nil, "")
	for _, id := range []string{"acme", "beta"} {
		want(t, s.do(t, call{method: http.MethodPost, path: "/admin/tenants", admin: adminKey, body: map[string]any{"id": id}}), 201, "")
	}
	secret, id := s.newKey(t, "acme", map[string]any{"name": "ci", "scopes": []string{"chat"}})
	path := "/admin/tenants/acme/keys/" + id
	for _, c := range []struct {
		body  any
		field string
	}{
		{`[]`, "body"},
		{map[string]any{"scopes": []string{"root"}}, "body.scopes"},
		{map[string]any{"expiresAt": "2001-01-01T00:00:00Z"}, "body.expiresAt"},
		{map[string]any{"expiresAt": "tomorrow"}, "body.expiresAt"},
		{map[string]any{"limits": map[string]any{"perMinute": -1}}, "body.limits"},
		{map[string]any{"limits": map[string]any{"perHour": 1}}, "body.limits"},
		{map[string]any{"budget": map[string]any{"dailyUsd": -1}}, "body.budget"},
		{map[string]any{"secret": "ce_x"}, "body.secret"},
		{map[string]any{"user": "u-1"}, "body.user"},
		{map[string]any{"color": "red"}, "body.color"},
	} {
		r := s.do(t, call{method: http.MethodPatch, path: path, admin: adminKey, body: c.body})
		if r.status != 422 && r.status != 400 {
			t.Fatalf("%v: %d %v, want 422 (or 400 for a body that is no object)", c.body, r.status, r.body)
		}
		errs, _ := r.body["errors"].([]any)
		if len(errs) == 0 || errs[0].(map[string]any)["location"] != c.field {
			t.Fatalf("%v: %v, want the field %s", c.body, r.body, c.field)
		}
	}
	edit := map[string]any{"scopes": []string{"chat", "search", "audit"}}
	want(t, s.do(t, call{method: http.MethodPatch, path: path, body: edit}), 401, "admin_key_required")
	want(t, s.do(t, call{method: http.MethodPatch, path: path, admin: secret, body: edit}), 401, "invalid_admin_key")
	want(t, s.do(t, call{method: http.MethodPatch, path: "/admin/tenants/nobody/keys/" + id, admin: adminKey, body: edit}), 404, "tenant_not_found")
	want(t, s.do(t, call{method: http.MethodPatch, path: "/admin/tenants/acme/keys/key:000000000000", admin: adminKey, body: edit}), 404, "key_not_found")
	// Tenant isolation: acme's key edited through beta's path is not found, and stays as it was.
	want(t, s.do(t, call{method: http.MethodPatch, path: "/admin/tenants/beta/keys/" + id, admin: adminKey, body: edit}), 404, "key_not_found")
	want(t, s.do(t, call{path: "/search/probe", key: secret}), 403, "scope_required")
	want(t, s.do(t, call{path: "/audit/probe", key: secret}), 403, "scope_required")
	want(t, s.do(t, call{method: http.MethodPost, path: path + "/revoke", admin: adminKey}), 200, "")
	want(t, s.do(t, call{method: http.MethodPatch, path: path, admin: adminKey, body: edit}), 409, "key_revoked")
}

// A key of the tenants file may be given an expiry, limits and a budget through PATCH, which its
// file's later changes of name or scopes keep; its name and scopes are the file's (409
// key_from_file: the next sync would put them back).
func TestAdminAPIEditsAKeyOfTheTenantsFile(t *testing.T) {
	file := writeFile(t, "tenants:\n  - id: acme\n    apiKeys:\n      - {hash: \""+tenancy.HashAPIKey(keyA)+"\", name: ops, scopes: [chat]}\n")
	s := newAdminServer(t, nil, file)
	id := "key:" + strings.TrimPrefix(tenancy.HashAPIKey(keyA), "sha256:")[:12]
	path := "/admin/tenants/acme/keys/" + id
	want(t, s.do(t, call{method: http.MethodPatch, path: path, admin: adminKey, body: map[string]any{"scopes": []string{"chat", "search"}}}), 409, "key_from_file")
	want(t, s.do(t, call{method: http.MethodPatch, path: path, admin: adminKey, body: map[string]any{"name": "other"}}), 409, "key_from_file")
	r := s.do(t, call{method: http.MethodPatch, path: path, admin: adminKey, body: map[string]any{"name": "ops", "budget": map[string]any{"dailyUsd": 3}}})
	want(t, r, 200, "")
	if err := writeFileAt(file, "tenants:\n  - id: acme\n    apiKeys:\n      - {hash: \""+tenancy.HashAPIKey(keyA)+"\", name: ops-2, scopes: [chat, search]}\n"); err != nil {
		t.Fatal(err)
	}
	if err := s.mod.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	want(t, s.do(t, call{path: "/search/probe", key: keyA}), 200, "")
	r = s.do(t, call{path: "/admin/tenants/acme/keys", admin: adminKey})
	k := r.body["keys"].([]any)[0].(map[string]any)
	if k["name"] != "ops-2" || k["budget"] == nil || k["budget"].(map[string]any)["dailyUsd"] != 3.0 {
		t.Fatalf("after the file's change: %v, want its name and the budget set through the API", k)
	}
}
