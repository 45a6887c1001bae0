package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/modules/tenancy"
	"github.com/crispy-enigma/crispy/platform/auditlog"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/embedded"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

func auditFails(t *testing.T, r result, code int, want ...string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", r.code, code, r.stdout, r.stderr)
	}
	last := strings.TrimSpace(r.stderr)
	if i := strings.LastIndex(last, "\n"); i >= 0 {
		last = last[i+1:]
	}
	for _, w := range want {
		if !strings.Contains(last, w) {
			t.Fatalf("the last line %q does not say %q\n%s", last, w, r.stderr)
		}
	}
}

// The CLI round trip of the signed audit log on a data folder: the key made with the folder's first
// events, a checkpoint kept outside it, verification against it, and the failures: a history
// rebuilt with a new key (checked with the old public key, or the folder's new key), another
// tenant's checkpoint, an edited checkpoint.
func TestAuditCheckpointVerifyAndProveFromTheCommandLine(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	seed(t, root) // crispy ingest into "seeded": its first events, so it makes the key
	if fi, err := os.Stat(filepath.Join(root, "seeded", "audit", "signing.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("signing key: %v %v", fi, err)
	}
	pub := runCrispy(t, root, nil, "audit", "public-key", "--pem", "--data-dir", "seeded")
	if pub.code != 0 || !strings.Contains(pub.stdout, "PUBLIC KEY") {
		t.Fatalf("public key: %+v", pub)
	}
	write := func(name, s string) string {
		p := filepath.Join(root, name)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pubFile := write("pub.pem", pub.stdout)
	cpr := runCrispy(t, root, nil, "audit", "checkpoint", "--tenant", "demo", "--data-dir", "seeded")
	var cp auditlog.Checkpoint
	if cpr.code != 0 || json.Unmarshal([]byte(cpr.stdout), &cp) != nil || cp.Tenant != "demo" || cp.Size == 0 {
		t.Fatalf("checkpoint: %+v", cpr)
	}
	cpFile := write("cp.json", cpr.stdout)

	ok := runCrispy(t, root, nil, "verify", "--tenant", "demo", "--data-dir", "seeded", "--checkpoint", cpFile, "--public-key", pubFile)
	if ok.code != 0 || !strings.HasPrefix(ok.stdout, "ok: ") {
		t.Fatalf("verify against the kept checkpoint: %+v", ok)
	}

	// The folder rebuilt from scratch (same document ingested again): a new key, another log.
	if err := os.RemoveAll(filepath.Join(root, "seeded")); err != nil {
		t.Fatal(err)
	}
	seed(t, root)
	auditFails(t, runCrispy(t, root, nil, "verify", "--tenant", "demo", "--data-dir", "seeded", "--checkpoint", cpFile, "--public-key", pubFile),
		exitChainBroken, "is not the log checkpoint")
	auditFails(t, runCrispy(t, root, nil, "verify", "--tenant", "demo", "--data-dir", "seeded", "--checkpoint", cpFile),
		2, "signed by another key")
	auditFails(t, runCrispy(t, root, nil, "verify", "--tenant", "other", "--data-dir", "seeded", "--checkpoint", cpFile, "--public-key", pubFile),
		2, "another tenant's checkpoint")
	edited := cp
	edited.Size++
	b, _ := json.Marshal(edited)
	auditFails(t, runCrispy(t, root, nil, "verify", "--tenant", "demo", "--data-dir", "seeded", "--checkpoint", write("edited.json", string(b)), "--public-key", pubFile),
		2, "bad signature")
}

// A data folder whose store has events but whose signing key is gone refuses to start, naming
// --new-audit-key; with it, a new key is made and recorded in every tenant's log, and the server
// serves checkpoints and inclusion proofs that crispy audit prove accepts.
func TestMissingAuditKeyRefusesToStartUnlessANewOneIsAskedFor(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	cfg := embeddedConfig(data)
	cfg.AuditInterval = time.Hour
	// Events written before any key existed (as an older version left the folder).
	s, err := embedded.Open(filepath.Join(data, "events"), embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ed, _ := eventstore.NewEventData("test.Happened", map[string]int{"n": 1})
	res, err := s.Append(context.Background(), tenant.MustStream(tenant.MustParse("demo"), "session", "x"), eventstore.Any, ed)
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Close()

	_, err = build(context.Background(), cfg, slog.New(slog.DiscardHandler), buildOptions{})
	if err == nil || !strings.Contains(err.Error(), "--new-audit-key") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("start without the key: %v", err)
	}
	cfg.NewAuditKey = true
	apiKey, hash, err := tenancy.NewAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Tenants = filepath.Join(data, "tenants.yaml")
	if err := os.WriteFile(cfg.Tenants, []byte("tenants:\n  - id: demo\n    apiKeys:\n      - {hash: \""+hash+"\", scopes: [chat, search, ingest, tools, audit, usage]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv, stop := serveApp(t, cfg, buildOptions{})
	defer stop()
	get := func(path string) (int, []byte) {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		req.Header.Set("x-tenant-id", "demo")
		req.Header.Set("x-api-key", apiKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	// The new key is recorded in the tenant's log (Run does it once the tree caught up).
	var recorded bool
	for range 200 {
		evs, _ := readStream(t, cfg, "demo", "audit-key")
		if recorded = len(evs) == 1 && evs[0].Type == auditlog.TypeSigningKeyCreated; recorded {
			break
		}
		time.Sleep(25 * time.Millisecond)
	}
	if !recorded {
		t.Fatal("the new signing key was not recorded in the tenant's audit-key stream")
	}
	code, body := get("/audit/events/" + res.Events[0].ID + "/proof")
	if code != 200 {
		t.Fatalf("proof: %d %s", code, body)
	}
	_, pk := get("/audit/public-key")
	root := t.TempDir()
	evJSON, _ := json.Marshal(res.Events[0])
	for name, b := range map[string][]byte{"proof.json": body, "pub.json": pk, "event.json": evJSON} {
		if err := os.WriteFile(filepath.Join(root, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r := runCrispy(t, root, nil, "audit", "prove", "--proof", "proof.json", "--event", "event.json", "--public-key", "pub.json")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "ok: event "+res.Events[0].ID) {
		t.Fatalf("prove: %+v", r)
	}
	// The same proof with an edited event fails, in one line.
	forged := res.Events[0]
	forged.Data = []byte(`{"n":2}`)
	evJSON, _ = json.Marshal(forged)
	_ = os.WriteFile(filepath.Join(root, "forged.json"), evJSON, 0o644)
	auditFails(t, runCrispy(t, root, nil, "audit", "prove", "--proof", "proof.json", "--event", "forged.json", "--public-key", "pub.json"),
		exitChainBroken, "proof FAILED", "does not hash to its hash")
}

// readStream reads a stream of the store in cfg's data folder read-only, beside the running server.
func readStream(t *testing.T, cfg config, tid, category string) ([]eventstore.Event, error) {
	t.Helper()
	s, err := embedded.OpenReadOnly(filepath.Join(cfg.DataDir, "events"), embedded.Options{TempDir: t.TempDir()})
	if err != nil {
		return nil, err
	}
	defer s.Close()
	return s.ReadStream(context.Background(), tenant.MustStream(tenant.MustParse(tid), category, ""), 0, 0)
}
