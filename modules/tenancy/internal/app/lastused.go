package app

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/crispy-enigma/crispy/modules/tenancy/internal/domain"
	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/httpapi"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// lastUsed remembers, per replica and in memory, when each key last authenticated a request, to the
// second. Recording it as an event per request would grow the tenant's streams with its traffic:
// the module records what changed at most once a minute per tenant (TakeUsed, events.ApiKeysUsed),
// and the key list shows the later of that record and what this replica saw.
type lastUsed struct{ m sync.Map } // usedKey -> *usedAt

type usedKey struct {
	t   tenant.ID
	key string
}

type usedAt struct {
	sec     atomic.Int64 // unix seconds of the last use seen here
	flushed atomic.Int64 // sec as last taken by TakeUsed
}

func (l *lastUsed) touch(t tenant.ID, cred string, nowNs int64) {
	if !strings.HasPrefix(cred, domain.KeyIDPrefix) {
		return
	}
	sec := nowNs / int64(time.Second)
	k := usedKey{t: t, key: cred}
	v, ok := l.m.Load(k)
	if !ok {
		v, _ = l.m.LoadOrStore(k, new(usedAt))
	}
	p := v.(*usedAt)
	if p.sec.Load() < sec { // one store a second per key, not one per request
		p.sec.Store(sec)
	}
}

// LastUsed returns when the key last authenticated a request on this replica (zero: not since the
// start).
func (a *Admitter) LastUsed(t tenant.ID, keyID string) time.Time {
	v, ok := a.used.m.Load(usedKey{t: t, key: keyID})
	if !ok {
		return time.Time{}
	}
	return time.Unix(v.(*usedAt).sec.Load(), 0).UTC()
}

// TakeUsed returns, per tenant, the keys used here since the last TakeUsed and when (Unix seconds),
// for the module to record. Keys taken and not recorded are given back by Untake.
func (a *Admitter) TakeUsed() map[tenant.ID]map[string]int64 {
	out := map[tenant.ID]map[string]int64{}
	a.used.m.Range(func(k, v any) bool {
		u, key := v.(*usedAt), k.(usedKey)
		if sec := u.sec.Load(); sec > u.flushed.Load() {
			u.flushed.Store(sec)
			if out[key.t] == nil {
				out[key.t] = map[string]int64{}
			}
			out[key.t][key.key] = sec
		}
		return true
	})
	return out
}

// Untake marks keys of TakeUsed as not recorded (their record failed): the next TakeUsed returns
// them again.
func (a *Admitter) Untake(t tenant.ID, keys map[string]int64) {
	for id := range keys {
		if v, ok := a.used.m.Load(usedKey{t: t, key: id}); ok {
			v.(*usedAt).flushed.Store(0)
		}
	}
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
