package embedded

import (
	"container/list"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"hash/fnv"
	"sync"

	"github.com/crispy-enigma/crispy/platform/eventstore"
)

// Streams in the index: a stream is known by a 64-bit hash of its name. Its slot (in a table, on
// disk) holds the position of its last event and the offset of its metadata; the stream cache
// holds the streams in use, and every stream changed since the last checkpoint (dirty: its slot
// is behind). The writer is the only one that adds to the cache, so a reader can never put an
// older state in it.
//
// Two names with the same hash: the second takes the hash of its name salted with 1 (then 2…).
// Which name a slot belongs to is checked against the log (its last event, or its metadata
// record) whenever a stream is looked up from its slot, so a collision costs a read, never a
// wrong stream.
const maxSalt = 8

func hashName(name string, salt int) uint64 {
	f := fnv.New64a()
	f.Write([]byte{byte(salt)})
	f.Write([]byte(name))
	if h := f.Sum64(); h != 0 {
		return h
	}
	return 1
}

// streamEntry is what the store knows of a stream.
type streamEntry struct {
	name     string
	h        uint64
	last     uint64 // position of its last event (0: none)
	lastRev  uint64
	lastHash string // "" when it has no events
	metaAt   int64  // 1 + the offset of its latest metadata record (0: none)
	meta     eventstore.StreamMetadata
	loc      slotLoc // its slot, once it has one
	dirty    uint64  // the version not yet checkpointed (0: clean)
	elem     *list.Element
}

// streamCache holds streams by name and by hash: every dirty one, and up to max clean ones (least
// recently used go first).
type streamCache struct {
	mu     sync.Mutex
	byName map[string]*streamEntry
	byHash map[uint64]*streamEntry
	lru    list.List // clean entries, most recent first
	max    int
	ver    uint64
	nDirty int
}

func newStreamCache(max int) *streamCache {
	return &streamCache{byName: map[string]*streamEntry{}, byHash: map[uint64]*streamEntry{}, max: max}
}

// get returns a copy of name's entry.
func (c *streamCache) get(name string) (streamEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.byName[name]
	if !ok {
		return streamEntry{}, false
	}
	if e.elem != nil {
		c.lru.MoveToFront(e.elem)
	}
	return *e, true
}

// getByHash returns a copy of the entry with hash h.
func (c *streamCache) getByHash(h uint64) (streamEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.byHash[h]
	if !ok {
		return streamEntry{}, false
	}
	return *e, true
}

// addClean adds e unless name is cached already (writer only).
func (c *streamCache) addClean(e streamEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.byName[e.name]; ok {
		return
	}
	n := e
	n.dirty = 0
	n.elem = c.lru.PushFront(&n)
	c.byName[n.name] = &n
	c.byHash[n.h] = &n
	c.evict()
}

// publish records e's new state, dirty until a checkpoint writes it (writer only).
func (c *streamCache) publish(e streamEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ver++
	wasDirty := false
	cur, ok := c.byName[e.name]
	if !ok {
		n := e
		n.elem = nil
		cur = &n
		c.byName[e.name] = cur
		c.byHash[e.h] = cur
	} else {
		// e is a copy the writer took earlier: its loc, LRU place and version are not its own.
		loc, elem := cur.loc, cur.elem
		wasDirty = cur.dirty != 0
		*cur = e
		cur.loc, cur.elem = loc, elem
	}
	if cur.elem != nil {
		c.lru.Remove(cur.elem)
		cur.elem = nil
	}
	if !wasDirty {
		c.nDirty++
	}
	cur.dirty = c.ver
}

// dirtyEntries returns copies of the dirty entries.
func (c *streamCache) dirtyEntries() []streamEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]streamEntry, 0, c.nDirty)
	for _, e := range c.byName {
		if e.dirty != 0 {
			out = append(out, *e)
		}
	}
	return out
}

// markClean records that a checkpoint wrote these entries' slots at their locs: those not changed
// since become clean.
func (c *streamCache) markClean(written []streamEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, w := range written {
		e, ok := c.byName[w.name]
		if !ok {
			continue
		}
		e.loc = w.loc
		if e.dirty == w.dirty {
			e.dirty = 0
			c.nDirty--
			e.elem = c.lru.PushFront(e)
		}
	}
	c.evict()
}

func (c *streamCache) dirtyCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nDirty
}

func (c *streamCache) evict() {
	for c.lru.Len() > c.max {
		e := c.lru.Remove(c.lru.Back()).(*streamEntry)
		delete(c.byName, e.name)
		delete(c.byHash, e.h)
	}
}

// lookupStream returns the state of stream name, from the cache or from its slot; a stream that is
// in neither is new, and gets its hash. With add (the writer), what was found is cached.
func (s *Store) lookupStream(name string, add bool) (streamEntry, bool, error) {
	if e, ok := s.cache.get(name); ok {
		return e, true, nil
	}
	for salt := 0; salt < maxSalt; salt++ {
		h := s.hash(name, salt)
		if o, ok := s.cache.getByHash(h); ok {
			if o.name == name {
				return o, true, nil
			}
			continue // another stream's hash
		}
		loc, sl, found, err := s.ix.findSlot(h)
		if err != nil {
			return streamEntry{}, false, s.indexDamaged(err)
		}
		if !found {
			e := streamEntry{name: name, h: h}
			if add {
				// Cached, so that no other new stream takes h before this one is checkpointed.
				s.cache.addClean(e)
			}
			return e, false, nil
		}
		e, err := s.identify(h, loc, sl)
		if err != nil {
			return streamEntry{}, false, err
		}
		if e.name != name {
			continue
		}
		if add {
			s.cache.addClean(e)
		}
		return e, true, nil
	}
	return streamEntry{}, false, fmt.Errorf("%w: %d streams share the hashes of %s", ErrIndexDamaged, maxSalt, name)
}

// identify reads from the log what the slot sl says of its stream: the stream's name, its last
// event and its metadata.
func (s *Store) identify(h uint64, loc slotLoc, sl slot) (streamEntry, error) {
	e := streamEntry{h: h, loc: loc, last: sl.last, metaAt: sl.metaAt}
	if sl.last != 0 {
		r, err := s.ix.readPos(sl.last, nil)
		if err != nil {
			return e, s.indexDamaged(err)
		}
		if r.h != h {
			return e, s.indexDamaged(fmt.Errorf("%w: the slot of stream %x names position %d, of another stream", ErrIndexDamaged, h, sl.last))
		}
		evs, err := s.readRecs([]selected{{pos: sl.last, r: r}}, false)
		if err != nil {
			return e, err
		}
		e.name, e.lastRev, e.lastHash = evs[0].Stream, evs[0].Revision, evs[0].Hash
	}
	if sl.metaAt != 0 {
		name, md, err := s.readMetadata(sl.metaAt - 1)
		if err != nil {
			return e, err
		}
		if e.name != "" && e.name != name {
			return e, s.indexDamaged(fmt.Errorf("%w: the slot of stream %s names the metadata of %s", ErrIndexDamaged, e.name, name))
		}
		e.name, e.meta = name, md
	}
	return e, nil
}

// readMetadata reads the metadata record at off.
func (s *Store) readMetadata(off int64) (string, eventstore.StreamMetadata, error) {
	var md eventstore.StreamMetadata
	var hdr [headerSize]byte
	if _, err := s.f.ReadAt(hdr[:], off); err != nil {
		return "", md, s.indexDamaged(fmt.Errorf("%w: read the metadata record at %d: %v", ErrIndexDamaged, off, err))
	}
	n := binary.LittleEndian.Uint32(hdr[0:4])
	if hdr[8] != kindMetadata || n > maxRecord {
		return "", md, s.indexDamaged(fmt.Errorf("%w: no metadata record at %d", ErrIndexDamaged, off))
	}
	payload := make([]byte, n)
	if _, err := s.f.ReadAt(payload, off+headerSize); err != nil {
		return "", md, fmt.Errorf("read %s at %d: %w", s.f.Name(), off, err)
	}
	if crc32.Update(crc32.Update(0, crcTable, hdr[8:9]), crcTable, payload) != binary.LittleEndian.Uint32(hdr[4:8]) {
		return "", md, fmt.Errorf("%w: %s: the metadata record at offset %d does not read back as written (restore the data folder from a backup)", eventstore.ErrCorrupt, s.f.Name(), off)
	}
	name, md, err := decodeMetadata(payload)
	if err != nil {
		return "", md, fmt.Errorf("%w: %s: metadata record at offset %d: %v", eventstore.ErrCorrupt, s.f.Name(), off, err)
	}
	return name, md, nil
}

func decodeMetadata(payload []byte) (string, eventstore.StreamMetadata, error) {
	var md eventstore.StreamMetadata
	d := decoder{b: payload}
	name := d.string()
	if d.err != nil {
		return "", md, d.err
	}
	if err := json.Unmarshal(d.b, &md); err != nil {
		return "", md, fmt.Errorf("stream metadata of %s: %w", name, err)
	}
	return name, md, nil
}

// metaOf returns the metadata of the stream with hash h (nil: none), for filtering reads; memo
// keeps what one read has looked up.
func (s *Store) metaOf(h uint64, memo map[uint64]*eventstore.StreamMetadata) (*eventstore.StreamMetadata, error) {
	if m, ok := memo[h]; ok {
		return m, nil
	}
	if e, ok := s.cache.getByHash(h); ok {
		var md *eventstore.StreamMetadata
		if e.metaAt != 0 {
			md = &e.meta
		}
		memo[h] = md
		return md, nil
	}
	md, ok, gen := s.metas.get(h)
	if !ok {
		_, sl, found, err := s.ix.findSlot(h)
		if err != nil {
			return nil, s.indexDamaged(err)
		}
		if !found {
			// An event's stream is in the cache (changed since the checkpoint) or has a slot.
			return nil, s.indexDamaged(fmt.Errorf("%w: no stream has hash %x, which an event names", ErrIndexDamaged, h))
		}
		if sl.metaAt != 0 {
			_, m, err := s.readMetadata(sl.metaAt - 1)
			if err != nil {
				return nil, err
			}
			md = &m
		}
		s.metas.put(h, md, gen)
	}
	memo[h] = md
	return md, nil
}

// metaCache remembers, for reads, the metadata of streams looked up from their slots (nearly all
// have none), so that reading a tenant's events does not look up every stream's slot each time.
// The writer forgets a stream's entry whenever it changes the stream's metadata; gen makes sure a
// read that looked a slot up before that change does not put the older answer back.
type metaCache struct {
	mu  sync.Mutex
	m   map[uint64]*eventstore.StreamMetadata
	gen uint64
}

const metaCacheMax = 1 << 16

func (c *metaCache) get(h uint64) (*eventstore.StreamMetadata, bool, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	md, ok := c.m[h]
	return md, ok, c.gen
}

func (c *metaCache) put(h uint64, md *eventstore.StreamMetadata, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	if c.m == nil || len(c.m) >= metaCacheMax {
		c.m = map[uint64]*eventstore.StreamMetadata{}
	}
	c.m[h] = md
}

// forget drops h (the writer changed its metadata).
func (c *metaCache) forget(h uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	delete(c.m, h)
}
