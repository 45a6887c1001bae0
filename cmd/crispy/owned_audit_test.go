package main

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A session started with a user id is visible to that user and to the tenant's keys with the audit
// scope (issue 14 item 6), through the whole server and its scope middleware: another user on a
// chat-only key gets 404 and does not see it listed; the same user on an audit key reads its history
// and sees it listed, but cannot act on it (a turn, a deletion: 404); another tenant's audit key sees
// nothing.
func TestOwnedSessionsAreVisibleToAuditKeys(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	const chatKey, auditKey, betaAudit = "ce_owned_chat_key_of_acme_0123456789", "ce_owned_audit_key_of_acme_012345678", "ce_owned_audit_key_of_beta_012345678"
	sum := func(k string) string { s := sha256.Sum256([]byte(k)); return hex.EncodeToString(s[:]) }
	tenants := filepath.Join(data, "tenants.yaml")
	yaml := "tenants:\n  - id: acme\n    apiKeys:\n" +
		"      - {hash: \"sha256:" + sum(chatKey) + "\", scopes: [chat]}\n" +
		"      - {hash: \"sha256:" + sum(auditKey) + "\", scopes: [chat, audit]}\n" +
		"  - id: beta\n    apiKeys:\n      - {hash: \"sha256:" + sum(betaAudit) + "\", scopes: [chat, audit]}\n"
	if err := os.WriteFile(tenants, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := embeddedConfig(data)
	cfg.Tenants = tenants
	srv, _ := serveApp(t, cfg, buildOptions{})
	send := func(tid, key, user, method, path string, body any) (int, string) {
		t.Helper()
		code, raw := sendAs(t, srv, tid, key, user, "", method, path, body)
		return code, string(raw)
	}
	const s = "0b7e3a52-9c1d-4e8f-a6b2-3c4d5e6f7a8b"
	if code, body := send("acme", chatKey, "ann", "POST", "/chat", map[string]any{"sessionId": s, "message": "ann's question", "stream": false}); code != 200 {
		t.Fatalf("ann's turn: %d %s", code, body)
	}
	listed := func(key, user, tid string) bool {
		t.Helper()
		var found bool
		waitUntil(t, "the session list answers", func() bool {
			code, body := send(tid, key, user, "GET", "/sessions", nil)
			found = strings.Contains(body, s)
			return code == 200
		})
		return found
	}
	waitUntil(t, "ann sees her session listed", func() bool { return listed(chatKey, "ann", "acme") })

	if code, body := send("acme", chatKey, "bob", "GET", "/chat/"+s+"/history", nil); code != 404 {
		t.Fatalf("bob on a chat key reading ann's session: %d %s, want 404", code, body)
	}
	if listed(chatKey, "bob", "acme") {
		t.Fatal("bob on a chat key sees ann's session listed")
	}
	if code, body := send("acme", auditKey, "bob", "GET", "/chat/"+s+"/history", nil); code != 200 || !strings.Contains(body, "ann's question") {
		t.Fatalf("bob on an audit key reading ann's session: %d %s, want 200 with her message", code, body)
	}
	if !listed(auditKey, "bob", "acme") {
		t.Fatal("an audit key does not see ann's session listed")
	}
	// Reading, not acting: the audit key's user cannot continue or delete another user's session.
	if code, body := send("acme", auditKey, "bob", "POST", "/chat", map[string]any{"sessionId": s, "message": "bob's", "stream": false}); code != 404 {
		t.Fatalf("bob on an audit key taking a turn in ann's session: %d %s, want 404", code, body)
	}
	if code, body := send("acme", auditKey, "bob", "DELETE", "/chat/"+s, nil); code != 404 {
		t.Fatalf("bob on an audit key deleting ann's session: %d %s, want 404", code, body)
	}
	// Another tenant's audit key sees nothing of acme's.
	if code, body := send("beta", betaAudit, "ann", "GET", "/chat/"+s+"/history", nil); code != 404 {
		t.Fatalf("beta's audit key reading acme's session: %d %s, want 404", code, body)
	}
	if listed(betaAudit, "ann", "beta") {
		t.Fatal("beta's audit key sees acme's session listed")
	}
}
