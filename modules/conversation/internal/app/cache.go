package app

import (
	"container/list"
	"sync"

	"github.com/crispy-enigma/crispy/modules/conversation/internal/domain"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// Cache keeps folded sessions by (tenant, session) with their revision, least recently used first
// out, within a budget of bytes (domain.Session.Size: message text, per-message slots and a
// per-entry overhead). A load reads only the events after the cached revision, so a long session
// costs one short read, and another replica's appends are still seen. Cached values are never
// mutated (copy on apply).
//
// A count of sessions bounded nothing: ten thousand sessions of a thousand long messages are not
// ten thousand of two. Hand-written rather than a library's: the caches at hand (otter, ristretto)
// admit by frequency, so what they keep under a budget is neither LRU nor predictable, and a
// session's entry must also refuse to go back to an older revision.
type Cache struct {
	mu      sync.Mutex
	m       map[string]*list.Element
	lru     list.List // of *cacheEntry, most recently used at the front
	budget  int64
	bytes   int64
	onEvict func() // counts an eviction (metrics); may be nil
}

type cacheEntry struct {
	key  string
	s    *domain.Session
	size int64
}

// NewCache keeps folded sessions within budget bytes (0 or less: none).
func NewCache(budget int64) *Cache { return &Cache{m: map[string]*list.Element{}, budget: budget} }

func cacheKey(t tenant.ID, id string) string { return t.String() + "/" + id }

func (c *Cache) get(k string) *domain.Session {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.m[k]
	if !ok {
		return nil
	}
	c.lru.MoveToFront(el)
	return el.Value.(*cacheEntry).s
}

func (c *Cache) put(k string, s *domain.Session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.m[k]
	if ok {
		if old := el.Value.(*cacheEntry); old.s.Exists && s.Revision < old.s.Revision {
			return // a newer fold is already cached
		}
	}
	size := s.Size() + int64(len(k))
	if size > c.budget {
		// Larger than the whole budget: not kept (nor is an older fold of it).
		if ok {
			c.remove(el)
		}
		return
	}
	if ok {
		e := el.Value.(*cacheEntry)
		c.bytes += size - e.size
		e.s, e.size = s, size
		c.lru.MoveToFront(el)
	} else {
		c.m[k] = c.lru.PushFront(&cacheEntry{key: k, s: s, size: size})
		c.bytes += size
	}
	for c.bytes > c.budget {
		c.remove(c.lru.Back())
		if c.onEvict != nil {
			c.onEvict()
		}
	}
}

// remove drops el; c.mu is held.
func (c *Cache) remove(el *list.Element) {
	e := el.Value.(*cacheEntry)
	c.lru.Remove(el)
	delete(c.m, e.key)
	c.bytes -= e.size
}

func (c *Cache) drop(k string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.m[k]; ok {
		c.remove(el)
	}
}

// Stats reports the bytes and sessions held.
func (c *Cache) Stats() (bytes int64, sessions int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bytes, len(c.m)
}

// Keys lists the cached entries, most recently used first (tests).
func (c *Cache) Keys() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.m))
	for el := c.lru.Front(); el != nil; el = el.Next() {
		out = append(out, el.Value.(*cacheEntry).key)
	}
	return out
}
