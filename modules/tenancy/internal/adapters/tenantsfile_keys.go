package adapters

import (
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/crispy-enigma/crispy/modules/tenancy/events"
	"github.com/crispy-enigma/crispy/modules/tenancy/internal/domain"
)

// apiKeys reads a tenant's apiKeys: each a hash ("sha256:…", the key's default scopes), or a
// mapping {hash, name, scopes} that names the key and chooses its scopes (audit is never a default).
func (p *parser) apiKeys(n *yaml.Node, path string, d *domain.Desired) {
	if isNull(n) {
		return
	}
	if n.Kind != yaml.SequenceNode {
		p.errf(n, path, "must be a list of key hashes (or of {hash, name, scopes}), got %s", describe(n))
		return
	}
	seen := map[string]bool{}
	for i, it := range n.Content {
		it = deref(it)
		ip := fmt.Sprintf("%s[%d]", path, i)
		var fk domain.FileKey
		var hashNode *yaml.Node
		if it.Kind == yaml.MappingNode {
			p.mapping(it, ip, func(key string, v *yaml.Node, fp string) {
				switch key {
				case "hash":
					hashNode = v
				case "name":
					if s, ok := p.str(v, fp); ok {
						if len(s) > 200 {
							p.errf(v, fp, "must be at most 200 bytes")
						}
						fk.Name = s
					}
				case "scopes":
					scopes, _ := p.strings(v, fp, checkScope)
					if len(scopes) == 0 && !isNull(v) {
						p.errf(v, fp, "must list at least one of %s", strings.Join(events.AllScopes, ", "))
					}
					fk.Scopes = scopes
				default:
					p.unknown(fp, v, "hash, name, scopes")
				}
			})
			if hashNode == nil {
				p.errf(it, ip+".hash", "required: the key's hash (crispy tenant key new --tenant ID prints it)")
				continue
			}
			ip += ".hash"
		} else {
			hashNode = it
		}
		s, ok := p.str(hashNode, ip)
		if !ok {
			continue
		}
		h, err := checkKeyHash(s)
		if err != nil {
			p.errf(hashNode, ip, "%v", err)
			continue
		}
		if seen[h] {
			p.errf(hashNode, ip, "%q is listed twice", h)
			continue
		}
		seen[h] = true
		d.Keys = append(d.Keys, h)
		if fk.Name != "" || len(fk.Scopes) > 0 {
			if d.KeyMeta == nil {
				d.KeyMeta = map[string]domain.FileKey{}
			}
			d.KeyMeta[h] = fk
		}
	}
}

func checkScope(s string) (string, error) {
	if !events.ValidScope(s) {
		return "", fmt.Errorf("unknown scope %q; the scopes are %s", truncate(s), strings.Join(events.AllScopes, ", "))
	}
	return s, nil
}

// keyHashNode is the node holding an apiKeys item's hash (the item itself, or its hash field).
func keyHashNode(n *yaml.Node) *yaml.Node {
	if n.Kind != yaml.MappingNode {
		return n
	}
	for j := 0; j+1 < len(n.Content); j += 2 {
		if n.Content[j].Value == "hash" {
			return deref(n.Content[j+1])
		}
	}
	return n
}
