package main

import (
	"context"
	"crypto/ed25519"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/platform/auditlog"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/embedded"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// --new-audit-key over a store with events, and the process stops before the audit log recorded
// the key (a crash, a restart during the catch-up): the rotation stays pending in the data folder,
// a start with --new-audit-key again is accepted (not "a key exists"), and a later start without it
// records the key in the tenant's log and clears the marker. Before, the key was recorded nowhere.
func TestNewAuditKeyIsRecordedAfterAnEarlyStop(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	cfg := embeddedConfig(data)
	cfg.AuditInterval = time.Hour
	s, err := embedded.Open(filepath.Join(data, "events"), embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ed, _ := eventstore.NewEventData("test.Happened", map[string]int{"n": 1})
	if _, err := s.Append(context.Background(), tenant.MustStream(tenant.MustParse("demo"), "session", "x"), eventstore.Any, ed); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	ctx := context.Background()
	cfg.NewAuditKey = true
	a, err := build(ctx, cfg, slog.New(slog.DiscardHandler), buildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pub := auditlog.Describe(a.audit.PublicKey()).KeyID
	a.close() // stopped before Run recorded the new key
	if !auditKeyRotationPending(cfg) {
		t.Fatal("no pending marker after a --new-audit-key start that stopped before recording the key")
	}
	// Passing the flag again (the operator's natural retry) resumes the same rotation.
	a, err = build(ctx, cfg, slog.New(slog.DiscardHandler), buildOptions{})
	if err != nil {
		t.Fatalf("a second start with --new-audit-key while the rotation is pending: %v", err)
	}
	if got := auditlog.Describe(a.audit.PublicKey()).KeyID; got != pub {
		t.Fatalf("the resumed start signs with key %s, want the pending %s", got, pub)
	}
	a.close()
	cfg.NewAuditKey = false
	_, stop := serveApp(t, cfg, buildOptions{})
	waitUntil(t, "the pending marker cleared", func() bool { return !auditKeyRotationPending(cfg) })
	stop()
	evs, err := readStream(t, cfg, "demo", "audit-key")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range evs {
		var k auditlog.SigningKeyCreated
		if e.Type == auditlog.TypeSigningKeyCreated && e.Decode(&k) == nil && k.KeyID == pub {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("demo's log records the new key %d times, want once: %+v", n, evs)
	}
	if _, err := os.Stat(auditKeyPendingPath(cfg)); !os.IsNotExist(err) {
		t.Fatalf("marker still there: %v", err)
	}
	// Once recorded, --new-audit-key with the key present is refused again (nothing pending).
	cfg.NewAuditKey = true
	if _, err := build(ctx, cfg, slog.New(slog.DiscardHandler), buildOptions{}); err == nil {
		t.Fatal("--new-audit-key with a recorded key present was accepted")
	}
}

// The stop falls between the new key's creation and the deployment's record of it: the next start,
// without --new-audit-key, finishes the rotation instead of refusing the key as "not the one this
// deployment signs with".
func TestNewAuditKeyResumesWhenStoppedBeforeTheDeploymentRecord(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	cfg := embeddedConfig(data)
	cfg.AuditInterval = time.Hour
	ctx := context.Background()
	a, err := build(ctx, cfg, slog.New(slog.DiscardHandler), buildOptions{}) // first start: key A, recorded
	if err != nil {
		t.Fatal(err)
	}
	a.close()
	s, err := embedded.Open(filepath.Join(data, "events"), embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ed, _ := eventstore.NewEventData("test.Happened", map[string]int{"n": 1})
	if _, err := s.Append(ctx, tenant.MustStream(tenant.MustParse("demo"), "session", "x"), eventstore.Any, ed); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	// What --new-audit-key does before the deployment record, then the stop.
	if err := os.Remove(auditKeyPath(cfg)); err != nil {
		t.Fatal(err)
	}
	if err := markAuditKeyPending(cfg); err != nil {
		t.Fatal(err)
	}
	key, err := auditlog.CreateKey(auditKeyPath(cfg))
	if err != nil {
		t.Fatal(err)
	}
	_, stop := serveApp(t, cfg, buildOptions{})
	waitUntil(t, "the pending marker cleared", func() bool { return !auditKeyRotationPending(cfg) })
	stop()
	evs, err := readStream(t, cfg, "demo", "audit-key")
	if err != nil || len(evs) == 0 {
		t.Fatalf("demo's audit-key stream: %v %v", evs, err)
	}
	var k auditlog.SigningKeyCreated
	if err := evs[len(evs)-1].Decode(&k); err != nil || k.KeyID != auditlog.KeyID(key.Public().(ed25519.PublicKey)) {
		t.Fatalf("demo's last recorded key %q (%v), want the new one", k.KeyID, err)
	}
}
