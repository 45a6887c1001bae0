package embedded_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/platform/keystore/embedded"
)

// BenchmarkCreateConcurrent64: 64 writers each creating new keys (a new chat session or document
// each), every Create durable (fsynced) before it returns.
func BenchmarkCreateConcurrent64(b *testing.B) {
	s, err := embedded.Open(filepath.Join(b.TempDir(), embedded.FileName))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range 64 {
		wg.Go(func() {
			for n := next.Add(1); n <= int64(b.N); n = next.Add(1) {
				if _, err := s.Create(ctx, acme, fmt.Sprintf("session/%d", n)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "keys/s")
}

// BenchmarkOpen30000: opening a key store that holds 30,000 keys, what a restart on a 1M-event
// history opens (one key per session life, made by the session list's rebuild). Its file is made
// once with 64 concurrent creators and closed (which writes the index); each iteration is one
// Open (the header and the index's header, no record) and Close. Before the index, an open read,
// checked and mapped every record: 10.6-11.9 ms quiet, 90,144 allocs.
//
// BenchmarkOpenScan30000 is the same open without the index (after a crash): every record read.
func BenchmarkOpen30000(b *testing.B) {
	path := filepath.Join(b.TempDir(), embedded.FileName)
	fill30000(b, path)
	openLoop(b, path, false)
}

func BenchmarkOpenScan30000(b *testing.B) {
	path := filepath.Join(b.TempDir(), embedded.FileName)
	fill30000(b, path)
	openLoop(b, path, true)
}

// BenchmarkKeyUncached30000: Key of random ids of a 30,000-key store, with no cache (what each
// first use of a key after a restart costs: the index page, one record read).
func BenchmarkKeyUncached30000(b *testing.B) {
	path := filepath.Join(b.TempDir(), embedded.FileName)
	fill30000(b, path)
	s, err := embedded.Open(path, embedded.WithCacheKeys(0))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	r := rand.New(rand.NewPCG(1, 1))
	for b.Loop() {
		n := 1 + r.IntN(30_000)
		if _, err := s.Key(ctx, acme, fmt.Sprintf("session/%d/%d", n, n)); err != nil {
			b.Fatal(err)
		}
	}
}

// fill30000 makes the key store at path with 30,000 keys (64 concurrent creators) and closes it,
// which writes its index.
func fill30000(b *testing.B, path string) {
	s, err := embedded.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for n := next.Add(1); n <= 30_000; n = next.Add(1) {
				if _, err := s.Create(ctx, acme, fmt.Sprintf("session/%d/%d", n, n)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
}

// openLoop times Open of the store at path (dropping its index first when scan is set); the
// Close after each, which writes the index again after a scan, is not timed.
func openLoop(b *testing.B, path string, scan bool) {
	for b.Loop() {
		if scan {
			b.StopTimer()
			if err := os.Remove(path + ".idx"); err != nil && !os.IsNotExist(err) {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		s, err := embedded.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}
