// Package adapters holds the tenancy module's I/O: the tenants YAML file, and the in-memory and
// Redis rate limiters.
package adapters

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"

	"github.com/crispy-enigma/crispy/modules/tenancy/events"
	"github.com/crispy-enigma/crispy/modules/tenancy/internal/domain"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// maxFileErrors bounds how many problems one load reports.
const maxFileErrors = 20

// LoadTenantsFile reads and validates the tenants file at path. Every problem is reported as
// "path:line: field.path: message"; all of them (up to 20) are returned joined.
func LoadTenantsFile(path string) ([]domain.Desired, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("tenants file: %w", err)
	}
	defer f.Close()
	// A tenants file is configuration: a few KB per tenant. Reading it whole is fine; reading a
	// mistaken multi-gigabyte path whole is not.
	b, err := io.ReadAll(io.LimitReader(f, maxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("tenants file: %w", err)
	}
	if len(b) > maxFileBytes {
		return nil, fmt.Errorf("tenants file %s is over %d MiB; is it the right file?", path, maxFileBytes>>20)
	}
	return ParseTenants(path, b)
}

// maxFileBytes bounds the tenants file.
const maxFileBytes = 16 << 20

// ParseTenants validates the YAML in data; name is the file name used in messages.
//
// It walks yaml.Node rather than decoding into structs so that every message carries the line and
// the field path, unknown fields are errors, and a wrongly typed value is named with what was found.
func ParseTenants(name string, data []byte) ([]domain.Desired, error) {
	p := &parser{file: name}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %v", name, err)
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil, fmt.Errorf("%s:1: tenants: the file is empty; it needs a top-level tenants: list", name)
	}
	root := deref(doc.Content[0])
	var list *yaml.Node
	p.mapping(root, "", func(key string, v *yaml.Node, path string) {
		switch key {
		case "tenants":
			list = v
		default:
			p.unknown(path, v, "tenants")
		}
	})
	if root.Kind == yaml.MappingNode && list == nil {
		p.errf(root, "tenants", "required: the file's top level must be tenants: followed by a list")
	}
	var out []domain.Desired
	if list != nil {
		if list.Kind != yaml.SequenceNode {
			p.errf(list, "tenants", "must be a list of tenants, got %s", describe(list))
		} else {
			for i, item := range list.Content {
				if d, ok := p.tenant(deref(item), fmt.Sprintf("tenants[%d]", i)); ok {
					out = append(out, d)
				}
			}
			p.crossCheck(list)
		}
	}
	if len(p.errs) > 0 {
		return nil, errors.Join(p.errs...)
	}
	return out, nil
}

type parser struct {
	file string
	errs []error
	key  *yaml.Node // the key being visited, so an unknown field is reported at its own line
}

func (p *parser) errf(n *yaml.Node, path, format string, args ...any) {
	if len(p.errs) == maxFileErrors {
		p.errs = append(p.errs, fmt.Errorf("%s: more problems not shown", p.file))
	}
	if len(p.errs) > maxFileErrors {
		return
	}
	// A message names where and what, never the whole of what was found: a value or key pasted by
	// mistake (a secret, a megabyte of text) is cut.
	p.errs = append(p.errs, fmt.Errorf("%s:%d: %s: %s", p.file, n.Line, clip(path, 200), clip(fmt.Sprintf(format, args...), 300)))
}

// clip cuts s to at most max bytes on a rune boundary, marking the cut.
func clip(s string, max int) string {
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func deref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n != nil && n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		return deref(n.Content[0])
	}
	return n
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "nothing (null)"
		}
		return strconv.Quote(n.Value)
	}
	return "an unexpected node"
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// mapping visits the keys of a mapping node, rejecting duplicates and non-mappings.
func (p *parser) mapping(n *yaml.Node, path string, visit func(key string, v *yaml.Node, path string)) bool {
	if n.Kind != yaml.MappingNode {
		if path == "" {
			p.errf(n, "tenants", "the top level must be a mapping with tenants:, got %s", describe(n))
		} else {
			p.errf(n, path, "must be a mapping, got %s", describe(n))
		}
		return false
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], deref(n.Content[i+1])
		if k.Tag == "!!merge" {
			p.errf(k, path, "merge keys (<<) are not supported")
			continue
		}
		fp := join(path, k.Value)
		if seen[k.Value] {
			p.errf(k, fp, "appears twice")
			continue
		}
		seen[k.Value] = true
		p.key = k
		visit(k.Value, v, fp)
	}
	return true
}

func (p *parser) unknown(path string, v *yaml.Node, known string) {
	if p.key != nil {
		v = p.key
	}
	p.errf(v, path, "unknown field (known: %s)", known)
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

func (p *parser) str(n *yaml.Node, path string) (string, bool) {
	if n.Kind != yaml.ScalarNode || isNull(n) {
		p.errf(n, path, "must be a string, got %s", describe(n))
		return "", false
	}
	return n.Value, true
}

func (p *parser) intIn(n *yaml.Node, path string, min, max int64) (int64, bool) {
	what := fmt.Sprintf("an integer from %d to %d", min, max)
	if min == 1 && max >= math.MaxInt32 {
		what = "a positive integer"
	}
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
		p.errf(n, path, "must be %s, got %s", what, describe(n))
		return 0, false
	}
	v, err := strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 0, 64)
	if err != nil || v < min || v > max {
		p.errf(n, path, "must be %s, got %s", what, n.Value)
		return 0, false
	}
	return v, true
}

func (p *parser) boolean(n *yaml.Node, path string) (bool, bool) {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
		p.errf(n, path, "must be true or false, got %s", describe(n))
		return false, false
	}
	v, err := strconv.ParseBool(n.Value)
	if err != nil {
		// YAML 1.1 spellings (yes/no/on/off) that yaml.v3 still tags !!bool.
		switch strings.ToLower(n.Value) {
		case "yes", "on", "y":
			return true, true
		case "no", "off", "n":
			return false, true
		}
		p.errf(n, path, "must be true or false, got %s", describe(n))
		return false, false
	}
	return v, true
}

// strings reads a list of strings, each checked by check (which returns the normalised value).
func (p *parser) strings(n *yaml.Node, path string, check func(string) (string, error)) ([]string, []*yaml.Node) {
	if isNull(n) {
		return nil, nil
	}
	if n.Kind != yaml.SequenceNode {
		p.errf(n, path, "must be a list, got %s", describe(n))
		return nil, nil
	}
	var out []string
	var nodes []*yaml.Node
	seen := map[string]bool{}
	for i, it := range n.Content {
		it = deref(it)
		ip := fmt.Sprintf("%s[%d]", path, i)
		s, ok := p.str(it, ip)
		if !ok {
			continue
		}
		if check != nil {
			v, err := check(s)
			if err != nil {
				p.errf(it, ip, "%v", err)
				continue
			}
			s = v
		}
		if seen[s] {
			p.errf(it, ip, "%q is listed twice", s)
			continue
		}
		seen[s] = true
		out = append(out, s)
		nodes = append(nodes, it)
	}
	return out, nodes
}

var (
	hostPattern    = regexp.MustCompile(`^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$`)
	modelPattern   = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*:[^\s]+$`)
	featurePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
	toolPattern    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
)

func checkHost(s string) (string, error) {
	h := strings.ToLower(strings.TrimSuffix(s, "."))
	if len(h) > 253 || !hostPattern.MatchString(h) {
		return "", fmt.Errorf("must be a host name without scheme or port (e.g. api.acme.example), got %q", s)
	}
	return h, nil
}

func checkModel(s string) (string, error) {
	if !modelPattern.MatchString(s) {
		return "", fmt.Errorf("must be provider:model (e.g. openai:gpt-4o-mini), got %q", s)
	}
	return s, nil
}

func checkTool(s string) (string, error) {
	if !toolPattern.MatchString(s) {
		return "", fmt.Errorf("must be a tool name (letters, digits, '.', '_', '-'), got %q", s)
	}
	return s, nil
}

func checkKeyHash(s string) (string, error) {
	h, _, err := domain.ParseHash(s)
	if err != nil {
		return "", fmt.Errorf("%v; got %q (generate one with: crispy tenant key new --tenant ID)", err, truncate(s))
	}
	return h, nil
}

// truncate keeps a message from echoing a whole secret someone pasted by mistake.
func truncate(s string) string {
	if len(s) > 12 {
		return s[:12] + "…"
	}
	return s
}

func checkOrigin(s string) (string, error) {
	if s == "*" {
		return s, nil
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") ||
		u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("must be an origin such as https://app.acme.example (scheme, host, optional port) or *, got %q", s)
	}
	return strings.ToLower(u.Scheme + "://" + u.Host), nil
}

const tenantFields = "id, hosts, apiKeys, models, rateLimit, tokenBudget, sessionRetentionDays, maxMessagesPerSession, tools, features, cors, systemPrompt, search"

func (p *parser) tenant(n *yaml.Node, path string) (domain.Desired, bool) {
	var d domain.Desired
	before := len(p.errs)
	c := &d.Config
	var idNode *yaml.Node
	ok := p.mapping(n, path, func(key string, v *yaml.Node, fp string) {
		switch key {
		case "id":
			idNode = v
			if s, ok := p.str(v, fp); ok {
				if id, err := tenant.Parse(s); err != nil {
					p.errf(v, fp, "must match ^[a-z0-9][a-z0-9-]{0,62}$ (lower-case letters, digits, '-'), got %q", s)
				} else if id.Reserved() {
					p.errf(v, fp, "%q is reserved for the deployment's own records; choose another id", s)
				} else {
					c.ID = s
				}
			}
		case "hosts":
			c.Hosts, _ = p.strings(v, fp, checkHost)
		case "apiKeys":
			p.apiKeys(v, fp, &d)
		case "models":
			p.models(v, fp, &c.Models)
		case "systemPrompt":
			if sp, ok := p.str(v, fp); ok {
				if len(sp) > 32_000 {
					p.errf(v, fp, "must be at most 32000 bytes")
				} else {
					c.SystemPrompt = sp
				}
			}
		case "rateLimit":
			p.mapping(v, fp, func(k string, v *yaml.Node, fp string) {
				switch k {
				case "perMinute":
					x, _ := p.intIn(v, fp, 1, 100_000_000)
					c.RateLimit.PerMinute = int(x)
				case "burst":
					x, _ := p.intIn(v, fp, 1, 100_000_000)
					c.RateLimit.Burst = int(x)
				case "windowSec":
					x, _ := p.intIn(v, fp, 1, 86_400)
					c.RateLimit.WindowSec = int(x)
				case "tenantPerMinute":
					x, _ := p.intIn(v, fp, 1, 1_000_000_000)
					c.RateLimit.TenantPerMinute = int(x)
				case "keyPerMinute":
					x, _ := p.intIn(v, fp, 1, 1_000_000_000)
					c.RateLimit.KeyPerMinute = int(x)
				case "tokensPerMinute":
					x, _ := p.intIn(v, fp, 1, 1_000_000_000_000)
					c.RateLimit.TokensPerMinute = int(x)
				default:
					p.unknown(fp, v, "perMinute, burst, windowSec, tenantPerMinute, keyPerMinute, tokensPerMinute")
				}
			})
		case "tokenBudget":
			p.mapping(v, fp, func(k string, v *yaml.Node, fp string) {
				switch k {
				case "daily":
					c.TokenBudget.Daily, _ = p.intIn(v, fp, 1, math.MaxInt64)
				case "monthly":
					c.TokenBudget.Monthly, _ = p.intIn(v, fp, 1, math.MaxInt64)
				default:
					p.unknown(fp, v, "daily, monthly")
				}
			})
		case "sessionRetentionDays":
			x, _ := p.intIn(v, fp, 1, 36_500)
			c.SessionRetentionDays = int(x)
		case "maxMessagesPerSession":
			x, _ := p.intIn(v, fp, 1, 1_000_000)
			c.MaxMessagesPerSession = int(x)
		case "tools":
			p.mapping(v, fp, func(k string, v *yaml.Node, fp string) {
				switch k {
				case "enabled":
					if b, ok := p.boolean(v, fp); ok {
						c.Tools.Enabled = &b
					}
				case "allow":
					c.Tools.Allow, _ = p.strings(v, fp, checkTool)
				case "deny":
					c.Tools.Deny, _ = p.strings(v, fp, checkTool)
				default:
					p.unknown(fp, v, "enabled, allow, deny")
				}
			})
		case "features":
			if isNull(v) {
				return
			}
			p.mapping(v, fp, func(k string, v *yaml.Node, fp string) {
				if !featurePattern.MatchString(k) {
					p.errf(v, fp, "feature names are letters, digits, '.', '_', '-'")
					return
				}
				if b, ok := p.boolean(v, fp); ok {
					if c.Features == nil {
						c.Features = map[string]bool{}
					}
					c.Features[k] = b
				}
			})
		case "search":
			p.search(v, fp, &c.Search)
		case "cors":
			p.mapping(v, fp, func(k string, v *yaml.Node, fp string) {
				switch k {
				case "allowedOrigins":
					c.CORS.AllowedOrigins, _ = p.strings(v, fp, checkOrigin)
				default:
					p.unknown(fp, v, "allowedOrigins")
				}
			})
		default:
			p.unknown(fp, v, tenantFields)
		}
	})
	if !ok {
		return d, false
	}
	if idNode == nil {
		p.errf(n, join(path, "id"), "required")
	}
	if m := c.Models; len(m.Allowed) > 0 && m.Chat != "" && !contains(m.Allowed, m.Chat) {
		p.errf(n, join(path, "models.chat"), "%q is not in models.allowed", m.Chat)
	}
	return d, len(p.errs) == before
}

// search reads a tenant's retrieval settings (issue 16).
func (p *parser) search(n *yaml.Node, path string, s *events.Search) {
	p.mapping(n, path, func(k string, v *yaml.Node, fp string) {
		switch k {
		case "mode":
			if m, ok := p.str(v, fp); ok {
				if m != "hybrid" && m != "vector" && m != "lexical" {
					p.errf(v, fp, "must be hybrid, vector or lexical, got %q", m)
					return
				}
				s.Mode = m
			}
		case "rrfK":
			x, _ := p.intIn(v, fp, 1, 10_000)
			s.RRFK = int(x)
		case "vectorWeight", "lexicalWeight":
			f, err := strconv.ParseFloat(v.Value, 64)
			if v.Kind != yaml.ScalarNode || (v.Tag != "!!float" && v.Tag != "!!int") || err != nil || f <= 0 || f > 100 {
				p.errf(v, fp, "must be a number above 0 and at most 100")
				return
			}
			if k == "vectorWeight" {
				s.VectorWeight = f
			} else {
				s.LexicalWeight = f
			}
		case "feedback":
			if b, ok := p.boolean(v, fp); ok {
				s.Feedback = &b
			}
		case "minRerankScore": // rerank (retrieval)
			f, err := strconv.ParseFloat(v.Value, 64)
			if v.Kind != yaml.ScalarNode || (v.Tag != "!!float" && v.Tag != "!!int") || err != nil || f <= 0 || f > 1 {
				p.errf(v, fp, "must be a number above 0 and at most 1 (the reranker's score)")
				return
			}
			s.MinRerankScore = f
		default:
			p.unknown(fp, v, "mode, rrfK, vectorWeight, lexicalWeight, feedback, minRerankScore")
		}
	})
}

func (p *parser) models(n *yaml.Node, path string, m *events.Models) {
	p.mapping(n, path, func(k string, v *yaml.Node, fp string) {
		switch k {
		case "chat", "embeddings":
			s, ok := p.str(v, fp)
			if !ok {
				return
			}
			if _, err := checkModel(s); err != nil {
				p.errf(v, fp, "%v", err)
				return
			}
			if k == "chat" {
				m.Chat = s
			} else {
				m.Embeddings = s
			}
		case "rerank": // rerank (retrieval): a provider:model, or none
			s, ok := p.str(v, fp)
			if !ok {
				return
			}
			if s != "none" {
				if _, err := checkModel(s); err != nil {
					p.errf(v, fp, "%v (or none)", err)
					return
				}
			}
			m.Rerank = s
		case "fallbacks":
			m.Fallbacks, _ = p.strings(v, fp, checkModel)
		case "allowed":
			m.Allowed, _ = p.strings(v, fp, checkModel)
		case "aliases":
			p.mapping(v, fp, func(alias string, v *yaml.Node, fp string) {
				if !aliasPattern.MatchString(alias) || strings.Contains(alias, ":") {
					p.errf(v, fp, "an alias is 1-64 letters, digits and ._- (no ':'), got %q", alias)
					return
				}
				s, ok := p.str(v, fp)
				if !ok {
					return
				}
				if _, err := checkModel(s); err != nil {
					p.errf(v, fp, "%v", err)
					return
				}
				if m.Aliases == nil {
					m.Aliases = map[string]string{}
				}
				m.Aliases[alias] = s
			})
		case "retry":
			m.Retry = &events.Retry{}
			p.mapping(v, fp, func(k string, v *yaml.Node, fp string) {
				switch k {
				case "attempts":
					x, _ := p.intIn(v, fp, 0, 10)
					m.Retry.Attempts = int(x)
				case "backoffMs":
					x, _ := p.intIn(v, fp, 0, 60_000)
					m.Retry.BackoffMs = int(x)
				default:
					p.unknown(fp, v, "attempts, backoffMs")
				}
			})
		case "maxTokens":
			p.mapping(v, fp, func(model string, v *yaml.Node, fp string) {
				if _, err := checkModel(model); err != nil {
					p.errf(v, fp, "a key of maxTokens is a model (provider:model): %v", err)
					return
				}
				x, ok := p.intIn(v, fp, 1, 1_000_000)
				if !ok {
					return
				}
				if m.MaxTokens == nil {
					m.MaxTokens = map[string]int{}
				}
				m.MaxTokens[model] = int(x)
			})
		default:
			p.unknown(fp, v, "chat, embeddings, rerank, fallbacks, allowed, aliases, retry, maxTokens")
		}
	})
}

var aliasPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

// crossCheck rejects ids, hosts and key hashes that two tenants share: each would make resolution
// ambiguous, and a shared key would let one tenant act as another.
func (p *parser) crossCheck(list *yaml.Node) {
	// Re-walk the nodes so messages point at the second occurrence's line.
	ids, hosts, keys := map[string]int{}, map[string]int{}, map[string]int{}
	for i, item := range list.Content {
		item = deref(item)
		if item.Kind != yaml.MappingNode {
			continue
		}
		path := fmt.Sprintf("tenants[%d]", i)
		for j := 0; j+1 < len(item.Content); j += 2 {
			k, v := item.Content[j], deref(item.Content[j+1])
			switch k.Value {
			case "id":
				if first, dup := ids[v.Value]; dup && v.Kind == yaml.ScalarNode {
					p.errf(v, path+".id", "%q is already the id of tenants[%d]", v.Value, first)
				} else {
					ids[v.Value] = i
				}
			case "hosts", "apiKeys":
				if v.Kind != yaml.SequenceNode {
					continue
				}
				seen, norm := hosts, checkHost
				if k.Value == "apiKeys" {
					seen, norm = keys, checkKeyHash
				}
				for x, it := range v.Content {
					it = keyHashNode(deref(it))
					s, err := norm(it.Value)
					if err != nil {
						continue
					}
					if first, dup := seen[s]; dup && first != i {
						what := "host"
						if k.Value == "apiKeys" {
							what = "key hash"
						}
						p.errf(it, fmt.Sprintf("%s.%s[%d]", path, k.Value, x), "this %s already belongs to tenants[%d]", what, first)
					} else {
						seen[s] = i
					}
				}
			}
		}
	}
}
