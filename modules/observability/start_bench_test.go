package observability_test

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/modules/observability"
	"github.com/crispy-enigma/crispy/platform/bus/bustest"
	"github.com/crispy-enigma/crispy/platform/cputime"
	"github.com/crispy-enigma/crispy/platform/eventstore/embedded"
	"github.com/crispy-enigma/crispy/platform/httpapi"
	"github.com/crispy-enigma/crispy/platform/httpapi/httpapitest"
)

// BenchmarkUsageStart is the start of the module's read models (usage and cost, alert rules) on a
// data folder written by scripts/history (CRISPY_HISTORY_DIR=/tmp/h1m after
// `go run ./scripts/history -dir /tmp/h1m -events 1000000`): from position 1 (a first start, or a
// rebuild) and from the checkpoint of a previous run. Reported: ms from Run to caught up, the CPU
// time the process spent meanwhile (user + system: what the start costs when the machine is busy
// with other work, as ours often is), the Go heap the started module holds (in use after a GC,
// minus what it was before Run) and the process RSS once caught up.
//
// A fresh folder is a first start: the processors' cursor starts at the beginning of the store too
// (the module's alert-webhooks processor reads the history's alert transitions and sends none older
// than WebhookMaxAge).
func BenchmarkUsageStart(b *testing.B) {
	dir := os.Getenv("CRISPY_HISTORY_DIR")
	if dir == "" {
		b.Skip("set CRISPY_HISTORY_DIR to a data folder written by scripts/history")
	}
	store, err := embedded.Open(filepath.Join(dir, "events"), embedded.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	run := func(b *testing.B, busDir string) (ms, cpuMS, heapMB, rssMB float64) {
		heap0 := heapInUse()
		bs := bustest.NewBusIn(b, store, busDir)
		mod, err := observability.New(observability.Deps{Store: store})
		if err != nil {
			b.Fatal(err)
		}
		srv, err := httpapi.New(httpapi.Config{}, httpapi.Deps{Guard: httpapitest.HeaderGuard{}})
		if err != nil {
			b.Fatal(err)
		}
		mod.Register(srv.API, bs)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		begin, cpu0 := time.Now(), cputime.Used()
		go func() { done <- bs.Run(ctx) }()
		if err := bs.WaitCaughtUp(ctx); err != nil {
			b.Fatal(err)
		}
		ms = float64(time.Since(begin).Microseconds()) / 1000
		cpuMS = float64((cputime.Used() - cpu0).Microseconds()) / 1000
		heapMB = (heapInUse() - heap0) / 1e6
		rssMB = vmRSS()
		runtime.KeepAlive(mod)
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		return ms, cpuMS, heapMB, rssMB
	}
	report := func(b *testing.B, ms, cpu, heap, rss float64) {
		b.ReportMetric(ms, "ms-to-ready")
		b.ReportMetric(cpu, "cpu-ms")
		b.ReportMetric(heap, "heap-MB")
		b.ReportMetric(rss, "rss-MB")
	}
	b.Run("from-1", func(b *testing.B) {
		var ms, cpu, heap, rss float64
		for b.Loop() {
			ms, cpu, heap, rss = run(b, b.TempDir())
		}
		report(b, ms, cpu, heap, rss)
	})
	// The read models rebuilt from zero (their files deleted) while the bus's checkpoints stay: what
	// a Version bump or a corrupt file costs, without the processors' first pass over the history.
	b.Run("rebuild", func(b *testing.B) {
		warm := b.TempDir()
		run(b, warm)
		var ms, cpu, heap, rss float64
		for b.Loop() {
			b.StopTimer()
			if err := os.RemoveAll(filepath.Join(warm, "readmodels")); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			ms, cpu, heap, rss = run(b, warm)
		}
		report(b, ms, cpu, heap, rss)
	})
	b.Run("from-checkpoint", func(b *testing.B) {
		warm := b.TempDir()
		run(b, warm)
		var ms, cpu, heap, rss float64
		for b.Loop() {
			ms, cpu, heap, rss = run(b, warm)
		}
		report(b, ms, cpu, heap, rss)
	})
}

func heapInUse() float64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return float64(m.HeapInuse)
}

// vmRSS is this process's resident set in MB (0 where /proc is missing).
func vmRSS() float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}
