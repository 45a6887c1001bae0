package embedded

import (
	"strings"
	"sync"
)

// keyCache keeps the recently looked-up keys (live ones with their bytes, destroyed ones as such)
// so that sealing and opening the content of a busy session or document does not read its record
// each time. Bounded by count: when full, an arbitrary entry makes room (Go's map order is
// random, which is as good as LRU for a working set smaller than the cache and costs nothing to
// keep). Entries are keyed by tenant and id together. The store drops an entry before it changes
// the record (Destroy, DestroyTenant, a repair), under its write lock, which no lookup holds.
type keyCache struct {
	mu  sync.Mutex
	max int
	m   map[string]found
}

func newKeyCache(max int) *keyCache { return &keyCache{max: max, m: map[string]found{}} }

// get returns a copy (the caller may clear the key it was given).
func (c *keyCache) get(mk string) (found, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.m[mk]
	if ok && r.key != nil {
		r.key = append([]byte(nil), r.key...)
	}
	return r, ok
}

func (c *keyCache) put(mk string, r found) {
	if c.max <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[mk]; !ok && len(c.m) >= c.max {
		for k, old := range c.m {
			clear(old.key)
			delete(c.m, k)
			break
		}
	}
	if r.key != nil {
		r.key = append([]byte(nil), r.key...)
	}
	c.m[mk] = r
}

func (c *keyCache) del(mk string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.m[mk]; ok {
		clear(old.key)
		delete(c.m, mk)
	}
}

func (c *keyCache) delPrefix(prefix string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, old := range c.m {
		if strings.HasPrefix(k, prefix) {
			clear(old.key)
			delete(c.m, k)
		}
	}
}

// clear zeroes every key held and empties the cache.
func (c *keyCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, old := range c.m {
		clear(old.key)
	}
	clear(c.m)
}
