package embedded_test

import (
	"fmt"
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
// history loads (one key per session life, made by the session list's rebuild). Its file is made
// once with 64 concurrent creators; each iteration is one Open (read and check every record, map
// every key) and Close.
func BenchmarkOpen30000(b *testing.B) {
	path := filepath.Join(b.TempDir(), embedded.FileName)
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
	for b.Loop() {
		s, err := embedded.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
