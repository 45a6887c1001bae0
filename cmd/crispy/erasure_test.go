package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/platform/erasuretest"
)

// waitUntil polls cond (the read models catch up asynchronously) for at most a minute.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("never happened: %s", what)
		}
	}
}

// The whole server on embedded defaults: a chat session's text (question, answer, title) is in no
// file of the data folder after DELETE /chat/{id} (event log and its index, the key store, every
// read model, the vector index, checkpoints), the deletion is recorded, the events stay, and
// crispy verify still succeeds over them; crispy replay shows them as erased.
func TestDeletedSessionIsInNoFileAndTheStoreStillVerifies(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	srv, stop := startApp(t, data, nil)
	secret := erasuretest.Marker(t, "erasure-marker-")
	const s = "5f0e2d4c-1b3a-4e6f-8a9b-0c1d2e3f4a5b"
	if r := call(t, srv, "POST", "/chat", map[string]any{"sessionId": s, "message": secret + " is the code", "stream": false}); r.status != 200 {
		t.Fatalf("chat: %d %s", r.status, r.raw)
	}
	waitUntil(t, "the session listed with its title", func() bool { return strings.Contains(call(t, srv, "GET", "/sessions", nil).raw, secret) })
	if h := call(t, srv, "GET", "/chat/"+s+"/history", nil); !strings.Contains(h.raw, secret) {
		t.Fatalf("history before the deletion: %s", h.raw)
	}
	if r := call(t, srv, "DELETE", "/chat/"+s, nil); r.status != 200 {
		t.Fatalf("delete: %d %s", r.status, r.raw)
	}
	waitUntil(t, "the session unlisted", func() bool { return !strings.Contains(call(t, srv, "GET", "/sessions", nil).raw, s) })
	stop()

	if hits := erasuretest.FilesHolding(t, data, []byte(secret)); len(hits) > 0 {
		t.Fatalf("the deleted session's text is still in %v", hits)
	}
	if hits := erasuretest.FilesHolding(t, data, []byte(s)); len(hits) == 0 {
		t.Fatal("the session id is in no file: the grep reads nothing (the check above could not fail)")
	}

	var out, errb bytes.Buffer
	env := func(string) (string, bool) { return "", false }
	ctx := context.Background()
	if err := run(ctx, []string{"verify", "--tenant", "demo", "--data-dir", data}, stdio{out: &out, err: &errb}, env); err != nil {
		t.Fatalf("verify after the erasure: %v\n%s%s", err, out.String(), errb.String())
	}
	if !strings.HasPrefix(out.String(), "ok: ") {
		t.Fatalf("verify: %s", out.String())
	}
	out.Reset()
	if err := run(ctx, []string{"replay", "--tenant", "demo", "--data-dir", data, "--stream", "session-" + s}, stdio{out: &out, err: &errb}, env); err != nil {
		t.Fatalf("replay: %v\n%s", err, errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	erased := strings.Count(out.String(), `"erased":true`)
	if len(lines) != 4 || erased != 3 || !strings.Contains(lines[3], "conversation.SessionDeleted") || strings.Contains(out.String(), secret) {
		t.Fatalf("replay of the deleted session (%d lines, %d erased):\n%s", len(lines), erased, out.String())
	}
}

// GET /audit/sessions/{id}?asOf= around a deletion, through the whole server with API keys: before
// the deletion the session's shape (two messages, roles, times, who) with its content marked erased;
// after it the deletion (when, by which credential and asserted user) and what it erased. Tenant B
// can neither delete A's session nor see its audit view; another user of A cannot delete it either
// (owned sessions). No answer holds the text.
func TestAuditSessionAsOfAroundADeletion(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	const keyA, keyB = "ce_erasure_key_of_acme_0123456789ab", "ce_erasure_key_of_beta_ba9876543210"
	sum := func(k string) string { s := sha256.Sum256([]byte(k)); return hex.EncodeToString(s[:]) }
	tenants := filepath.Join(data, "tenants.yaml")
	yaml := "tenants:\n  - id: acme\n    apiKeys: [{hash: \"sha256:" + sum(keyA) + "\", scopes: [chat, search, ingest, tools, audit, usage]}]\n  - id: beta\n    apiKeys: [{hash: \"sha256:" + sum(keyB) + "\", scopes: [chat, search, ingest, tools, audit, usage]}]\n"
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
	secret := erasuretest.Marker(t, "erasure-marker-")
	const s = "6a1f3e5d-2c4b-4f7a-9b8c-1d2e3f4a5b6c"
	if code, body := send("acme", keyA, "alice", "POST", "/chat", map[string]any{"sessionId": s, "message": secret, "stream": false}); code != 200 {
		t.Fatalf("chat: %d %s", code, body)
	}
	before := time.Now().UTC()
	time.Sleep(5 * time.Millisecond) // the deletion is recorded strictly after asOf
	if code, _ := send("beta", keyB, "", "DELETE", "/chat/"+s, nil); code != 404 {
		t.Fatalf("tenant beta deleting acme's session: %d, want 404", code)
	}
	// alice started the session, so it is hers (owned sessions, issue 14 item 6): another user of
	// the same tenant and key gets 404, as for a session that does not exist; alice deletes it.
	if code, body := send("acme", keyA, "bob", "DELETE", "/chat/"+s, nil); code != 404 {
		t.Fatalf("bob deleting alice's session: %d %s, want 404", code, body)
	}
	if code, body := send("acme", keyA, "alice", "DELETE", "/chat/"+s, nil); code != 200 {
		t.Fatalf("delete: %d %s", code, body)
	}

	type view struct {
		Deleted       bool   `json:"deleted"`
		DeletedBy     string `json:"deletedBy"`
		DeletedByUser string `json:"deletedByUser"`
		Reason        string `json:"reason"`
		ContentErased bool   `json:"contentErased"`
		Messages      []struct {
			Role   string `json:"role"`
			Erased bool   `json:"erased"`
			User   string `json:"user"`
			Actor  string `json:"actor"`
		} `json:"messages"`
		Erasures []struct {
			Messages int    `json:"messages"`
			By       string `json:"by"`
		} `json:"erasures"`
	}
	get := func(asOf time.Time) view {
		t.Helper()
		code, body := send("acme", keyA, "", "GET", "/audit/sessions/"+s+"?asOf="+asOf.Format(time.RFC3339Nano), nil)
		if code != 200 || strings.Contains(body, secret) {
			t.Fatalf("audit view at %s: %d %s", asOf, code, body)
		}
		var v view
		if err := json.Unmarshal([]byte(body), &v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	v := get(before)
	if v.Deleted || !v.ContentErased || len(v.Messages) != 2 || v.Messages[0].Role != "user" || !v.Messages[0].Erased ||
		v.Messages[1].Role != "assistant" || !v.Messages[1].Erased || v.Messages[0].User != "alice" || v.Messages[0].Actor != "key:"+sum(keyA)[:12] {
		t.Fatalf("asOf before the deletion: %+v", v)
	}
	v = get(time.Now().UTC().Add(time.Second))
	if !v.Deleted || v.Reason != "deleted" || v.DeletedBy != "key:"+sum(keyA)[:12] || v.DeletedByUser != "alice" || len(v.Messages) != 0 ||
		len(v.Erasures) != 1 || v.Erasures[0].Messages != 2 {
		t.Fatalf("asOf after the deletion: %+v", v)
	}
	// The audit's event list: the stored (sealed) data the hashes cover, marked erased, no text.
	code, body := send("acme", keyA, "", "GET", "/audit/events?stream=session-"+s, nil)
	var list struct {
		Events []struct {
			Type   string          `json:"type"`
			Data   json.RawMessage `json:"data"`
			Erased bool            `json:"erased"`
		} `json:"events"`
	}
	if err := json.Unmarshal([]byte(body), &list); code != 200 || err != nil || strings.Contains(body, secret) || len(list.Events) != 4 {
		t.Fatalf("audit events: %d %v %s", code, err, body)
	}
	for _, e := range list.Events[:3] {
		if !e.Erased || !strings.HasPrefix(string(e.Data), `{"sealed":`) {
			t.Fatalf("a session event in the audit list: %+v", e)
		}
	}
	if list.Events[3].Erased || list.Events[3].Type != "conversation.SessionDeleted" {
		t.Fatalf("the deletion in the audit list: %+v", list.Events[3])
	}
	if code, _ := send("beta", keyB, "", "GET", "/audit/sessions/"+s, nil); code != 404 {
		t.Fatalf("tenant beta's audit view of acme's session: %d, want 404", code)
	}
}
