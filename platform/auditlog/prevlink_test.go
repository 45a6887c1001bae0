package auditlog

import (
	"crypto/ed25519"
	"encoding/json"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/platform/eventstore"
)

// Events appended after the checkpoint are covered by no signed root: there the per-stream prev
// links are the only check. An event whose own hash is recomputed (so it hashes to its Hash) but
// whose prev does not link to its stream's previous event must fail verification, naming it.
func TestVerifyChecksPrevLinksAfterTheCheckpoint(t *testing.T) {
	t.Parallel()
	now := time.Now()
	key := newKey(t)
	pub := key.Public().(ed25519.PublicKey)
	base := t.TempDir()
	seed(t, base)
	orig := readLog(t, base)
	cp := checkpointOf(t, base, key, acme, now)
	acmeEvs := ofTenant(orig, acme)
	s1 := acmeEvs[0].Stream
	var s1Evs []eventstore.Event
	for _, e := range acmeEvs {
		if e.Stream == s1 {
			s1Evs = append(s1Evs, e)
		}
	}
	last := s1Evs[len(s1Evs)-1]
	next := func(id, stream string, rev uint64, prev string) eventstore.Event {
		e := last
		e.ID, e.Stream, e.Revision, e.Data = id, stream, rev, json.RawMessage(`{"appended":true}`)
		if err := eventstore.Seal(prev, &e); err != nil { // its own hash recomputed over the wrong prev
			t.Fatal(err)
		}
		return e
	}
	const id = "01900000-0000-7000-8000-0000000000a1"
	for _, sc := range []struct {
		name  string
		event eventstore.Event
		ok    bool
	}{
		{name: "appended with the right prev (control)", event: next(id, s1, last.Revision+1, last.Hash), ok: true},
		{name: "prev skips its predecessor", event: next(id, s1, last.Revision+1, s1Evs[len(s1Evs)-2].Hash)},
		{name: "prev of another stream", event: next(id, s1, last.Revision+1, acmeEvs[1].Hash)},
		{name: "first event of a new stream with a prev", event: next(id, s1+"-new", 0, last.Hash)},
	} {
		t.Run(sc.name, func(t *testing.T) {
			dir := t.TempDir()
			copyDir(t, base, dir)
			writeLog(t, dir, append(readLog(t, dir), sc.event))
			rep, err := verifyDir(t, dir, VerifyOptions{Checkpoint: cp, PublicKey: pub, Tenant: acme, Now: now, Tree: storedTree(t, orig)})
			if err != nil {
				t.Fatalf("verify: %v", err)
			}
			if rep.StoreSize != cp.Size+1 {
				t.Fatalf("store holds %d events, want the checkpoint's %d + 1", rep.StoreSize, cp.Size)
			}
			if sc.ok {
				if !rep.OK {
					t.Fatalf("a correctly linked append failed verification: %s", rep.Fault)
				}
				return
			}
			if rep.OK || rep.Fault == nil {
				t.Fatalf("an append after the checkpoint with a wrong prev link verified ok: %+v", rep)
			}
			if rep.Fault.LeafIndex == nil || *rep.Fault.LeafIndex != cp.Size {
				t.Fatalf("fault named %s, want log entry %d (the appended event)", rep.Fault, cp.Size)
			}
		})
	}
}
