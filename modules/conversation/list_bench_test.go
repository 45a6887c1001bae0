package conversation_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/modules/conversation/events"
	"github.com/crispy-enigma/crispy/platform/cputime"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// seedSessions appends n short sessions (started, one answered turn) of tenantID.
func seedSessions(tb testing.TB, st eventstore.Store, tenantID string, n int) {
	tb.Helper()
	ctx := context.Background()
	tid := tenant.MustParse(tenantID)
	for i := range n {
		id := sid()
		s, _ := eventstore.NewEventData(events.TypeSessionStarted, events.SessionStarted{SessionID: id, Tenant: tenantID, Title: fmt.Sprintf("session %d", i)})
		u, _ := eventstore.NewEventData(events.TypeUserMessageAdded, events.UserMessageAdded{SessionID: id, TurnID: "t", Content: "hello"})
		a, _ := eventstore.NewEventData(events.TypeAssistantMessageCompleted, events.AssistantMessageCompleted{SessionID: id, TurnID: "t", Content: "hi",
			Usage: events.Usage{TotalTokens: 10}})
		if _, err := st.Append(ctx, tenant.MustStream(tid, events.SessionCategory, id), eventstore.NoStream, s, u, a); err != nil {
			tb.Fatal(err)
		}
	}
}

// BenchmarkListSessions100k is GET /sessions of a tenant with 100,000 sessions (300,000 events):
// the first page, and the next page from its cursor. It reports the heap the module holds once its
// read models have caught up (the session list was a map of every session; it is a bbolt file).
//
// Measured on a 2-core machine under load (2026-11-29, old in-memory projection -> bbolt
// projections): heap held 12.8 -> 2.1 MB; first page 77-334 ms -> 0.2-0.5 ms, next page 55-305 ms
// -> 0.2-0.4 ms (the old list sorted every session of the tenant on each request).
func BenchmarkListSessions100k(b *testing.B) {
	st := eventstoretest.NewMemory()
	seedSessions(b, st, "acme", 100_000)
	var before runtime.MemStats
	runtime.GC()
	runtime.GC() // twice: pooled buffers (bbolt's pages) go on the second
	runtime.ReadMemStats(&before)
	e := newEnv(b, opts{store: st})
	e.sync()
	var after runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&after)
	heapMB := float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / (1 << 20)
	first := e.do("GET", "/sessions?limit=20", "acme", nil)
	if first.status != 200 || first.body["nextCursor"] == "" {
		b.Fatal(first.raw)
	}
	next := "/sessions?limit=20&cursor=" + first.body["nextCursor"].(string)
	b.ResetTimer()
	b.Run("first-page", func(b *testing.B) {
		b.ReportMetric(heapMB, "read-model-heap-MB")
		for range b.N {
			if r := e.do("GET", "/sessions?limit=20", "acme", nil); r.status != 200 {
				b.Fatal(r.raw)
			}
		}
	})
	b.Run("next-page", func(b *testing.B) {
		for range b.N {
			if r := e.do("GET", next, "acme", nil); r.status != 200 || len(r.body["sessions"].([]any)) != 20 {
				b.Fatal(r.raw)
			}
		}
	})
}

// Measured as above: from-zero (every start before) 2.5 s, 1.1-1.7 CPU-s -> 13-27 s, 10-13 CPU-s
// (a rebuild: the first start of a replica, a lost or corrupt file, a Version bump); from the
// checkpoint (every other start) 15-20 ms, 0.01 CPU-s.
//
// BenchmarkStart100k is a start of the module on a store with 100,000 sessions (300,000 events):
// the time until its read models have caught up (and the CPU time it took), from an empty read
// model folder (the first start, or a lost checkpoint) and from the checkpoint a previous start
// left (every later start).
func BenchmarkStart100k(b *testing.B) {
	st := eventstoretest.NewMemory()
	seedSessions(b, st, "acme", 100_000)
	start := func(b *testing.B, dir func() string) {
		var cpu time.Duration
		for range b.N {
			c0 := cputime.Used()
			e := newEnv(b, opts{store: st, dir: dir()})
			e.sync()
			cpu += cputime.Used() - c0
			b.StopTimer()
			e.cancel()
			b.StartTimer()
		}
		b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
	}
	b.Run("from-zero", func(b *testing.B) { start(b, b.TempDir) })
	b.Run("from-checkpoint", func(b *testing.B) {
		dir := b.TempDir()
		first := newEnv(b, opts{store: st, dir: dir})
		first.sync()
		first.cancel()
		b.ResetTimer()
		start(b, func() string { return dir })
	})
}
