package esdb

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// The benchmarks run the real client against the in-process gRPC double over loopback: they measure
// the adapter's and the client's cost per call (serialisation, round trips, decoding and hashing),
// not EventStoreDB's. Against a real server add its network round trips and fsync.

func benchStore(b *testing.B) *Store {
	b.Helper()
	_, url := startFake(b)
	s, err := Open(context.Background(), Config{URL: url}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

func payload(i int) eventstore.EventData {
	return eventstore.EventData{Type: "bench.Happened", Data: []byte(fmt.Sprintf(`{"n":%d,"text":%q}`, i, strings.Repeat("x", 180)))}
}

// BenchmarkContractAppendOneEvent: one 200-byte event per append (head read + append: two round trips).
func BenchmarkContractAppendOneEvent(b *testing.B) {
	s := benchStore(b)
	st := tenant.MustStream(acme, "session", "bench")
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.Append(ctx, st, eventstore.Any, payload(i)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkContractReadStream1000: reading a 1,000-event stream and decoding every envelope.
func BenchmarkContractReadStream1000(b *testing.B) {
	s := benchStore(b)
	st := tenant.MustStream(acme, "session", "read")
	fill(b, s, st, 1000)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		evs, err := s.ReadStream(ctx, st, 0, 0)
		if err != nil || len(evs) != 1000 {
			b.Fatalf("read %d events: %v", len(evs), err)
		}
	}
}

// BenchmarkContractReadTenant1000: a tenant read of 1,000 events through the filtered subscription.
func BenchmarkContractReadTenant1000(b *testing.B) {
	s := benchStore(b)
	fill(b, s, tenant.MustStream(acme, "session", "t"), 1000)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		evs, err := s.ReadTenant(ctx, acme, eventstore.Start, 0)
		if err != nil || len(evs) != 1000 {
			b.Fatalf("read %d events: %v", len(evs), err)
		}
	}
}

func fill(b *testing.B, s *Store, st tenant.Stream, n int) {
	b.Helper()
	for i := 0; i < n; i += 100 {
		batch := make([]eventstore.EventData, 0, 100)
		for j := i; j < i+100 && j < n; j++ {
			batch = append(batch, payload(j))
		}
		if _, err := s.Append(context.Background(), st, eventstore.Any, batch...); err != nil {
			b.Fatal(err)
		}
	}
}
