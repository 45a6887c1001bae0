package postgres

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

// The benchmarks run against the server in CRISPY_POSTGRES_URL, each in a schema of its own:
//
//	CRISPY_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test?sslmode=disable \
//	  go test -run '^$' -bench Integration -benchtime 3s ./platform/eventstore/postgres/
//
// Every append is one 200-byte event, committed with synchronous_commit on (a WAL flush).

func payload(i int) eventstore.EventData {
	return eventstore.EventData{Type: "bench.Happened", Data: []byte(fmt.Sprintf(`{"n":%d,"text":%q}`, i, strings.Repeat("x", 180)))}
}

// BenchmarkIntegrationAppend: 1 and 64 concurrent writers, each on its own stream; grouped appends
// (the default) and one transaction per append (MaxBatch=1), which shows what the grouping buys
// while positions serialise commits.
func BenchmarkIntegrationAppend(b *testing.B) {
	for _, writers := range []int{1, 64} {
		for _, batch := range []int{0, 1} {
			name := fmt.Sprintf("writers=%d/grouped", writers)
			if batch == 1 {
				name = fmt.Sprintf("writers=%d/ungrouped", writers)
			}
			b.Run(name, func(b *testing.B) { benchAppend(b, writers, batch) })
		}
	}
}

func benchAppend(b *testing.B, writers, maxBatch int) {
	url := pgURL(b)
	s := openTest(b, url, testSchema(b, url), func(c *Config) { c.MaxBatch = maxBatch })
	var next atomic.Int64
	lat := make([][]time.Duration, writers)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := tenant.MustStream(acme, "session", fmt.Sprintf("w%d", w))
			for i := int(next.Add(1)); i <= b.N; i = int(next.Add(1)) {
				t0 := time.Now()
				if _, err := s.Append(context.Background(), st, eventstore.Any, payload(i)); err != nil {
					b.Error(err)
					return
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
	if len(all) > 0 {
		b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
	}
}

// BenchmarkIntegrationSubscribeCatchUp: a subscription from the start over 20,000 events of one
// tenant (among 20,000 of another), until it reports the live end.
func BenchmarkIntegrationSubscribeCatchUp(b *testing.B) {
	url := pgURL(b)
	s := openTest(b, url, testSchema(b, url), nil)
	const n = 20000
	for _, t := range []tenant.ID{acme, other} {
		for i := 0; i < n; i += 500 {
			batch := make([]eventstore.EventData, 500)
			for j := range batch {
				batch[j] = payload(i + j)
			}
			if _, err := s.Append(context.Background(), tenant.MustStream(t, "session", fmt.Sprintf("s%d", i/500)), eventstore.Any, batch...); err != nil {
				b.Fatal(err)
			}
		}
	}
	for _, tc := range []struct {
		name string
		t    tenant.ID
		want int
	}{{"tenant", acme, n}, {"all", tenant.ID{}, 2 * n}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				ctx, cancel := context.WithCancel(context.Background())
				got := 0
				err := s.Subscribe(ctx, eventstore.SubscribeOptions{Tenant: tc.t, CaughtUp: func(context.Context, eventstore.Position) error {
					cancel()
					return nil
				}}, func(context.Context, eventstore.Event) error {
					got++
					return nil
				})
				cancel()
				if err != nil || got != tc.want {
					b.Fatalf("caught up after %d events (%v), want %d", got, err, tc.want)
				}
			}
			b.ReportMetric(float64(b.N*tc.want)/time.Since(start).Seconds(), "events/s")
		})
	}
}
