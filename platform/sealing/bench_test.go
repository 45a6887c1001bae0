package sealing_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/embedded"
	keysembedded "github.com/crispy-enigma/crispy/platform/keystore/embedded"
	"github.com/crispy-enigma/crispy/platform/keystore/keystoretest"
	"github.com/crispy-enigma/crispy/platform/sealing"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

var payload200 = []byte(`{"pad":"` + strings.Repeat("x", 190) + `"}`)

// BenchmarkSealedAppendConcurrent64 is embedded.BenchmarkAppendConcurrent64 through the sealing
// decorator: fsync'd appends from 64 writers on 64 session streams, each event sealed under its
// session's key (issue 12 target: >= 50,000 events/s), beside the same appends unsealed, so the two
// are measured in the same machine state.
func BenchmarkSealedAppendConcurrent64(b *testing.B) {
	b.Run("plain", func(b *testing.B) { benchAppend64(b, false) })
	b.Run("sealed", func(b *testing.B) { benchAppend64(b, true) })
}

func benchAppend64(b *testing.B, sealed bool) {
	dir := b.TempDir()
	inner, err := embedded.Open(filepath.Join(dir, "events"), embedded.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer inner.Close()
	keys, err := keysembedded.Open(filepath.Join(dir, keysembedded.FileName))
	if err != nil {
		b.Fatal(err)
	}
	defer keys.Close()
	var s eventstore.Store = inner
	if sealed {
		s = sealing.NewStore(inner, sealing.New(keys), sessions)
	}
	const writers = 64
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for w := range writers {
		wg.Go(func() {
			st := tenant.MustStream(acme, "session", fmt.Sprintf("w%d", w))
			for next.Add(1) <= int64(b.N) {
				if _, err := s.Append(ctx, st, eventstore.Any, eventstore.EventData{Type: "t.E", Data: payload200}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
}

// BenchmarkSealEvent and BenchmarkOpenEvent: the CPU sealing adds per event on the write path (the
// envelope of a 200-byte payload) and on every read (projections catching up open each event).
func BenchmarkSealEvent(b *testing.B) {
	s := sealing.NewStore(nopStore{}, sealing.New(keystoretest.NewMemory()), sessions)
	st := tenant.MustStream(acme, "session", "bench")
	ev := eventstore.EventData{Type: "t.E", Data: payload200}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Append(ctx, st, eventstore.Any, ev); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpenEvent(b *testing.B) {
	inner := &lastStore{}
	sl := sealing.New(keystoretest.NewMemory())
	s := sealing.NewStore(inner, sl, sessions)
	if _, err := s.Append(ctx, tenant.MustStream(acme, "session", "bench"), eventstore.Any, eventstore.EventData{Type: "t.E", Data: payload200}); err != nil {
		b.Fatal(err)
	}
	e := eventstore.Event{Type: "t.E", Tenant: acme, Data: inner.last}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := sl.OpenEvent(ctx, e); err != nil {
			b.Fatal(err)
		}
	}
}

// nopStore accepts appends and stores nothing; lastStore keeps the last appended data.
type nopStore struct{ eventstore.Store }

func (nopStore) Append(context.Context, tenant.Stream, eventstore.ExpectedRevision, ...eventstore.EventData) (eventstore.AppendResult, error) {
	return eventstore.AppendResult{}, nil
}

type lastStore struct {
	eventstore.Store
	last []byte
}

func (l *lastStore) Append(_ context.Context, _ tenant.Stream, _ eventstore.ExpectedRevision, evs ...eventstore.EventData) (eventstore.AppendResult, error) {
	l.last = evs[0].Data
	return eventstore.AppendResult{}, nil
}
