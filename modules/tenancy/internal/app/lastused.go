package app

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/crispy-enigma/crispy/modules/tenancy/internal/domain"
	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/httpapi"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// lastUsed remembers, per replica and in memory, when each key last authenticated a request, to the
// second. Recording it as an event per request would grow the tenant's stream with its traffic;
// the admin API's key list reports what this replica saw (zero after a restart until the key is
// used again).
type lastUsed struct{ m sync.Map } // "tenant/keyID" -> *atomic.Int64 (unix seconds)

func (l *lastUsed) touch(t tenant.ID, cred string, nowNs int64) {
	if cred == "" {
		return
	}
	sec := nowNs / int64(time.Second)
	k := t.String() + "/" + cred
	v, ok := l.m.Load(k)
	if !ok {
		v, _ = l.m.LoadOrStore(k, new(atomic.Int64))
	}
	p := v.(*atomic.Int64)
	if p.Load() != sec { // one store a second per key, not one per request
		p.Store(sec)
	}
}

// LastUsed returns when the key last authenticated a request on this replica (zero: not since the
// start).
func (a *Admitter) LastUsed(t tenant.ID, keyID string) time.Time {
	v, ok := a.used.m.Load(t.String() + "/" + keyID)
	if !ok {
		return time.Time{}
	}
	return time.Unix(v.(*atomic.Int64).Load(), 0).UTC()
}

// admitAdmin admits an admin key for the tenant the request names (x-tenant-id or Host; an admin
// key belongs to no tenant, so it cannot select one). It is not rate limited.
func (a *Admitter) admitAdmin(s *snapshot, c domain.Credentials, id, origin string, out httpapi.Admitted) (httpapi.Admitted, error) {
	e := s.dir.Named(c)
	if e == nil {
		if c.TenantHeader == "" && c.Host == "" {
			return out, apperr.NotFound(domain.CodeTenantNotFound, "an admin key names no tenant: send x-tenant-id")
		}
		return out, apperr.NotFound(domain.CodeTenantNotFound, fmt.Sprintf("tenant %q does not exist", c.TenantHeader))
	}
	e.CORSHeaders(out.Headers, origin)
	out.Tenant, out.Credential = e.ID, id
	return out, nil
}
