package app

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/crispy-enigma/crispy/modules/conversation/internal/domain"
)

// session makes a fold of n messages of size bytes each.
func session(id string, n, size int, rev uint64) *domain.Session {
	s := &domain.Session{ID: id, Exists: true, Started: true, Revision: rev}
	for i := 0; i < n; i++ {
		s.Messages = append(s.Messages, domain.Message{Role: "user", Content: strings.Repeat("x", size), TurnID: fmt.Sprint(i)})
	}
	return s
}

func cost(k string, s *domain.Session) int64 { return s.Size() + int64(len(k)) }

func TestCacheEvictsTheLeastRecentlyUsedToStayWithinItsBytes(t *testing.T) {
	t.Parallel()
	a, b, c, d := session("a", 10, 100, 1), session("b", 10, 100, 1), session("c", 10, 100, 1), session("d", 10, 100, 1)
	budget := cost("a", a) + cost("b", b) + cost("c", c) // three fit, not four
	cache := NewCache(budget)
	evicted := 0
	cache.onEvict = func() { evicted++ }
	cache.put("a", a)
	cache.put("b", b)
	cache.put("c", c)
	if cache.get("a") != a { // a is now the most recently used
		t.Fatal("a not cached")
	}
	cache.put("d", d)
	if got, want := cache.Keys(), []string{"d", "a", "c"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("kept %v, want %v (b, the least recently used, out)", got, want)
	}
	if cache.get("b") != nil || evicted != 1 {
		t.Fatalf("b still cached or evictions %d, want 1", evicted)
	}
	bytes, n := cache.Stats()
	if want := cost("a", a) + cost("c", c) + cost("d", d); bytes != want || n != 3 {
		t.Fatalf("accounted %d bytes in %d sessions, want %d in 3", bytes, n, want)
	}

	// A bigger fold of a cached session replaces it and pushes others out; an older one is refused.
	big := session("a", 25, 100, 2)
	cache.put("a", big)
	if cache.get("a") != big {
		t.Fatal("the newer fold was not cached")
	}
	cache.put("a", session("a", 1, 1, 1))
	if cache.get("a") != big {
		t.Fatal("an older revision replaced a newer one")
	}
	bytes, _ = cache.Stats()
	if bytes > budget {
		t.Fatalf("%d bytes held over a budget of %d", bytes, budget)
	}

	// A session larger than the whole budget is not kept, and its older fold goes with it.
	cache.put("a", session("a", 100, 100, 3))
	if cache.get("a") != nil {
		t.Fatal("a session over the whole budget was cached")
	}
	cache.drop("d")
	cache.drop("c")
	if bytes, n := cache.Stats(); bytes != 0 || n != 0 {
		t.Fatalf("after dropping everything: %d bytes in %d sessions", bytes, n)
	}
}

func TestSessionSizeCountsItsText(t *testing.T) {
	t.Parallel()
	small, large := session("s", 100, 10, 1), session("s", 100, 1000, 1)
	if d := large.Size() - small.Size(); d < 100*990 {
		t.Fatalf("990 more bytes in each of 100 messages cost %d more", d)
	}
	if one, two := session("s", 1, 0, 1).Size(), session("s", 2, 0, 1).Size(); two <= one {
		t.Fatalf("an empty message costs nothing: %d vs %d", one, two)
	}
}

// Under concurrent loads of sessions of every size, the cache never holds more than its budget and
// its count of bytes is the sum of what it holds.
func TestCacheStaysWithinItsBytesUnderLoad(t *testing.T) {
	t.Parallel()
	const budget = 1 << 20
	cache := NewCache(budget)
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for i := 0; i < 2000; i++ {
				k := fmt.Sprint("t/", r.IntN(500))
				switch r.IntN(4) {
				case 0:
					cache.get(k)
				case 1:
					cache.drop(k)
				default:
					cache.put(k, session(k, 1+r.IntN(40), r.IntN(2000), uint64(i)))
				}
				if bytes, _ := cache.Stats(); bytes > budget {
					t.Errorf("%d bytes held over a budget of %d", bytes, budget)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	cache.mu.Lock()
	defer cache.mu.Unlock()
	var sum int64
	for el := cache.lru.Front(); el != nil; el = el.Next() {
		e := el.Value.(*cacheEntry)
		if e.size != cost(e.key, e.s) {
			t.Fatalf("%s accounted %d, costs %d", e.key, e.size, cost(e.key, e.s))
		}
		sum += e.size
	}
	if sum != cache.bytes || len(cache.m) != cache.lru.Len() {
		t.Fatalf("accounted %d bytes for entries of %d (%d keys, %d in the list)", cache.bytes, sum, len(cache.m), cache.lru.Len())
	}
}

func heapNow() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkCacheAccounting caches folds of ordinary sessions and reports the heap they take next
// to what the budget counts for them (heap/accounted above 1: the budget is optimistic).
func BenchmarkCacheAccounting(b *testing.B) {
	for _, msgs := range []int{2, 40} {
		b.Run(fmt.Sprint(msgs, "-messages"), func(b *testing.B) {
			const n = 5000
			for i := 0; i < b.N; i++ {
				c := NewCache(1 << 40)
				before := heapNow()
				for j := 0; j < n; j++ {
					id := fmt.Sprintf("0b0f6a52-6f7e-4c55-9a8e-%012d", j)
					s := &domain.Session{ID: id, Exists: true, Started: true, Title: "How are you today?"}
					for m := 0; m < msgs; m++ {
						s.Messages = append(s.Messages, domain.Message{Role: "user", Content: strings.Repeat("x", 20+m%7*30), TurnID: fmt.Sprintf("0190b6a8-7a2e-7c3d-9e4f-%012d", m), Model: strings.Clone("fake:zero")})
					}
					s = s.Clone() // as the repository caches it
					c.put(cacheKey(acme, id), s)
				}
				after := heapNow()
				bytes, held := c.Stats()
				b.ReportMetric(float64(after-before)/float64(held), "heap-B/session")
				b.ReportMetric(float64(bytes)/float64(held), "accounted-B/session")
			}
		})
	}
}
