package observability_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/proof"

	"github.com/crispy-enigma/crispy/modules/observability"
	"github.com/crispy-enigma/crispy/platform/auditlog"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// logEnv is an env whose observability module serves a real audit log (its projection on the
// env's bus, a fresh signing key).
func logEnv(t *testing.T, store *eventstoretest.Memory, wrap func(eventstore.Store) eventstore.Store) (*env, ed25519.PrivateKey) {
	t.Helper()
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	if store == nil {
		store = eventstoretest.NewMemory()
	}
	var s eventstore.Store = store
	if wrap != nil {
		s = wrap(store)
	}
	clk := &clock{now: epoch}
	l, err := auditlog.New(auditlog.Deps{Key: key, Store: s, Dir: t.TempDir(), Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, opts{store: store, clk: clk, deps: func(d *observability.Deps) { d.AuditLog = l; d.Store = s }, register: l.Register})
	return e, key
}

func decode[T any](t *testing.T, r resp) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(r.raw), &v); err != nil {
		t.Fatalf("%s: %v", r.raw, err)
	}
	return v
}

func TestSignedCheckpointsProofsAndVerifyOverHTTP(t *testing.T) {
	t.Parallel()
	e, key := logEnv(t, nil, nil)
	pub := key.Public().(ed25519.PublicKey)
	seedSessions(e) // acme: 5 events, beta: 2
	e.sync()

	pk := e.do(http.MethodGet, "/audit/public-key", "acme", key0, nil)
	if pk.status != 200 || pk.body["publicKey"] != base64.StdEncoding.EncodeToString(pub) || pk.body["keyId"] != auditlog.KeyID(pub) {
		t.Fatalf("public key: %d %s", pk.status, pk.raw)
	}
	r := e.do(http.MethodGet, "/audit/checkpoint", "acme", key0, nil)
	if r.status != 200 {
		t.Fatalf("checkpoint: %d %s", r.status, r.raw)
	}
	cp := decode[auditlog.Checkpoint](t, r)
	if cp.Tenant != "acme" || cp.Size != 5 {
		t.Fatalf("checkpoint %+v", cp)
	}
	if err := cp.Check(pub, acme, e.clk.Now()); err != nil {
		t.Fatalf("the checkpoint does not verify under the published key: %v", err)
	}
	// Unchanged log: the same checkpoint again.
	if again := decode[auditlog.Checkpoint](t, e.do(http.MethodGet, "/audit/checkpoint", "acme", key0, nil)); again.Signature != cp.Signature {
		t.Fatal("an unchanged log was signed again")
	}
	// Beta gets its own, never acme's.
	bcp := decode[auditlog.Checkpoint](t, e.do(http.MethodGet, "/audit/checkpoint", "beta", key0, nil))
	if bcp.Tenant != "beta" || bcp.Size != 2 {
		t.Fatalf("beta's checkpoint %+v", bcp)
	}

	// The log grows; the kept checkpoint still verifies, with a consistency proof.
	e.clk.Advance(time.Minute)
	e.turn(acme, "s3", "openai:gpt-4o", 1, 1, 0, 0)
	e.sync()
	v := e.do(http.MethodPost, "/audit/verify", "acme", key0, cp)
	if v.status != 200 || v.body["ok"] != true || num(t, v.body, "checkpointSize") != 5 || num(t, v.body, "storeSize") != 7 || v.body["consistencyProof"] == nil {
		t.Fatalf("verify against a kept checkpoint: %d %s", v.status, v.raw)
	}
	// GET /audit/verify still walks the chains.
	if g := e.do(http.MethodGet, "/audit/verify", "acme", key0, nil); g.status != 200 || g.body["ok"] != true {
		t.Fatalf("GET /audit/verify: %d %s", g.status, g.raw)
	}

	// Refusals: another tenant's checkpoint, an edited one, one from the future, no key.
	wantProblem(t, e.do(http.MethodPost, "/audit/verify", "beta", key0, cp), 403, "checkpoint_other_tenant")
	edited := cp
	edited.Size = 4
	wantProblem(t, e.do(http.MethodPost, "/audit/verify", "acme", key0, edited), 400, "checkpoint_bad_signature")
	future := auditlog.Sign(key, acme, 5, mustRoot(t, cp), epoch.Add(24*time.Hour))
	wantProblem(t, e.do(http.MethodPost, "/audit/verify", "acme", key0, future), 400, "checkpoint_from_the_future")
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	wantProblem(t, e.do(http.MethodPost, "/audit/verify", "acme", key0, auditlog.Sign(other, acme, 5, mustRoot(t, cp), epoch)), 400, "checkpoint_bad_signature")
	wantProblem(t, e.do(http.MethodPost, "/audit/verify", "acme", "", cp), 401, "audit_requires_api_key")
	wantProblem(t, e.do(http.MethodGet, "/audit/checkpoint", "acme", "", nil), 401, "audit_requires_api_key")

	// An inclusion proof of one of acme's events against the latest checkpoint.
	evs, _ := e.store.ReadTenant(t.Context(), acme, eventstore.Start, 0)
	ev := evs[2]
	p := e.do(http.MethodGet, "/audit/events/"+ev.ID+"/proof", "acme", key0, nil)
	if p.status != 200 {
		t.Fatalf("proof: %d %s", p.status, p.raw)
	}
	ip := decode[auditlog.InclusionProof](t, p)
	if ip.Checkpoint == nil || ip.Checkpoint.Size != ip.TreeSize || ip.LeafIndex != 2 {
		t.Fatalf("proof %+v", ip)
	}
	leaf, _ := auditlog.LeafHash(ev.Hash)
	root, _ := ip.Checkpoint.Root()
	var hashes [][]byte
	for _, h := range ip.Proof {
		b, _ := base64.StdEncoding.DecodeString(h)
		hashes = append(hashes, b)
	}
	if err := proof.VerifyInclusion(auditlog.Hasher, ip.LeafIndex, ip.TreeSize, leaf, hashes, root); err != nil {
		t.Fatalf("the proof does not verify: %v", err)
	}
	// Against the kept checkpoint's size: the root is that checkpoint's.
	old := decode[auditlog.InclusionProof](t, e.do(http.MethodGet, "/audit/events/"+ev.ID+"/proof?size=5", "acme", key0, nil))
	if old.RootHash != cp.RootHash || old.TreeSize != 5 {
		t.Fatalf("proof at size 5: %+v", old)
	}
	// Beta cannot get a proof of acme's event.
	wantProblem(t, e.do(http.MethodGet, "/audit/events/"+ev.ID+"/proof", "beta", key0, nil), 404, "event_not_in_log")
	wantProblem(t, e.do(http.MethodGet, "/audit/events/"+ev.ID+"/proof?size=99", "acme", key0, nil), 400, "checkpoint_size_beyond_log")
}

func mustRoot(t *testing.T, c auditlog.Checkpoint) []byte {
	r, err := c.Root()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

const key0 = key

// An event edited in the store after a checkpoint (its hash recomputed, as a careful forger would)
// fails POST /audit/verify, which names its place in the log; GET /audit/verify's chains do not see it.
func TestVerifyAgainstACheckpointNamesTheEditedEvent(t *testing.T) {
	t.Parallel()
	forged := &forging{}
	e, _ := logEnv(t, nil, func(s eventstore.Store) eventstore.Store { forged.Store = s; return forged })
	seedSessions(e)
	e.sync()
	cp := decode[auditlog.Checkpoint](t, e.do(http.MethodGet, "/audit/checkpoint", "acme", key0, nil))
	evs, _ := e.store.ReadTenant(t.Context(), acme, eventstore.Start, 0)
	// The first event that ends its stream, so no later link shows the edit.
	at := -1
	for i := 0; i < len(evs) && at < 0; i++ {
		at = i
		for _, later := range evs[i+1:] {
			if later.Stream == evs[i].Stream {
				at = -1
			}
		}
	}
	forged.id.Store(&evs[at].ID)

	if g := e.do(http.MethodGet, "/audit/verify", "acme", key0, nil); g.body["ok"] != true {
		t.Fatalf("the resealed stream was expected to pass the chain walk (else this test proves nothing new): %s", g.raw)
	}
	v := e.do(http.MethodPost, "/audit/verify", "acme", key0, cp)
	if v.status != 200 || v.body["ok"] != false {
		t.Fatalf("verify of a forged store: %d %s", v.status, v.raw)
	}
	f := v.body["fault"].(map[string]any)
	if num(t, f, "leafIndex") != float64(at) || f["eventId"] != evs[at].ID || at == len(evs)-1 {
		t.Fatalf("fault %v, want log entry %d (event %s)", f, at, evs[at].ID)
	}
	// Beta's log is untouched and verifies against its own checkpoint.
	bcp := decode[auditlog.Checkpoint](t, e.do(http.MethodGet, "/audit/checkpoint", "beta", key0, nil))
	if b := e.do(http.MethodPost, "/audit/verify", "beta", key0, bcp); b.body["ok"] != true {
		t.Fatalf("beta: %s", b.raw)
	}
}

// forging serves, once id is set, that event with edited data and its hash recomputed.
type forging struct {
	eventstore.Store
	id atomic.Pointer[string]
}

func (s *forging) ReadTenant(ctx context.Context, t tenant.ID, from eventstore.Position, max int) ([]eventstore.Event, error) {
	evs, err := s.Store.ReadTenant(ctx, t, from, max)
	if id := s.id.Load(); id != nil {
		for i := range evs {
			if evs[i].ID == *id {
				evs[i].Data = json.RawMessage(`{"forged":true}`)
				_ = eventstore.Seal(evs[i].Prev, &evs[i])
			}
		}
	}
	return evs, err
}
