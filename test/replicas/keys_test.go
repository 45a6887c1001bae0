package replicas

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"
)

// send is one request to a replica with explicit headers (no x-tenant-id unless given).
func (r *replica) send(method, path string, body any, headers map[string]string) answer {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, r.BaseURL+path, rd)
	if err != nil {
		r.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, raw: string(raw), header: resp.Header}
	_ = json.Unmarshal(raw, &a.body)
	return a
}

// TestIntegrationReplicasSeeKeyRevocation: an API key created through one replica's admin API
// authenticates on the other; an edit of its scopes there (PATCH) is applied by the other (403
// scope_required on a route it lost); and once revoked there it is refused with 401 key_revoked by
// the other replica, each within a second (issue 14, Bad input), without a restart.
func TestIntegrationReplicasSeeKeyRevocation(t *testing.T) {
	d := newDeployment(t, "")
	const adminKey = "cea_replicas-admin-key"
	sum := sha256.Sum256([]byte(adminKey))
	d.extraEnv = []string{"CRISPY_ADMIN_KEY_SHA256=" + hex.EncodeToString(sum[:])}
	a, b := d.start("a", ""), d.start("b", "")
	admin := map[string]string{"Authorization": "Bearer " + adminKey}
	added := lags{what: "a key created on replica a admitted by replica b"}
	edited := lags{what: "a key's scopes edited on replica a applied by replica b"}
	revoked := lags{what: "a key revoked on replica a refused by replica b"}
	for i := 0; i < 5; i++ {
		k := a.send("POST", "/admin/tenants/"+d.tenant.String()+"/keys", map[string]any{"name": "replica test"}, admin).must(t, "create key", 201)
		secret, id := k.body["secret"].(string), k.body["id"].(string)
		start := time.Now()
		lag, ok := until(start, func() bool {
			return b.send("GET", "/sessions", nil, map[string]string{"x-api-key": secret}).status == 200
		})
		if !ok {
			t.Fatalf("replica b never admitted key %s", id)
		}
		added.add(lag)
		a.send("PATCH", "/admin/tenants/"+d.tenant.String()+"/keys/"+id, map[string]any{"scopes": []string{"search"}}, admin).must(t, "edit key", 200)
		start = time.Now()
		lag, ok = until(start, func() bool {
			r := b.send("GET", "/sessions", nil, map[string]string{"x-api-key": secret})
			return r.status == 403 && r.body["code"] == "scope_required"
		})
		if !ok {
			t.Fatalf("replica b never applied the edit of key %s", id)
		}
		edited.add(lag)
		a.send("POST", "/admin/tenants/"+d.tenant.String()+"/keys/"+id+"/revoke", nil, admin).must(t, "revoke", 200)
		start = time.Now()
		lag, ok = until(start, func() bool {
			r := b.send("GET", "/sessions", nil, map[string]string{"x-api-key": secret})
			return r.status == 401 && r.body["code"] == "key_revoked"
		})
		if !ok {
			t.Fatalf("replica b still admits revoked key %s", id)
		}
		revoked.add(lag)
	}
	added.check(t)
	edited.check(t)
	revoked.check(t)
}
