package adapters_test

import (
	"strings"
	"testing"

	"github.com/crispy-enigma/crispy/modules/tenancy/internal/adapters"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// FuzzParseTenants feeds the tenants-file parser arbitrary bytes. Whatever the input, it must not
// panic, an error must stay a bounded report (at most 21 lines, none echoing a huge value), and an
// accepted file must hold only valid, distinct tenant ids.
func FuzzParseTenants(f *testing.F) {
	for _, s := range []string{
		"tenants:\n  - id: acme\n",
		"tenants:\n  - id: acme\n    hosts: [a.example]\n    apiKeys: [\"sha256:" + strings.Repeat("ab", 32) + "\"]\n",
		"tenants:\n  - id: acme\n    rateLimit: {perMinute: 30, burst: 5, windowSec: 10}\n    tokenBudget: {daily: 100, monthly: 1000}\n",
		"tenants:\n  - id: acme\n    models: {chat: openai:gpt-4o-mini, fallbacks: [builtin:offline], allowed: []}\n",
		"tenants:\n  - id: acme\n    tools: {enabled: true, allow: [summarize], deny: [x]}\n    features: {rag: true}\n    cors: {allowedOrigins: [\"https://a.example\"]}\n",
		"tenants:\n  - &a {id: acme}\n  - *a\n",
		"a: &a [*a, *a]\n",
		"tenants: [" + strings.Repeat("[", 200) + "\n",
		"tenants:\n  - id: " + strings.Repeat("x", 5000) + "\n",
		"tenants:\n  - id: acme\n    " + strings.Repeat("k", 3000) + ": 1\n",
		"\x00\xff",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ds, err := adapters.ParseTenants("tenants.yaml", data)
		if err != nil {
			msg := err.Error()
			if n := strings.Count(msg, "\n") + 1; n > 21 {
				t.Fatalf("error has %d lines, want at most 21", n)
			}
			// Each line is a location and a message; a value is quoted only in part.
			for _, line := range strings.Split(msg, "\n") {
				if len(line) > 600 {
					t.Fatalf("error line of %d bytes echoes the input: %.200q…", len(line), line)
				}
			}
			return
		}
		seen := map[string]bool{}
		for _, d := range ds {
			if _, perr := tenant.Parse(d.Config.ID); perr != nil {
				t.Fatalf("accepted invalid tenant id %q: %v", d.Config.ID, perr)
			}
			if seen[d.Config.ID] {
				t.Fatalf("accepted tenant %q twice", d.Config.ID)
			}
			seen[d.Config.ID] = true
		}
	})
}
