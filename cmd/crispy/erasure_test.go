package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func erasureMarker(t *testing.T) string {
	t.Helper()
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return "erasure-marker-" + hex.EncodeToString(b[:])
}

// filesHolding lists the files under dir whose bytes contain text.
func filesHolding(t *testing.T, dir, text string) []string {
	t.Helper()
	var hits []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte(text)) {
			hits = append(hits, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hits
}

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
	secret := erasureMarker(t)
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

	if hits := filesHolding(t, data, secret); len(hits) > 0 {
		t.Fatalf("the deleted session's text is still in %v", hits)
	}
	if hits := filesHolding(t, data, s); len(hits) == 0 {
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
