package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/embedded"
	"github.com/crispy-enigma/crispy/platform/tenant"

	"github.com/crispy-enigma/crispy/platform/erasuretest"
)

// TestAttributionActorIsTheKeyIDAndUserIsApart (issue 12 §6): through the whole server, a request
// made with an API key records the key's id (never the key) as the actor of its events and the
// x-user-id it asserted as their user; a keyless tenant's requests are "anonymous:<tenant>"; one
// tenant's key id is never the actor of another tenant's events; the audit view shows actor and
// user apart; and no file of the data folder holds either key.
func TestAttributionActorIsTheKeyIDAndUserIsApart(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	const keyA, keyB = "ce_attribution_key_of_acme_0123456789", "ce_attribution_key_of_beta_9876543210"
	sum := func(k string) string { s := sha256.Sum256([]byte(k)); return hex.EncodeToString(s[:]) }
	idA, idB := "key:"+sum(keyA)[:12], "key:"+sum(keyB)[:12]
	tenants := filepath.Join(data, "tenants.yaml")
	yaml := "tenants:\n  - id: acme\n    apiKeys: [{hash: \"sha256:" + sum(keyA) + "\", scopes: [chat, search, ingest, tools, audit, usage]}]\n  - id: beta\n    apiKeys: [{hash: \"sha256:" + sum(keyB) + "\", scopes: [chat, search, ingest, tools, audit, usage]}]\n  - id: open\n"
	if err := os.WriteFile(tenants, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := embeddedConfig(data)
	cfg.Tenants = tenants
	srv, stop := serveApp(t, cfg, buildOptions{})

	send := func(tid, key, user, reqID, method, path string, body any) (int, []byte) {
		t.Helper()
		return sendAs(t, srv, tid, key, user, reqID, method, path, body)
	}
	chat := func(tid, key, user, reqID string) {
		t.Helper()
		if st, raw := send(tid, key, user, reqID, "POST", "/chat", map[string]any{"sessionId": uuid.NewString(), "message": "hello", "stream": false}); st != 200 {
			t.Fatalf("chat as %s: %d %s", tid, st, raw)
		}
	}
	chat("acme", keyA, "alice", "req-acme-1")
	// A client naming a credential as its user stays a user: the actor is what authenticated.
	chat("acme", keyA, idB, "req-acme-2")
	chat("beta", keyB, "bob", "req-beta-1")
	chat("open", "", "carol", "req-open-1")
	if st, raw := send("acme", keyA, "alice", "req-acme-ingest", "POST", "/ingest", map[string]any{"docId": "d1", "text": "a text about attribution"}); st != 200 {
		t.Fatalf("ingest: %d %s", st, raw)
	}

	// The audit view shows actor and user as separate fields.
	st, raw := send("acme", keyA, "auditor", "req-acme-audit", "GET", "/audit/events?limit=1000", nil)
	if st != 200 {
		t.Fatalf("audit events: %d %s", st, raw)
	}
	var page struct {
		Events []struct {
			RequestID string `json:"requestId"`
			Actor     string `json:"actor"`
			User      string `json:"user"`
		} `json:"events"`
	}
	if err := json.Unmarshal(raw, &page); err != nil {
		t.Fatal(err)
	}
	shown := 0
	for _, e := range page.Events {
		if e.RequestID == "req-acme-1" {
			shown++
			if e.Actor != idA || e.User != "alice" {
				t.Errorf("audit view of a keyed request: actor %q user %q, want %q and alice", e.Actor, e.User, idA)
			}
		}
	}
	if shown == 0 {
		t.Fatalf("the audit view shows no event of req-acme-1: %s", raw)
	}
	stop()

	s, err := embedded.OpenReadOnly(filepath.Join(data, "events"), embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	want := map[string]struct{ actor, user string }{
		"req-acme-1": {idA, "alice"}, "req-acme-2": {idA, idB}, "req-acme-ingest": {idA, "alice"}, "req-acme-audit": {idA, "auditor"},
		"req-beta-1": {idB, "bob"}, "req-open-1": {"anonymous:open", "carol"},
	}
	seen := map[string]int{}
	for _, tid := range []string{"acme", "beta", "open"} {
		evs, err := s.ReadTenant(context.Background(), tenant.MustParse(tid), eventstore.Start, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			if w, ok := want[e.RequestID]; ok {
				seen[e.RequestID]++
				if e.Actor != w.actor || e.User != w.user {
					t.Errorf("%s event %s of %s: actor %q user %q, want %q and %q", tid, e.Type, e.RequestID, e.Actor, e.User, w.actor, w.user)
				}
			}
			// Another tenant's credential never acts here.
			if (tid != "acme" && e.Actor == idA) || (tid != "beta" && e.Actor == idB) {
				t.Errorf("%s event %s has another tenant's key id %q as its actor", tid, e.Type, e.Actor)
			}
			if strings.HasPrefix(e.Actor, "user:") || e.Actor == "anonymous" {
				t.Errorf("%s event %s has the old unauthenticated actor %q", tid, e.Type, e.Actor)
			}
		}
	}
	for id := range want {
		if seen[id] == 0 {
			t.Errorf("no event recorded for %s", id)
		}
	}
	// No file of the data folder holds a key.
	for _, k := range []string{keyA, keyB} {
		for _, p := range erasuretest.FilesHolding(t, data, []byte(k)) {
			t.Errorf("%s holds an API key", p)
		}
	}
}
