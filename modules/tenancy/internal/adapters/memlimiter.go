package adapters

import (
	"context"
	"hash/maphash"
	"sync"
	"time"

	"github.com/crispy-enigma/crispy/modules/tenancy/internal/domain"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

const (
	memShards = 64
	// sweepAt is the shard size at which inserting a new key first drops idle windows.
	sweepAt = 1024
)

type limKey struct {
	tenant string
	user   string
	total  bool
}

type memEntry struct {
	w   domain.Window
	win int64
}

type memShard struct {
	mu      sync.Mutex
	m       map[limKey]*memEntry
	sweepAt int
	_       [40]byte // keep shards on separate cache lines
}

// MemoryLimiter is the per-process limiter. A decision takes two map lookups under one shard lock and
// allocates nothing once a key has been seen: keys are structs of the strings the request already
// holds, and a window is updated in place.
type MemoryLimiter struct {
	seed       maphash.Seed
	now        func() time.Time
	sweepFloor int // the least shard size that triggers a sweep (sweepAt; smaller in tests)
	shards     [memShards]memShard
}

// NewMemoryLimiter returns a limiter reading time from now (time.Now when nil).
func NewMemoryLimiter(now func() time.Time) *MemoryLimiter {
	if now == nil {
		now = time.Now
	}
	l := &MemoryLimiter{seed: maphash.MakeSeed(), now: now, sweepFloor: sweepAt}
	for i := range l.shards {
		l.shards[i].m = map[limKey]*memEntry{}
		l.shards[i].sweepAt = sweepAt
	}
	return l
}

// shard picks a tenant's shard: both of a decision's windows live there, so one lock covers it.
func (l *MemoryLimiter) shard(t string) *memShard {
	return &l.shards[maphash.String(l.seed, t)%memShards]
}

// Allow implements app.Limiter.
func (l *MemoryLimiter) Allow(_ context.Context, t tenant.ID, user string, p domain.RatePolicy) (domain.Decision, error) {
	now := l.now().UnixNano()
	kk := limKey{tenant: t.String(), user: user}
	kt := limKey{tenant: t.String(), total: true}
	s := l.shard(kk.tenant)
	s.mu.Lock()
	ek := l.entry(s, kk, now, nil)
	et := l.entry(s, kt, now, ek)
	vk := ek.w.Check(now, p.Window, p.KeyLimit)
	vt := et.w.Check(now, p.Window, p.TenantLimit)
	if vk.Allowed && vt.Allowed {
		ek.w.Take()
		et.w.Take()
	}
	ek.win, et.win = int64(p.Window), int64(p.Window)
	s.mu.Unlock()
	return domain.Combine(vk, vt), nil
}

// entry returns k's window in shard i, creating it; a new key may first trigger a sweep of windows
// idle for two window lengths (both buckets empty), which bounds memory by the keys active in the
// last two windows. The sweep spares keep, the window this decision already holds. The caller holds
// the shard's lock.
func (l *MemoryLimiter) entry(s *memShard, k limKey, now int64, keep *memEntry) *memEntry {
	if e, ok := s.m[k]; ok {
		return e
	}
	if len(s.m) >= s.sweepAt {
		for key, v := range s.m {
			if v != keep && v.w.Start+2*v.win <= now {
				delete(s.m, key)
			}
		}
		s.sweepAt = max(l.sweepFloor, 2*len(s.m))
	}
	e := &memEntry{}
	s.m[k] = e
	return e
}

// Len is the number of windows held (for tests).
func (l *MemoryLimiter) Len() int {
	n := 0
	for i := range l.shards {
		l.shards[i].mu.Lock()
		n += len(l.shards[i].m)
		l.shards[i].mu.Unlock()
	}
	return n
}
