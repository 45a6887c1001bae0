package tenancy_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/modules/tenancy"
)

// The rate-limit bugs of issue 14, through HTTP: perMinute 20 admitted 30 in a fresh window (burst
// added on top), perMinute 3 with windowSec 10 admitted 14 in 60 s, and rotating x-user-id lifted
// one key from the per-user ceiling to the tenant's.
func TestPerMinuteIsAHardCeilingOverHTTP(t *testing.T) {
	t.Parallel()
	key := "ce_limitsKeyOne"
	yaml := `tenants:
  - id: twenty
    apiKeys: ["` + tenancy.HashAPIKey(key) + `"]
    rateLimit: {perMinute: 20, burst: 10}
  - id: three
    rateLimit: {perMinute: 3, windowSec: 10}
  - id: rotating
    apiKeys: ["` + tenancy.HashAPIKey(key+"r") + `"]
    rateLimit: {perMinute: 5, burst: 5, tenantPerMinute: 1000}
`
	for _, c := range []struct {
		name  string
		r     func(i int) req
		every time.Duration
		want  int
	}{
		{"perMinute 20 burst 10, 10 requests a second", func(int) req { return req{tenant: "twenty", key: key} }, 100 * time.Millisecond, 20},
		{"perMinute 3 windowSec 10, one a second", func(int) req { return req{tenant: "three"} }, time.Second, 3},
		{"a new x-user-id on every request", func(i int) req { return req{tenant: "rotating", key: key + "r", user: fmt.Sprint("u", i)} }, 200 * time.Millisecond, 5},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := mustHarness(t, tenancy.Config{TenantsFile: writeFile(t, yaml)})
			admitted := 0
			i := 0
			for at := time.Duration(0); at < 60*time.Second; at += c.every {
				h.clock.Set(epoch.Add(at))
				r := h.get(t, c.r(i))
				i++
				switch r.status {
				case 200:
					admitted++
				case 429:
				default:
					t.Fatalf("request %d: %d %v", i, r.status, r.body)
				}
			}
			if admitted != c.want {
				t.Fatalf("%d requests admitted in 60 s, want %d", admitted, c.want)
			}
		})
	}
}

// keyID is a key's credential id: "key:" and the first 12 hex digits of its SHA-256.
func keyID(key string) string {
	return "key:" + strings.TrimPrefix(tenancy.HashAPIKey(key), "sha256:")[:12]
}
