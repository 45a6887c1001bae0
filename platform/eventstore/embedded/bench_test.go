package embedded_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// payload200 makes the event's JSON data 200 bytes.
var payload200 = []byte(`{"pad":"` + strings.Repeat("x", 190) + `"}`)

// BenchmarkAppendConcurrent64 measures fsync'd appends from 64 writers on 64 streams
// (target: >= 20,000 events/s on a 2-core machine).
func BenchmarkAppendConcurrent64(b *testing.B) {
	s := open(b, b.TempDir())
	defer s.Close()
	const writers = 64
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			st := tenant.MustStream(acme, "session", fmt.Sprintf("w%d", w))
			for next.Add(1) <= int64(b.N) {
				if _, err := s.Append(context.Background(), st, eventstore.Any, eventstore.EventData{Type: "t.E", Data: payload200}); err != nil {
					b.Error(err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
}

// BenchmarkAppendSingleWriter reports the latency distribution of one writer's fsync'd appends.
func BenchmarkAppendSingleWriter(b *testing.B) {
	s := open(b, b.TempDir())
	defer s.Close()
	st := tenant.MustStream(acme, "session", "one")
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if _, err := s.Append(context.Background(), st, eventstore.Any, eventstore.EventData{Type: "t.E", Data: payload200}); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkReadStream1000 reads a 1,000-event stream interleaved with another stream's events
// (target: < 2 ms).
func BenchmarkReadStream1000(b *testing.B) {
	s := open(b, b.TempDir())
	defer s.Close()
	st, other := tenant.MustStream(acme, "session", "read"), tenant.MustStream(acme, "session", "noise")
	batch := make([]eventstore.EventData, 10)
	for i := range batch {
		batch[i] = eventstore.EventData{Type: "t.E", Data: payload200}
	}
	for i := 0; i < 100; i++ {
		if _, err := s.Append(context.Background(), st, eventstore.Any, batch...); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Append(context.Background(), other, eventstore.Any, batch...); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		evs, err := s.ReadStream(context.Background(), st, 0, 0)
		if err != nil || len(evs) != 1000 {
			b.Fatalf("read %d events: %v", len(evs), err)
		}
	}
}

// BenchmarkReplayTenant measures ReadTenant throughput in pages, as replay and audit read it
// (target: >= 100,000 events/s).
func BenchmarkReplayTenant(b *testing.B) {
	const total = 200_000
	s := open(b, b.TempDir())
	defer s.Close()
	batch := make([]eventstore.EventData, 100)
	for i := range batch {
		batch[i] = eventstore.EventData{Type: "t.E", Data: payload200}
	}
	for i := 0; i < total/100; i++ {
		if _, err := s.Append(context.Background(), tenant.MustStream(acme, "session", fmt.Sprint(i%500)), eventstore.Any, batch...); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	start := time.Now()
	n := 0
	for i := 0; i < b.N; i++ {
		from := eventstore.Start
		for {
			evs, err := s.ReadTenant(context.Background(), acme, from, 10_000)
			if err != nil {
				b.Fatal(err)
			}
			if len(evs) == 0 {
				break
			}
			n += len(evs)
			from = evs[len(evs)-1].Position + 1
		}
	}
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "events/s")
}
