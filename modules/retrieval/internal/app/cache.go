package app

import (
	"sync"
	"time"

	"github.com/crispy-enigma/crispy/platform/tenant"
)

// Cache holds search answers per (tenant, normalised query, topK, filter, minScore, answer) for a TTL.
// Each tenant has a generation that its ingests and deletes bump: entries of an older generation are
// never served, so invalidation is O(1) and cannot touch another tenant.
type Cache struct {
	mu      sync.Mutex
	ttl     time.Duration
	max     int
	now     func() time.Time
	gen     map[tenant.ID]uint64
	entries map[cacheKey]cacheEntry
}

type cacheKey struct {
	tenant tenant.ID
	gen    uint64
	key    string
}

type cacheEntry struct {
	value   SearchResult
	expires time.Time
}

// NewCache builds a cache; ttl <= 0 disables it.
func NewCache(ttl time.Duration, maxEntries int, now func() time.Time) *Cache {
	if maxEntries <= 0 {
		maxEntries = 10_000
	}
	return &Cache{ttl: ttl, max: maxEntries, now: now, gen: map[tenant.ID]uint64{}, entries: map[cacheKey]cacheEntry{}}
}

// Get returns a live entry.
func (c *Cache) Get(t tenant.ID, key string) (SearchResult, bool) {
	if c.ttl <= 0 {
		return SearchResult{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	k := cacheKey{t, c.gen[t], key}
	e, ok := c.entries[k]
	if !ok {
		return SearchResult{}, false
	}
	if c.now().After(e.expires) {
		delete(c.entries, k)
		return SearchResult{}, false
	}
	return e.value, true
}

// Put stores an answer computed at generation gen (read with Generation before the search), so an
// answer computed across an ingest is not stored under the new generation.
func (c *Cache) Put(t tenant.ID, gen uint64, key string, v SearchResult) {
	if c.ttl <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen[t] != gen {
		return
	}
	if len(c.entries) >= c.max {
		c.evict()
	}
	c.entries[cacheKey{t, gen, key}] = cacheEntry{value: v, expires: c.now().Add(c.ttl)}
}

// Generation returns t's current generation.
func (c *Cache) Generation(t tenant.ID) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen[t]
}

// Invalidate drops t's entries.
func (c *Cache) Invalidate(t tenant.ID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen[t]++
	for k := range c.entries {
		if k.tenant == t {
			delete(c.entries, k)
		}
	}
}

// evict drops expired entries, then (if still full) an arbitrary half.
func (c *Cache) evict() {
	now := c.now()
	for k, e := range c.entries {
		if now.After(e.expires) {
			delete(c.entries, k)
		}
	}
	if len(c.entries) < c.max {
		return
	}
	n := 0
	for k := range c.entries {
		delete(c.entries, k)
		if n++; n >= c.max/2 {
			break
		}
	}
}
