package adapters

import (
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/crispy-enigma/crispy/modules/tenancy/events"
	"github.com/crispy-enigma/crispy/platform/apperr"
)

// ParseTenantConfig validates one tenant's configuration given as JSON (the admin API's body) with
// the tenants file's own rules, and reports each problem at its field path under "body" (JSON is
// YAML, so the file's parser reads it as it is).
func ParseTenantConfig(raw []byte) (events.TenantConfig, []apperr.FieldError) {
	p := &parser{file: "body"}
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil || len(doc.Content) == 0 {
		return events.TenantConfig{}, []apperr.FieldError{{Location: "body", Message: "the body is not a JSON object"}}
	}
	d, _ := p.tenant(deref(doc.Content[0]), "body")
	var out []apperr.FieldError
	for _, e := range p.errs {
		// "body:LINE: PATH: MESSAGE"
		parts := strings.SplitN(e.Error(), ": ", 3)
		if len(parts) == 3 {
			out = append(out, apperr.FieldError{Location: parts[1], Message: parts[2]})
		} else {
			out = append(out, apperr.FieldError{Location: "body", Message: e.Error()})
		}
	}
	return d.Config, out
}
