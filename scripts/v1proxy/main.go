// Command v1proxy measures what POST /v1/chat/completions adds to a model call: the CPU the server
// spends per proxied call and the time to first chunk it adds, against a zero-latency
// OpenAI-compatible upstream on loopback, side by side with the same calls made to the upstream
// directly, in one run.
//
//	go run ./scripts/v1proxy -calls 20000 -c 16
//
// Everything runs in this process (the client, the server with the conversation module on a
// memory store, the fake upstream): the CPU of the direct phase (client + upstream) is subtracted
// from the proxied phase's (client + server + upstream), which leaves the server's, including its
// own HTTP client to the upstream and the recording of each call's usage event. Both phases run
// JSON (stream:false) and SSE (stream:true) calls. Note the load (uptime) beside the numbers.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/crispy-enigma/crispy/modules/conversation"
	"github.com/crispy-enigma/crispy/platform/ai"
	"github.com/crispy-enigma/crispy/platform/ai/aitest"
	"github.com/crispy-enigma/crispy/platform/ai/openai"
	"github.com/crispy-enigma/crispy/platform/bus"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/httpapi"
	"github.com/crispy-enigma/crispy/platform/httpapi/httpapitest"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "v1proxy:", err)
		os.Exit(1)
	}
}

func run() error {
	calls := flag.Int("calls", 10000, "calls per phase")
	conc := flag.Int("c", 16, "concurrent clients")
	tokens := flag.Int("tokens", 7, "tokens in each answer")
	profile := flag.String("cpuprofile", "", "write a CPU profile of the proxied SSE phase")
	flag.Parse()

	toks := make([]string, *tokens)
	for i := range toks {
		toks[i] = fmt.Sprintf(" tok%d", i)
	}
	upBase, stopUp, err := serve(&aitest.Upstream{Tokens: toks})
	if err != nil {
		return err
	}
	defer stopUp()
	srvBase, stopSrv, err := startServer(upBase)
	if err != nil {
		return err
	}
	defer stopSrv()

	client := &http.Client{Transport: &http.Transport{MaxIdleConns: *conc * 4, MaxIdleConnsPerHost: *conc * 4, IdleConnTimeout: time.Minute}}
	fmt.Printf("%d calls per phase, %d clients, %d tokens per answer\n", *calls, *conc, *tokens)
	for _, stream := range []bool{false, true} {
		kind := "JSON"
		if stream {
			kind = "SSE"
		}
		direct := phase(client, upBase+"/v1/chat/completions", "m", stream, *calls, *conc)
		if stream && *profile != "" {
			f, err := os.Create(*profile)
			if err != nil {
				return err
			}
			if err := pprof.StartCPUProfile(f); err != nil {
				return err
			}
		}
		proxied := phase(client, srvBase+"/v1/chat/completions", "fake:m", stream, *calls, *conc)
		if stream && *profile != "" {
			pprof.StopCPUProfile()
		}
		if direct.err != nil {
			return fmt.Errorf("direct %s: %w", kind, direct.err)
		}
		if proxied.err != nil {
			return fmt.Errorf("proxied %s: %w", kind, proxied.err)
		}
		fmt.Printf("%s  direct:  %6.0f µs CPU/call, first chunk p50 %s p90 %s\n", kind, direct.cpuPerCall(), pct(direct.fb, .5), pct(direct.fb, .9))
		fmt.Printf("%s  proxied: %6.0f µs CPU/call, first chunk p50 %s p90 %s\n", kind, proxied.cpuPerCall(), pct(proxied.fb, .5), pct(proxied.fb, .9))
		fmt.Printf("%s  server:  %6.0f µs CPU per proxied call; first chunk added p50 %s\n", kind, proxied.cpuPerCall()-direct.cpuPerCall(), pct(proxied.fb, .5)-pct(direct.fb, .5))
	}
	return nil
}

type result struct {
	cpu time.Duration
	n   int
	fb  []time.Duration
	err error
}

func (r result) cpuPerCall() float64 { return float64(r.cpu.Microseconds()) / float64(r.n) }

// phase makes calls POSTs to url with conc clients and measures the process CPU they took.
func phase(c *http.Client, url, model string, stream bool, calls, conc int) result {
	body := fmt.Sprintf(`{"model":%q,"stream":%v,"messages":[{"role":"user","content":"How are you today?"}]}`, model, stream)
	// Warm up the connections and the server's caches.
	for i := 0; i < conc*4; i++ {
		if _, err := call(c, url, body, stream); err != nil {
			return result{err: err}
		}
	}
	var next atomic.Int64
	var mu sync.Mutex
	var fbs []time.Duration
	var firstErr error
	var wg sync.WaitGroup
	cpu0 := cpuTime()
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for next.Add(1) <= int64(calls) {
				fb, err := call(c, url, body, stream)
				if err != nil {
					mu.Lock()
					firstErr = errors.Join(firstErr, err)
					mu.Unlock()
					return
				}
				mine = append(mine, fb)
			}
			mu.Lock()
			fbs = append(fbs, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return result{cpu: cpuTime() - cpu0, n: calls, fb: fbs, err: firstErr}
}

// call makes one call and reads it to its end; it returns the time to the first chunk (SSE) or
// to the first byte of the answer (JSON).
func call(c *http.Client, url, body string, stream bool) (time.Duration, error) {
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("x-tenant-id", "bench")
	t0 := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	rd := bufio.NewReader(resp.Body)
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(io.LimitReader(rd, 300))
		return 0, fmt.Errorf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(b))
	}
	if _, err := rd.Peek(1); err != nil {
		return 0, err
	}
	fb := time.Since(t0)
	b, err := io.ReadAll(rd)
	if err != nil {
		return 0, err
	}
	if stream && !bytes.Contains(b, []byte("data: [DONE]")) {
		return 0, fmt.Errorf("stream without [DONE]: %.200s", b)
	}
	return fb, nil
}

func serve(h http.Handler) (string, func(), error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = hs.Serve(l) }()
	return "http://" + l.Addr().String(), func() { _ = hs.Close() }, nil
}

// startServer serves the conversation module on a memory store with the upstream as its "fake"
// OpenAI-compatible provider; any x-tenant-id is admitted.
func startServer(upstream string) (string, func(), error) {
	p, err := openai.New(openai.Config{BaseURL: upstream})
	if err != nil {
		return "", nil, err
	}
	router, err := ai.NewRouter(ai.RouterConfig{}, map[string]ai.Provider{"fake": p})
	if err != nil {
		return "", nil, err
	}
	log := slog.New(slog.DiscardHandler)
	st := eventstoretest.NewMemory()
	mod, err := conversation.New(conversation.Deps{Store: st, Router: router, Log: log, Metrics: metrics.NewSet(),
		Config: conversation.Config{DefaultModel: "fake:m"}})
	if err != nil {
		return "", nil, err
	}
	srv, err := httpapi.New(httpapi.Config{}, httpapi.Deps{Guard: httpapitest.HeaderGuard{}, Log: log})
	if err != nil {
		return "", nil, err
	}
	dir, err := os.MkdirTemp("", "crispy-v1proxy-")
	if err != nil {
		return "", nil, err
	}
	b, err := bus.New(bus.Config{CheckpointDir: dir + "/bus", ReadModelDir: dir + "/readmodels"}, bus.Deps{Store: st, Log: log})
	if err != nil {
		return "", nil, err
	}
	mod.Register(srv.API, b)
	ctx, stopBus := context.WithCancel(context.Background())
	busDone := make(chan struct{})
	go func() { defer close(busDone); _ = b.Run(ctx) }()
	if err := b.WaitCaughtUp(ctx); err != nil {
		stopBus()
		return "", nil, err
	}
	base, stop, err := serve(srv.Handler())
	if err != nil {
		stopBus()
		return "", nil, err
	}
	return base, func() { stop(); stopBus(); <-busDone; _ = os.RemoveAll(dir) }, nil
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[int(float64(len(d)-1)*p)].Round(time.Microsecond)
}
