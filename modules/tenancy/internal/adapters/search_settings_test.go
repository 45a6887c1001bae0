package adapters_test

import (
	"strings"
	"testing"

	"github.com/crispy-enigma/crispy/modules/tenancy/internal/adapters"
)

// A tenant's `search:` settings (issue 16) are read, and wrong values are refused naming the line.
func TestParseTenantSearchSettings(t *testing.T) {
	t.Parallel()
	ds, err := adapters.ParseTenants("tenants.yaml", []byte(`tenants:
  - id: acme
    search: {mode: lexical, rrfK: 20, vectorWeight: 0.5, lexicalWeight: 2, feedback: false}
`))
	if err != nil {
		t.Fatal(err)
	}
	s := ds[0].Config.Search
	if s.Mode != "lexical" || s.RRFK != 20 || s.VectorWeight != 0.5 || s.LexicalWeight != 2 || s.Feedback == nil || *s.Feedback {
		t.Fatalf("search settings %+v", s)
	}
	for src, want := range map[string]string{
		"search: {mode: semantic}":  "hybrid, vector or lexical",
		"search: {rrfK: 0}":         "rrfK",
		"search: {vectorWeight: 0}": "above 0",
		"search: {weight: 1}":       "mode, rrfK",
	} {
		_, err := adapters.ParseTenants("tenants.yaml", []byte("tenants:\n  - id: acme\n    "+src+"\n"))
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "tenants.yaml:3") {
			t.Errorf("%s: %v, want an error at line 3 saying %q", src, err, want)
		}
	}
}
