package main

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crispy-enigma/crispy/platform/eventstore"
)

// A command run at the console has no API credential: what it records names the command as its
// actor (system:cli/<command>), one request id per invocation, and no user.
func TestCLICommandsActAsTheOperator(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "doc.txt"), []byte("Refunds are issued within 14 days of a return.\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := runCrispy(t, root, nil, "ingest", "--tenant", "demo", "--data-dir", "data", "doc.txt"); r.code != 0 {
		t.Fatalf("ingest: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r := runCrispy(t, root, nil, "replay", "--tenant", "demo", "--data-dir", "data")
	if r.code != 0 {
		t.Fatalf("replay: exit %d\n%s", r.code, r.stderr)
	}
	ingested := 0
	reqIDs := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(r.stdout))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e eventstore.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("replay line %q: %v", sc.Text(), err)
		}
		if !strings.HasPrefix(e.Type, "retrieval.") {
			continue
		}
		ingested++
		reqIDs[e.RequestID] = true
		if e.Actor != "system:cli/ingest" || e.User != "" || !strings.HasPrefix(e.RequestID, "cli-") {
			t.Errorf("event %s of crispy ingest: actor %q, user %q, request id %q", e.Type, e.Actor, e.User, e.RequestID)
		}
	}
	if ingested == 0 || len(reqIDs) != 1 {
		t.Fatalf("crispy ingest recorded %d retrieval events under %d request ids:\n%s", ingested, len(reqIDs), r.stdout)
	}
}
