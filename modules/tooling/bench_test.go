package tooling_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/modules/tooling/internal/host"
	"github.com/crispy-enigma/crispy/platform/tenant"
	"github.com/crispy-enigma/crispy/plugins/sdk"
)

func reportPercentiles(b *testing.B, d []time.Duration) {
	if len(d) == 0 {
		return
	}
	slices.Sort(d)
	b.ReportMetric(float64(d[len(d)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(d[len(d)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkWarmCallHost is a warm call of a no-op tool through the plugin host (semaphore, timeout,
// capability token, gRPC round trip), without audit.
func BenchmarkWarmCallHost(b *testing.B) {
	m := host.New(host.Config{Dir: pluginsDir(b, "echo")})
	defer m.Close()
	ctx := context.Background()
	if _, err := m.Tools(ctx); err != nil {
		b.Fatal(err)
	}
	call := sdk.Call{Params: json.RawMessage(`{"mode":"ok"}`), TenantID: "acme", RequestID: "bench"}
	var ds []time.Duration
	for b.Loop() {
		start := time.Now()
		if _, err := m.Call(ctx, "echo", call); err != nil {
			b.Fatal(err)
		}
		ds = append(ds, time.Since(start))
	}
	reportPercentiles(b, ds)
}

// BenchmarkWarmExecuteModule is the whole use case: policy, input and output schema validation, the
// call, and the two audit appends (in-memory store).
func BenchmarkWarmExecuteModule(b *testing.B) {
	e := newEnv(b, pluginsDir(b, "echo"), opts{})
	t := tenant.MustParse("acme")
	ctx := context.Background()
	if _, err := e.mod.Execute(ctx, t, "echo", json.RawMessage(`{"mode":"ok"}`), ""); err != nil {
		b.Fatal(err)
	}
	var ds []time.Duration
	for b.Loop() {
		start := time.Now()
		if _, err := e.mod.Execute(ctx, t, "echo", json.RawMessage(`{"mode":"ok"}`), ""); err != nil {
			b.Fatal(err)
		}
		ds = append(ds, time.Since(start))
	}
	reportPercentiles(b, ds)
}

// BenchmarkColdStart launches a plugin (process start, handshake, callback attach, describe) and kills
// it.
func BenchmarkColdStart(b *testing.B) {
	dir := pluginsDir(b, "echo")
	var ds []time.Duration
	for b.Loop() {
		start := time.Now()
		p, err := sdk.Launch(context.Background(), sdk.LaunchConfig{Path: filepath.Join(dir, "echo")})
		if err != nil {
			b.Fatal(err)
		}
		ds = append(ds, time.Since(start))
		p.Kill()
	}
	reportPercentiles(b, ds)
}

// BenchmarkConcurrent1000 runs 1,000 concurrent calls across three tools per iteration through the
// module (audit included) and fails on any error.
func BenchmarkConcurrent1000(b *testing.B) {
	e := newEnv(b, pluginsDir(b, "echo", "echo2", "echo3"), opts{})
	t := tenant.MustParse("acme")
	tools := []string{"echo", "echo2", "echo3"}
	ctx := context.Background()
	var failed atomic.Int64
	var firstErr atomic.Value
	var ds []time.Duration
	for b.Loop() {
		start := time.Now()
		var wg sync.WaitGroup
		for i := range 1000 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := e.mod.Execute(ctx, t, tools[i%3], json.RawMessage(fmt.Sprintf(`{"mode":"ok","n":%d}`, i%10)), ""); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
			}()
		}
		wg.Wait()
		ds = append(ds, time.Since(start))
	}
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d calls failed; the first: %v", n, firstErr.Load())
	}
	slices.Sort(ds)
	b.ReportMetric(float64(ds[len(ds)/2].Milliseconds()), "ms/1000-calls")
	b.ReportMetric(0, "errors")
}

// BenchmarkTenantBUnderTenantAFlood measures tenant B's trivial call while tenant A keeps 500 calls of
// the same tool (10 ms each) queued behind its 32 slots. With per-tenant fair queueing B waits for
// about one slot; in one FIFO it waits for A's whole queue.
func BenchmarkTenantBUnderTenantAFlood(b *testing.B) {
	m := host.New(host.Config{Dir: pluginsDir(b, "echo"), MaxConcurrent: 32})
	defer m.Close()
	ctx, cancel := context.WithCancel(context.Background())
	if _, err := m.Tools(ctx); err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for range 500 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				_, _ = m.Call(ctx, "echo", sdk.Call{Params: json.RawMessage(`{"mode":"slow","ms":10}`), TenantID: "tenant-a"})
			}
		}()
	}
	for m.Queued("echo") < 400 {
		time.Sleep(time.Millisecond)
	}
	call := sdk.Call{Params: json.RawMessage(`{"mode":"ok"}`), TenantID: "tenant-b"}
	var ds []time.Duration
	for b.Loop() {
		start := time.Now()
		if _, err := m.Call(context.Background(), "echo", call); err != nil {
			b.Fatal(err)
		}
		ds = append(ds, time.Since(start))
	}
	reportPercentiles(b, ds)
}
