package main

import (
	"context"
	"crypto/ed25519"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/platform/auditlog"
	"github.com/crispy-enigma/crispy/platform/eventstore/embedded"
	"github.com/crispy-enigma/crispy/platform/eventstore/postgres/pgtest"
)

func deployCfg(dataDir, eventStore, auditKey string, rotate bool) config {
	return config{DataDir: dataDir, EventStore: eventStore, AuditKey: auditKey, NewAuditKey: rotate, Search: "embedded", Bus: "gochannel",
		RateLimitFail: "open", PluginsDir: filepath.Join(dataDir, "no-plugins"), LogLevel: "error", ShutdownTimeout: 5 * time.Second, AuditInterval: time.Hour}
}

// One deployment, one signing key: the first start records its key in the store; a start with
// another key (a replica given the wrong --audit-key) is refused in one line naming the fixes;
// --new-audit-key rotates and records the new key, after which the old key is refused.
func TestDeploymentSigningKeyIsRecordedAndEnforced(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	start := func(auditKey string, rotate bool) error {
		t.Helper()
		a, err := build(ctx, deployCfg(dir, "embedded", auditKey, rotate), slog.New(slog.DiscardHandler), buildOptions{})
		if err == nil {
			a.close()
		}
		return err
	}
	if err := start("", false); err != nil {
		t.Fatalf("first start: %v", err)
	}
	first, err := auditlog.LoadKey(auditlog.DefaultKeyFile(dir))
	if err != nil {
		t.Fatal(err)
	}
	if err := start("", false); err != nil {
		t.Fatalf("restart with the recorded key: %v", err)
	}
	other := filepath.Join(t.TempDir(), "other.key")
	if _, err := auditlog.CreateKey(other); err != nil {
		t.Fatal(err)
	}
	err = start(other, false)
	if err == nil || !strings.Contains(err.Error(), "--audit-key") || !strings.Contains(err.Error(), "--new-audit-key") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("a start with another key than the deployment's: %v, want one line naming --audit-key and --new-audit-key", err)
	}
	rotated := filepath.Join(t.TempDir(), "rotated.key")
	if err := start(rotated, true); err != nil {
		t.Fatalf("--new-audit-key: %v", err)
	}
	if err := start(rotated, false); err != nil {
		t.Fatalf("restart with the rotated key: %v", err)
	}
	if err := start("", false); err == nil {
		t.Fatal("the key from before the rotation still starts")
	}
	store, err := embedded.Open(filepath.Join(dir, "events"), embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	evs, err := store.ReadStream(ctx, deploymentKeyStream, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	next, err := auditlog.LoadKey(rotated)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{auditlog.KeyID(first.Public().(ed25519.PublicKey)), auditlog.KeyID(next.Public().(ed25519.PublicKey))}
	var got []string
	for _, e := range evs {
		var k auditlog.SigningKeyCreated
		if e.Type != auditlog.TypeSigningKeyCreated || e.Decode(&k) != nil {
			t.Fatalf("unexpected record %s %s", e.Type, e.Data)
		}
		got = append(got, k.KeyID)
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("recorded keys %v, want %v", got, want)
	}
}

// Replicas of a new deployment started together without a shared --audit-key: each finds the store
// empty and makes its own key; at most one of them may serve (F11: both did, signing with
// different keys).
func TestIntegrationFreshReplicasShareOneSigningKey(t *testing.T) {
	url := pgtest.URL(t)
	for round := 0; round < 3; round++ {
		store := pgtest.WithSchema(t, url, pgtest.Schema(t, url))
		var wg sync.WaitGroup
		keys := make([]ed25519.PublicKey, 2)
		errs := make([]error, 2)
		for i := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				a, err := build(context.Background(), deployCfg(t.TempDir(), store, "", false), slog.New(slog.DiscardHandler), buildOptions{})
				errs[i] = err
				if err == nil {
					keys[i] = a.audit.PublicKey()
					a.close()
				}
			}()
		}
		wg.Wait()
		if errs[0] == nil && errs[1] == nil && !keys[0].Equal(keys[1]) {
			t.Fatalf("round %d: two replicas of one store serve with different signing keys", round)
		}
		for _, err := range errs {
			if err != nil && !strings.Contains(err.Error(), "--audit-key") {
				t.Fatalf("round %d: a refused replica's error does not name --audit-key: %v", round, err)
			}
		}
	}
}
