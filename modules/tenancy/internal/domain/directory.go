package domain

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/crispy-enigma/crispy/modules/tenancy/events"
	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// Public error codes of resolution and authentication (SPEC §1).
const (
	CodeTenantNotFound  = "tenant_not_found"
	CodeInvalidTenantID = "invalid_tenant_id"
	CodeInvalidUserID   = "invalid_user_id"
	CodeAPIKeyRequired  = "api_key_required"
	CodeInvalidAPIKey   = "invalid_api_key"
	CodeRateLimited     = "rate_limited"
)

// MaxUserIDLen bounds x-user-id (it becomes a limiter key).
const MaxUserIDLen = 256

// Entry is a resolvable tenant: its folded state, prepared for the request path.
type Entry struct {
	ID     tenant.ID
	Config events.TenantConfig
	Policy RatePolicy
	// Revision is the position in the tenant's stream the entry reflects.
	Revision uint64
	// digests are the hashes of every key's current secret, and of a rotated key's previous one
	// while it has a grace period; refs says whose each is.
	digests [][32]byte
	refs    []keyRef
	keys    map[string]*Key // by id
	keyed   bool            // a key with more than the audit scope exists (revoked ones count)
	audited bool            // a key with the audit scope exists
	origins map[string]struct{}
	anyOrig bool
}

// keyRef names the key a digest belongs to and whether it is its previous secret.
type keyRef struct {
	k    *Key
	prev bool
}

// NewEntry prepares a folded tenant for resolution.
func NewEntry(t *Tenant) (*Entry, error) {
	e := &Entry{ID: t.ID, Config: t.Config, Policy: PolicyFor(t.Config.RateLimit), Revision: t.LastRevision,
		origins: map[string]struct{}{}, keys: map[string]*Key{}}
	for i := range t.Keys {
		k := t.Keys[i] // a copy: the entry must not change when the tenant is folded further
		_, d, err := ParseHash(k.Hash)
		if err != nil {
			return nil, fmt.Errorf("tenant %s: recorded key hash %q: %w", t.ID, k.Hash, err)
		}
		e.keys[k.ID] = &k
		e.digests = append(e.digests, d)
		e.refs = append(e.refs, keyRef{k: &k})
		if k.PrevHash != "" && !k.PrevValidUntil.IsZero() {
			e.digests = append(e.digests, digestOf(k.PrevHash))
			e.refs = append(e.refs, keyRef{k: &k, prev: true})
		}
		e.keyed = e.keyed || !k.OnlyAudit()
		e.audited = e.audited || (!k.Revoked && k.HasScope(events.ScopeAudit))
	}
	for _, o := range t.Config.CORS.AllowedOrigins {
		if o == "*" {
			e.anyOrig = true
			continue
		}
		e.origins[strings.ToLower(o)] = struct{}{}
	}
	return e, nil
}

// RequiresKey reports whether the tenant has API keys for more than auditing (revoked and expired
// ones count: revoking a tenant's last key must not open it to anonymous callers).
func (e *Entry) RequiresKey() bool { return e.keyed }

// HasAuditKey reports whether the tenant has a key (not revoked) with the audit scope.
func (e *Entry) HasAuditKey() bool { return e.audited }

// Key returns the key whose id is cred (nil: none, or cred is not a key).
func (e *Entry) Key(cred string) *Key { return e.keys[cred] }

// Keys lists the tenant's keys in the order they were added.
func (e *Entry) Keys() []*Key {
	out := make([]*Key, 0, len(e.keys))
	for _, r := range e.refs {
		if !r.prev {
			out = append(out, r.k)
		}
	}
	return out
}

// KeyMatches compares a presented key's digest with every one of the tenant's digests in constant
// time, visiting all of them whatever the outcome, so timing reveals neither which key matched nor
// whether one did.
func (e *Entry) KeyMatches(d *[32]byte) bool { return e.keyIndex(d) >= 0 }

// keyIndex is KeyMatches telling which digest matched (-1: none), with the same constant-time visit
// of every digest.
func (e *Entry) keyIndex(d *[32]byte) int {
	idx := -1
	for i := range e.digests {
		idx = subtle.ConstantTimeSelect(subtle.ConstantTimeCompare(d[:], e.digests[i][:]), i, idx)
	}
	return idx
}

// checkKey tells a matched digest's key apart: its id, or why it no longer authenticates (revoked;
// expired; the previous secret of a rotated key past its grace period).
func (e *Entry) checkKey(i int, now time.Time) (string, string, error) {
	r := e.refs[i]
	k := r.k
	switch {
	case k.Revoked:
		return "", ReasonKeyRevoked, apperr.New(apperr.KindUnauthorized, CodeKeyRevoked, fmt.Sprintf("the API key %s was revoked", k.ID))
	case r.prev && !now.Before(k.PrevValidUntil):
		return "", ReasonKeyExpired, apperr.New(apperr.KindUnauthorized, CodeKeyExpired,
			fmt.Sprintf("this secret of API key %s was rotated and stopped working at %s; use the new one", k.ID, k.PrevValidUntil.UTC().Format(time.RFC3339)))
	case k.ExpiresAt != nil && !now.Before(*k.ExpiresAt):
		return "", ReasonKeyExpired, apperr.New(apperr.KindUnauthorized, CodeKeyExpired,
			fmt.Sprintf("the API key %s expired at %s", k.ID, k.ExpiresAt.UTC().Format(time.RFC3339)))
	}
	return k.ID, "", nil
}

// CORSHeaders adds the headers that let a browser on origin read the response, when the tenant
// allows that origin.
func (e *Entry) CORSHeaders(h http.Header, origin string) {
	if origin == "" {
		return
	}
	_, ok := e.origins[strings.ToLower(origin)]
	if !ok && !e.anyOrig {
		return
	}
	h.Set("Access-Control-Allow-Origin", origin)
	h.Add("Vary", "Origin")
	h.Set("Access-Control-Expose-Headers", "x-request-id, x-ratelimit-limit, x-ratelimit-remaining, x-ratelimit-reset, retry-after")
}

// AllowsOrigin reports whether the tenant lets a browser on origin call the API.
func (e *Entry) AllowsOrigin(origin string) bool {
	_, ok := e.origins[strings.ToLower(origin)]
	return ok || e.anyOrig
}

// AllowsOrigin reports whether the tenant named by host (when it names one) or, otherwise, any tenant
// allows origin. A CORS preflight carries no tenant header or key, so it can only be answered this
// way; the real request then gets CORS headers only from a tenant that allows the origin.
func (d *Directory) AllowsOrigin(host, origin string) bool {
	if e := d.byHost[strings.ToLower(host)]; e != nil {
		return e.AllowsOrigin(origin)
	}
	for _, e := range d.all {
		if e.AllowsOrigin(origin) {
			return true
		}
	}
	return false
}

// Directory is an immutable snapshot of the resolvable tenants.
type Directory struct {
	byID   map[string]*Entry
	byHost map[string]*Entry
	all    []*Entry // sorted by id: the order every key search visits
	// Default receives requests that name no tenant at all (the demo tenant when there is no
	// tenants file); nil otherwise.
	Default *Entry
}

// NewDirectory indexes entries. Hosts must be unique (the tenants file loader guarantees it).
func NewDirectory(entries []*Entry, def *Entry) (*Directory, error) {
	d := &Directory{byID: map[string]*Entry{}, byHost: map[string]*Entry{}, Default: def}
	for _, e := range entries {
		if _, dup := d.byID[e.ID.String()]; dup {
			return nil, fmt.Errorf("tenant %s listed twice", e.ID)
		}
		d.byID[e.ID.String()] = e
		for _, h := range e.Config.Hosts {
			h = strings.ToLower(h)
			if o, dup := d.byHost[h]; dup {
				return nil, fmt.Errorf("host %s belongs to both %s and %s", h, o.ID, e.ID)
			}
			d.byHost[h] = e
		}
		d.all = append(d.all, e)
	}
	sort.Slice(d.all, func(i, j int) bool { return d.all[i].ID.String() < d.all[j].ID.String() })
	return d, nil
}

// Get returns a tenant by id.
func (d *Directory) Get(id tenant.ID) (*Entry, bool) {
	e, ok := d.byID[id.String()]
	return e, ok
}

// IDs lists the tenants in id order.
func (d *Directory) IDs() []tenant.ID {
	out := make([]tenant.ID, len(d.all))
	for i, e := range d.all {
		out[i] = e.ID
	}
	return out
}

// Credentials are the parts of a request that select and authenticate a tenant.
type Credentials struct {
	TenantHeader string
	Host         string // lower case, without port
	APIKey       string
	// Now is when the key's expiry is judged (zero: time.Now()).
	Now time.Time
}

func (c Credentials) now() time.Time {
	if c.Now.IsZero() {
		return time.Now()
	}
	return c.Now
}

// Refusal reasons, for the auth-failure metric.
const (
	ReasonTenantNotFound  = "tenant_not_found"
	ReasonInvalidTenantID = "invalid_tenant_id"
	ReasonKeyRequired     = "api_key_required"
	ReasonInvalidKey      = "invalid_api_key"
)

// Resolve is ResolveCredential without the credential id.
func (d *Directory) Resolve(c Credentials) (*Entry, string, error) {
	e, _, reason, err := d.ResolveCredential(c)
	return e, reason, err
}

// ResolveCredential is Resolve that also names the credential that authenticated the request:
// KeyID of the presented key when one was checked, "" when the tenant was admitted without a key
// (it has none). The key is hashed once for both.
//
// Resolve applies SPEC §1: x-tenant-id, then Host, then x-api-key against every tenant's hashes. A
// key that is present must belong to the tenant named by header or host; a tenant with keys needs
// one. Another tenant's key is refused exactly like a wrong key (401), so a caller learns nothing
// about which keys exist. The reason is for metrics and logs, never for the client.
func (d *Directory) ResolveCredential(c Credentials) (*Entry, string, string, error) {
	var e *Entry
	switch {
	case c.TenantHeader != "":
		// Every key of byID is a valid id, so a hit needs no pattern check (the regexp costs more
		// than the rest of resolution); a miss is told apart as invalid or unknown.
		var ok bool
		if e, ok = d.byID[c.TenantHeader]; !ok {
			id, err := tenant.Parse(c.TenantHeader)
			if err != nil {
				return nil, "", ReasonInvalidTenantID, apperr.Invalid(CodeInvalidTenantID, "header.x-tenant-id",
					"x-tenant-id must match ^[a-z0-9][a-z0-9-]{0,62}$")
			}
			return nil, "", ReasonTenantNotFound, apperr.NotFound(CodeTenantNotFound, fmt.Sprintf("tenant %q does not exist", id))
		}
	case c.Host != "" && d.byHost[c.Host] != nil:
		e = d.byHost[c.Host]
	case c.APIKey != "":
		sum := sha256.Sum256([]byte(c.APIKey))
		// Visit every tenant and every hash, keeping the first match, so the time taken does not
		// depend on where (or whether) the key is found.
		ki := -1
		for _, t := range d.all {
			if i := t.keyIndex(&sum); i >= 0 && e == nil {
				e, ki = t, i
			}
		}
		if e == nil {
			return nil, "", ReasonInvalidKey, apperr.New(apperr.KindUnauthorized, CodeInvalidAPIKey, "the API key is not valid")
		}
		cred, reason, err := e.checkKey(ki, c.now())
		if err != nil {
			return nil, "", reason, err
		}
		return e, cred, "", nil
	case d.Default != nil:
		e = d.Default
	default:
		return nil, "", ReasonTenantNotFound, apperr.NotFound(CodeTenantNotFound,
			"no tenant named: send x-tenant-id, use a host name of the tenant, or send its x-api-key")
	}
	if c.APIKey != "" {
		sum := sha256.Sum256([]byte(c.APIKey))
		ki := e.keyIndex(&sum)
		if ki < 0 {
			return nil, "", ReasonInvalidKey, apperr.New(apperr.KindUnauthorized, CodeInvalidAPIKey, "the API key is not valid for this tenant")
		}
		cred, reason, err := e.checkKey(ki, c.now())
		if err != nil {
			return nil, "", reason, err
		}
		return e, cred, "", nil
	}
	if e.RequiresKey() {
		return nil, "", ReasonKeyRequired, apperr.New(apperr.KindUnauthorized, CodeAPIKeyRequired,
			"this tenant requires an API key (x-api-key or Authorization: Bearer)")
	}
	return e, "", "", nil
}

// Named returns the tenant that the header or host names, without authenticating the request. It is
// for labelling a refusal (metrics, CORS headers on the error so a browser can read it), never for
// admitting one.
func (d *Directory) Named(c Credentials) *Entry {
	if c.TenantHeader != "" {
		return d.byID[c.TenantHeader]
	}
	if c.Host != "" {
		return d.byHost[c.Host]
	}
	return nil
}
