package sealing_test

import (
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
	"github.com/crispy-enigma/crispy/platform/sealing"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

var payload200 = []byte(`{"pad":"` + strings.Repeat("x", 190) + `"}`)

// BenchmarkSealedAppendConcurrent64 is embedded.BenchmarkAppendConcurrent64 through the sealing
// decorator: fsync'd appends from 64 writers on 64 session streams, each event sealed under its
// session's key (issue 12 target: >= 50,000 events/s).
func BenchmarkSealedAppendConcurrent64(b *testing.B) {
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
	s := sealing.NewStore(inner, sealing.New(keys), sessions)
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
