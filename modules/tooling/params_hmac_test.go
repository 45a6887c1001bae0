package tooling_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/crispy-enigma/crispy/modules/tooling/events"
	"github.com/crispy-enigma/crispy/platform/keystore"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// The audit's params fingerprint is keyed per tenant (issue 12 §6): the same params under two
// tenants fingerprint differently, a guess hashed without the tenant's secret (plain SHA-256, or
// another tenant's secret) does not match it, and once the tenant's keys are destroyed the secret
// is gone, so no guess can be confirmed any more; a later call gets a new secret.
func TestParamsFingerprintIsAnHMACPerTenant(t *testing.T) {
	t.Parallel()
	e := newEnv(t, pluginsDir(t, "echo"), opts{})
	p := map[string]any{"mode": "ok", "n": 1, "text": "yes"}
	params, _ := json.Marshal(p)
	fingerprint := func(tid string) string {
		t.Helper()
		if r := e.do("POST", "/tools/execute", tid, map[string]any{"tool_name": "echo", "params": p}); r.status != 200 {
			t.Fatalf("execute as %s: %d %s", tid, r.status, r.raw)
		}
		evs := e.audit(tid)
		var inv events.ToolInvoked
		if err := evs[len(evs)-2].Decode(&inv); err != nil || evs[len(evs)-2].Type != events.TypeToolInvoked {
			t.Fatalf("%s audit: %+v %v", tid, evs, err)
		}
		return inv.ParamsHMAC
	}
	a, b := fingerprint("acme"), fingerprint("beta")
	plain := sha256.Sum256(params)
	switch {
	case a == "" || b == "":
		t.Fatalf("no fingerprint recorded: acme %q beta %q", a, b)
	case a == b:
		t.Fatal("the same params fingerprint alike in two tenants")
	case a == hex.EncodeToString(plain[:]):
		t.Fatal("the fingerprint is the plain SHA-256 of the params: a guess confirms it without the secret")
	case a != e.paramsHMAC("acme", params) || b != e.paramsHMAC("beta", params):
		t.Fatal("the fingerprint is not the HMAC under the tenant's own secret")
	case e.paramsHMAC("beta", params) == a:
		t.Fatal("beta's secret confirms acme's fingerprint")
	}
	if again := fingerprint("acme"); again != a {
		t.Fatalf("the same params in the same tenant fingerprint %s then %s: the secret must be stable", a, again)
	}

	// Tenant deletion destroys its keys: the fingerprints already recorded cannot be confirmed.
	acme := tenant.MustParse("acme")
	if err := e.keys.DestroyTenant(context.Background(), acme); err != nil {
		t.Fatal(err)
	}
	if _, err := e.keys.Key(context.Background(), acme, "tenant/hmac"); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("after the tenant's keys were destroyed its secret reads %v", err)
	}
	if after := fingerprint("acme"); after == a || after == "" {
		t.Fatalf("after destruction the same params fingerprint %q (before %q): want a fresh secret", after, a)
	}
	for _, ev := range e.audit("acme") {
		if strings.Contains(string(ev.Data), hex.EncodeToString(plain[:])) {
			t.Fatalf("an audit event holds the plain hash of the params: %s", ev.Data)
		}
	}
}

// A key store that cannot give the tenant's secret refuses the call (503), running nothing and
// recording no unkeyed fingerprint.
func TestParamsSecretUnavailableRefusesTheCall(t *testing.T) {
	t.Parallel()
	e := newEnv(t, pluginsDir(t, "echo"), opts{})
	if err := e.keys.Destroy(context.Background(), tenant.MustParse("acme"), "tenant/hmac"); err != nil {
		t.Fatal(err)
	}
	r := e.do("POST", "/tools/execute", "acme", map[string]any{"tool_name": "echo", "params": map[string]any{"mode": "ok"}})
	if r.status != 503 || r.body["code"] != "tool_audit_unavailable" {
		t.Fatalf("execute without the secret: %d %s", r.status, r.raw)
	}
	if evs := e.audit("acme"); len(evs) != 0 {
		t.Fatalf("a refused call was audited without a fingerprint: %+v", evs)
	}
}
