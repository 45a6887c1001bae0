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
	kind   byte
	id     string
}

type memShard struct {
	mu      sync.Mutex
	m       map[limKey]*domain.Window
	sweepAt int
	_       [40]byte // keep shards on separate cache lines
}

// MemoryLimiter is the per-process limiter. A decision takes one map lookup per scope under one
// shard lock and allocates nothing once a scope has been seen: keys are structs of the strings the
// request already holds, and a window is updated in place. Each window is two bucketed sliding
// logs (domain.Window, about 1 KiB).
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
		l.shards[i].m = map[limKey]*domain.Window{}
		l.shards[i].sweepAt = sweepAt
	}
	return l
}

// shard picks a tenant's shard: all of a decision's windows live there, so one lock covers it.
func (l *MemoryLimiter) shard(t string) *memShard {
	return &l.shards[maphash.String(l.seed, t)%memShards]
}

// Allow implements app.Limiter.
func (l *MemoryLimiter) Allow(_ context.Context, t tenant.ID, sc domain.Scopes) (domain.Decision, error) {
	now := l.now().UnixNano()
	ts := t.String()
	s := l.shard(ts)
	var ws [domain.MaxScopes]*domain.Window
	var vs [domain.MaxScopes]domain.Verdict
	ok := true
	s.mu.Lock()
	for i, x := range sc.List() {
		ws[i] = l.window(s, limKey{tenant: ts, kind: x.Kind, id: x.ID}, now, ws[:i])
		vs[i] = ws[i].Check(now, x.Limit)
		vs[i].Kind = x.Kind
		ok = ok && vs[i].Allowed
	}
	if ok {
		for _, w := range ws[:sc.N] {
			w.Take()
		}
	}
	s.mu.Unlock()
	return domain.Combine(vs[:sc.N]...), nil
}

// window returns k's window, creating it; a new key may first trigger a sweep of windows idle for
// a minute (nothing counted), which bounds memory by the scopes active in the last minute. The
// sweep spares keep, the windows this decision already holds. The caller holds the shard's lock.
func (l *MemoryLimiter) window(s *memShard, k limKey, now int64, keep []*domain.Window) *domain.Window {
	if w, ok := s.m[k]; ok {
		return w
	}
	if len(s.m) >= s.sweepAt {
		ms, _ := domain.Slots(now)
	sweep:
		for key, w := range s.m {
			for _, kw := range keep {
				if kw == w {
					continue sweep
				}
			}
			if w.Minute.Last+domain.MinuteSpan <= ms {
				delete(s.m, key)
			}
		}
		s.sweepAt = max(l.sweepFloor, 2*len(s.m))
	}
	w := &domain.Window{}
	s.m[k] = w
	return w
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
