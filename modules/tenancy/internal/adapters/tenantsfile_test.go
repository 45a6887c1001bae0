package adapters_test

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/crispy-enigma/crispy/modules/tenancy/internal/adapters"
	"github.com/crispy-enigma/crispy/modules/tenancy/internal/domain"
)

var keyHash = domain.HashKey("secret-a")

func TestParseTenantsValid(t *testing.T) {
	t.Parallel()
	src := `tenants:
  - id: acme
    hosts: [Acme.Example., api.acme.example]
    apiKeys: ["` + strings.ToUpper(keyHash[:0]) + keyHash + `"]
    models:
      chat: openai:gpt-4o-mini
      embeddings: builtin:hash-384
      fallbacks: ["builtin:offline"]
      allowed: [openai:gpt-4o-mini]
    rateLimit: {perMinute: 30, burst: 5, windowSec: 10, tenantPerMinute: 300}
    tokenBudget: {daily: 100000, monthly: 1_000_000}
    sessionRetentionDays: 7
    maxMessagesPerSession: 50
    tools: {enabled: true, allow: [summarize], deny: [ingest_docs]}
    features: {rag: true, tts: false}
    cors: {allowedOrigins: ["https://App.acme.example"]}
  - id: beta
`
	ds, err := adapters.ParseTenants("tenants.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 2 {
		t.Fatalf("got %d tenants", len(ds))
	}
	a := ds[0]
	c := a.Config
	if c.ID != "acme" || !reflect.DeepEqual(c.Hosts, []string{"acme.example", "api.acme.example"}) || !reflect.DeepEqual(a.Keys, []string{keyHash}) ||
		c.Models.Chat != "openai:gpt-4o-mini" || c.RateLimit.PerMinute != 30 || c.RateLimit.TenantPerMinute != 300 ||
		c.TokenBudget.Monthly != 1_000_000 || c.SessionRetentionDays != 7 || !c.ToolAllowed("summarize") || c.ToolAllowed("ingest_docs") ||
		!c.Feature("rag") || c.Feature("tts") || !reflect.DeepEqual(c.CORS.AllowedOrigins, []string{"https://app.acme.example"}) {
		t.Fatalf("acme = %+v", a)
	}
	if ds[1].Config.ID != "beta" || len(ds[1].Keys) != 0 {
		t.Fatalf("beta = %+v", ds[1])
	}
}

func TestParseTenantsMalformed(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, src string
		want      []string // substrings of the error: file:line: field
	}{
		{"empty file", ``, []string{"t.yaml:1: tenants:"}},
		{"not yaml", "tenants:\n  - id: [acme\n", []string{"t.yaml:", "line"}},
		{"no tenants key", "tenant:\n  - id: acme\n", []string{"t.yaml:1: tenant: unknown field", "t.yaml:1: tenants: required"}},
		{"tenants not a list", "tenants: acme\n", []string{`t.yaml:1: tenants: must be a list of tenants, got "acme"`}},
		{"bad id", "tenants:\n  - id: Acme_Corp\n", []string{"t.yaml:2: tenants[0].id: must match"}},
		{"reserved id", "tenants:\n  - id: crispy-deployment\n", []string{`t.yaml:2: tenants[0].id: "crispy-deployment" is reserved`}},
		{"missing id", "tenants:\n  - hosts: [a.example]\n", []string{"t.yaml:2: tenants[0].id: required"}},
		{"unknown field", "tenants:\n  - id: acme\n    hostz: [a.example]\n", []string{"t.yaml:3: tenants[0].hostz: unknown field"}},
		{"raw key instead of hash", "tenants:\n  - id: acme\n    apiKeys:\n      - ce_plainsecretkey\n", []string{"t.yaml:4: tenants[0].apiKeys[0]: must be sha256:", `"ce_plainsecr…"`}},
		{"wrong type", "tenants:\n  - id: acme\n    rateLimit:\n      perMinute: lots\n", []string{`t.yaml:4: tenants[0].rateLimit.perMinute: must be an integer from 1 to 100000000, got "lots"`}},
		{"out of range", "tenants:\n  - id: acme\n    rateLimit: {windowSec: 0}\n", []string{"t.yaml:3: tenants[0].rateLimit.windowSec: must be an integer from 1 to 86400"}},
		{"bad model", "tenants:\n  - id: acme\n    models: {chat: gpt4}\n", []string{"t.yaml:3: tenants[0].models.chat: must be provider:model"}},
		{"chat not allowed", "tenants:\n  - id: acme\n    models:\n      chat: openai:a\n      allowed: [openai:b]\n", []string{`t.yaml:2: tenants[0].models.chat: "openai:a" is not in models.allowed`}},
		{"bad origin", "tenants:\n  - id: acme\n    cors: {allowedOrigins: [\"app.acme.example/x\"]}\n", []string{"t.yaml:3: tenants[0].cors.allowedOrigins[0]: must be an origin"}},
		{"bad host", "tenants:\n  - id: acme\n    hosts: [\"https://acme.example\"]\n", []string{"t.yaml:3: tenants[0].hosts[0]: must be a host name"}},
		{"not a bool", "tenants:\n  - id: acme\n    features: {rag: maybe}\n", []string{`t.yaml:3: tenants[0].features.rag: must be true or false, got "maybe"`}},
		{"duplicate id", "tenants:\n  - id: acme\n  - id: acme\n", []string{`t.yaml:3: tenants[1].id: "acme" is already the id of tenants[0]`}},
		{"shared host", "tenants:\n  - id: a\n    hosts: [x.example]\n  - id: b\n    hosts: [X.example]\n", []string{"t.yaml:5: tenants[1].hosts[0]: this host already belongs to tenants[0]"}},
		{"shared key", "tenants:\n  - id: a\n    apiKeys: [\"" + keyHash + "\"]\n  - id: b\n    apiKeys: [\"" + keyHash + "\"]\n", []string{"t.yaml:5: tenants[1].apiKeys[0]: this key hash already belongs to tenants[0]"}},
		{"duplicate field", "tenants:\n  - id: a\n    id: b\n", []string{"t.yaml:3: tenants[0].id: appears twice"}},
		{"unknown nested field at its key", "tenants:\n  - id: a\n    rateLimit:\n      perMinutes:\n        - 3\n", []string{"t.yaml:4: tenants[0].rateLimit.perMinutes: unknown field"}},
		{"yes is not a boolean", "tenants:\n  - id: a\n    tools: {enabled: yes}\n", []string{`t.yaml:3: tenants[0].tools.enabled: must be true or false, got "yes"`}},
		{"several problems", "tenants:\n  - id: a\n    burst: 3\n  - id: B\n", []string{"t.yaml:3: tenants[0].burst: unknown field", "t.yaml:4: tenants[1].id: must match"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ds, err := adapters.ParseTenants("t.yaml", []byte(c.src))
			if err == nil {
				t.Fatalf("accepted: %+v", ds)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
		})
	}
}

func TestLoadTenantsFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := filepath.Join(dir, "tenants.yaml")
	if err := os.WriteFile(p, []byte("tenants:\n  - id: acme\n    sessionRetentionDays: -1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := adapters.LoadTenantsFile(p)
	if err == nil || !strings.Contains(err.Error(), p+":3: tenants[0].sessionRetentionDays:") {
		t.Fatalf("error = %v", err)
	}
	if _, err := adapters.LoadTenantsFile(filepath.Join(dir, "missing.yaml")); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Fatalf("missing file error = %v", err)
	}
}
