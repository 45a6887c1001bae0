package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/crispy-enigma/crispy/platform/auditlog"
)

// crispy audit checkpoint does not sign when the kept checkpoint cannot be read or checked (an
// edited or garbled file: what someone rewriting the folder might leave); before, it signed the
// store as it was whenever the check errored rather than failed.
func TestAuditCheckpointRefusesWhenTheKeptOneCannotBeChecked(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	seed(t, root)
	first := runCrispy(t, root, nil, "audit", "checkpoint", "--tenant", "demo", "--data-dir", "seeded")
	var cp auditlog.Checkpoint
	if first.code != 0 || json.Unmarshal([]byte(first.stdout), &cp) != nil {
		t.Fatalf("checkpoint: %+v", first)
	}
	kept := filepath.Join(root, "seeded", "audit", "checkpoints", "demo.json")
	if _, err := os.Stat(kept); err != nil {
		t.Fatalf("the checkpoint was not kept: %v", err)
	}
	if err := os.WriteFile(kept, []byte("{not json"), 0o640); err != nil {
		t.Fatal(err)
	}
	auditFails(t, runCrispy(t, root, nil, "audit", "checkpoint", "--tenant", "demo", "--data-dir", "seeded"), exitChainBroken, "cannot be read")

	edited := cp
	edited.Size-- // same key, signature no longer matches: Verify errors (bad signature)
	b, _ := json.Marshal(edited)
	if err := os.WriteFile(kept, b, 0o640); err != nil {
		t.Fatal(err)
	}
	auditFails(t, runCrispy(t, root, nil, "audit", "checkpoint", "--tenant", "demo", "--data-dir", "seeded"), exitChainBroken, "cannot be checked")

	// The file moved away (the one-line fix says so): it signs again.
	if err := os.Remove(kept); err != nil {
		t.Fatal(err)
	}
	if again := runCrispy(t, root, nil, "audit", "checkpoint", "--tenant", "demo", "--data-dir", "seeded"); again.code != 0 {
		t.Fatalf("after moving the kept checkpoint away: %+v", again)
	}
}
