package conversation_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	tenancyevents "github.com/crispy-enigma/crispy/modules/tenancy/events"
	"github.com/crispy-enigma/crispy/platform/eventstore/embedded"

	"github.com/crispy-enigma/crispy/platform/erasuretest"
)

// A session that expires by retention leaves its text in no file of the data folder (event log,
// its index, the session list and ledger read models, bus checkpoints), though its events stay and
// the session's id is still there (which proves the grep reads the files).
func TestExpiredSessionLeavesNoPlaintextInTheDataFolder(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	st, err := embedded.Open(filepath.Join(dir, "events"), embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, opts{store: st, dir: filepath.Join(dir, "bus"), tenants: map[string]tenancyevents.TenantConfig{"acme": {SessionRetentionDays: 7}}})
	secret, kept := erasuretest.Marker(t, "marker-"), erasuretest.Marker(t, "marker-")
	old, fresh := sid(), sid()
	e.chatJSON("acme", old, secret+" is my password")
	e.sync()
	if got := e.do("GET", "/sessions", "acme", nil).raw; !strings.Contains(got, secret) {
		t.Fatalf("the session list does not show the sealed title: %s", got)
	}
	e.clock.Add(8 * 24 * time.Hour)
	if n, err := e.mod.Sweep(context.Background()); err != nil || n != 1 {
		t.Fatalf("expired %d, %v", n, err)
	}
	e.chatJSON("acme", fresh, kept+" stays") // after the sweep: live
	e.sync()
	if e.history("acme", fresh).status != 200 || !strings.Contains(e.history("acme", fresh).raw, kept) {
		t.Fatal("the live session lost its content")
	}
	e.cancel()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if hits := erasuretest.FilesHolding(t, dir, []byte(secret)); len(hits) > 0 {
		t.Fatalf("the expired session's text is still in %v", hits)
	}
	if hits := erasuretest.FilesHolding(t, dir, []byte(old)); len(hits) == 0 {
		t.Fatal("the session id is in no file: the grep reads nothing (the check above could not fail)")
	}
	if hits := erasuretest.FilesHolding(t, dir, []byte(kept)); len(hits) > 0 {
		t.Fatalf("a live session's text is stored in plain text in %v", hits)
	}
}

// Tenant B cannot delete or read tenant A's session, and its attempt erases nothing.
func TestTenantBCannotDeleteOrReadTenantAsSession(t *testing.T) {
	t.Parallel()
	e := newEnv(t, opts{})
	secret := erasuretest.Marker(t, "marker-")
	s := sid()
	e.chatJSON("acme", s, secret)
	wantProblem(t, e.do("DELETE", "/chat/"+s, "globex", nil), 404, "session_not_found")
	wantProblem(t, e.history("globex", s), 404, "session_not_found")
	if h := e.history("acme", s); h.status != 200 || !strings.Contains(h.raw, secret) {
		t.Fatalf("acme's session after globex's attempts: %s", h.raw)
	}
	if r := readable(e.streamEvents("acme", s)); r != "SessionStarted,UserMessageAdded,AssistantMessageCompleted" {
		t.Fatalf("acme's events: %s", r)
	}
}

// A session deleted and started anew gets a new key: the new life reads, the old stays erased.
func TestSessionStartedAnewAfterDeletionHasItsOwnKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t, opts{})
	first, second := erasuretest.Marker(t, "marker-"), erasuretest.Marker(t, "marker-")
	s := sid()
	e.chatJSON("acme", s, first)
	if r := e.do("DELETE", "/chat/"+s, "acme", nil); r.status != 200 {
		t.Fatal(r.raw)
	}
	e.chatJSON("acme", s, second)
	h := e.history("acme", s)
	if h.status != 200 || !strings.Contains(h.raw, second) || strings.Contains(h.raw, first) {
		t.Fatalf("history of the new life: %s", h.raw)
	}
	if r := readable(e.streamEvents("acme", s)); r != "SessionDeleted,SessionStarted,UserMessageAdded,AssistantMessageCompleted" {
		t.Fatalf("readable: %s", r)
	}
	if e.atRest("acme", first) || e.atRest("acme", second) {
		t.Fatal("content stored in plain text")
	}
	if r := e.do("DELETE", "/chat/"+s, "acme", nil); r.status != 200 {
		t.Fatal(r.raw)
	}
	if r := readable(e.streamEvents("acme", s)); r != "SessionDeleted,SessionDeleted" {
		t.Fatalf("after the second deletion, readable: %s", r)
	}
}
