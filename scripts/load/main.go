// Command load drives POST /chat (streamed) on a running Crispy server over loopback for a bounded
// number of turns or seconds, and prints turns/s and latency percentiles.
//
//	go run ./scripts/load -url http://127.0.0.1:8080 -tenant demo -turns 20000 -c 64
//	go run ./scripts/load -self -turns 20000 -c 64   # starts an in-process server: embedded store, zero-latency fake model
//
// Every turn starts a new session unless -turns-per-session is above 1. A turn counts as done when
// its "done" event arrives; an "error" event or a non-200 answer counts as an error.
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

	"github.com/google/uuid"

	"github.com/crispy-enigma/crispy/modules/conversation"
	"github.com/crispy-enigma/crispy/platform/ai"
	"github.com/crispy-enigma/crispy/platform/ai/aitest"
	"github.com/crispy-enigma/crispy/platform/bus/bustest"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/embedded"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/httpapi"
	"github.com/crispy-enigma/crispy/platform/httpapi/httpapitest"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
}

type result struct {
	firstByte, total time.Duration
	err              error
}

func run() error {
	url := flag.String("url", "http://127.0.0.1:8080", "server base URL")
	tenantID := flag.String("tenant", "demo", "x-tenant-id")
	apiKey := flag.String("api-key", "", "x-api-key, if the tenant needs one")
	turns := flag.Int("turns", 10000, "stop after this many turns (0: no bound)")
	dur := flag.Duration("duration", 60*time.Second, "stop after this long")
	conc := flag.Int("c", 32, "concurrent clients")
	perSession := flag.Int("turns-per-session", 1, "turns each session gets before a new one starts")
	model := flag.String("model", "", "modelId to request (default: the server's)")
	self := flag.Bool("self", false, "start an in-process server (embedded store in a temp dir, zero-latency fake model) and drive it")
	selfStore := flag.String("self-store", "embedded", "store of -self: embedded (fsync'd file) or memory (to separate store latency from the rest)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of this process (useful with -self)")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if *self {
		base, stop, err := startSelf(*selfStore)
		if err != nil {
			return err
		}
		defer stop()
		*url, *tenantID = base, "load"
		if *model == "" {
			*model = "fake:zero"
		}
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConns: *conc * 2, MaxIdleConnsPerHost: *conc * 2, IdleConnTimeout: time.Minute}}
	ctx, cancel := context.WithTimeout(context.Background(), *dur)
	defer cancel()
	var issued atomic.Int64
	results := make(chan result, 4096)
	var wg sync.WaitGroup
	start := time.Now()
	cpu0 := cpuTime()
	for w := 0; w < *conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			session, used := uuid.NewString(), 0
			for ctx.Err() == nil {
				if n := issued.Add(1); *turns > 0 && n > int64(*turns) {
					return
				}
				if used >= *perSession {
					session, used = uuid.NewString(), 0
				}
				used++
				results <- turn(ctx, client, *url, *tenantID, *apiKey, session, *model)
			}
		}()
	}
	go func() { wg.Wait(); close(results) }()
	var fb, tot []time.Duration
	errs := map[string]int{}
	for r := range results {
		if r.err != nil {
			if errors.Is(r.err, context.DeadlineExceeded) {
				continue // cut off by -duration
			}
			errs[r.err.Error()]++
			continue
		}
		fb = append(fb, r.firstByte)
		tot = append(tot, r.total)
	}
	elapsed := time.Since(start)
	cpu := cpuTime() - cpu0
	fmt.Printf("turns: %d ok, %d errors in %s with %d clients (%s)\n", len(tot), sum(errs), elapsed.Round(time.Millisecond), *conc, *url)
	fmt.Printf("throughput: %.0f turns/s\n", float64(len(tot))/elapsed.Seconds())
	if len(tot) > 0 {
		what := "this client"
		if *self {
			what = "client and in-process server"
		}
		fmt.Printf("cpu: %.0f µs per turn (%s), %.2f cores used on average\n", float64(cpu.Microseconds())/float64(len(tot)), what, cpu.Seconds()/elapsed.Seconds())
		fmt.Printf("first byte: p50 %s  p90 %s  p99 %s  max %s\n", pct(fb, .5), pct(fb, .9), pct(fb, .99), pct(fb, 1))
		fmt.Printf("whole turn: p50 %s  p90 %s  p99 %s  max %s\n", pct(tot, .5), pct(tot, .9), pct(tot, .99), pct(tot, 1))
	}
	for e, n := range errs {
		fmt.Printf("error x%d: %s\n", n, e)
	}
	return nil
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func pct(d []time.Duration, p float64) time.Duration {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[int(float64(len(d)-1)*p)].Round(time.Microsecond)
}

func turn(ctx context.Context, c *http.Client, url, tenantID, key, session, model string) result {
	body := `{"sessionId":"` + session + `","message":"How are you today?"`
	if model != "" {
		body += `,"modelId":"` + model + `"`
	}
	body += "}"
	req, err := http.NewRequestWithContext(ctx, "POST", url+"/chat", strings.NewReader(body))
	if err != nil {
		return result{err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("x-tenant-id", tenantID)
	if key != "" {
		req.Header.Set("x-api-key", key)
	}
	t0 := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return result{err: err}
	}
	defer resp.Body.Close()
	rd := bufio.NewReader(resp.Body)
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(io.LimitReader(rd, 300))
		return result{err: fmt.Errorf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(b))}
	}
	if _, err := rd.Peek(1); err != nil {
		return result{err: err}
	}
	fb := time.Since(t0)
	for {
		line, err := rd.ReadString('\n')
		if err != nil {
			return result{err: fmt.Errorf("stream ended without done: %w", err)}
		}
		switch line {
		case "event: done\n":
			_, _ = io.Copy(io.Discard, rd)
			return result{firstByte: fb, total: time.Since(t0)}
		case "event: error\n":
			l, _ := rd.ReadString('\n')
			return result{err: fmt.Errorf("error event: %s", strings.TrimSpace(l))}
		}
	}
}

// startSelf serves the conversation module alone on a loopback port: an embedded store in a temp
// dir, any x-tenant-id admitted, and a zero-latency fake model as fake:zero.
func startSelf(kind string) (string, func(), error) {
	dir, err := os.MkdirTemp("", "crispy-load-")
	if err != nil {
		return "", nil, err
	}
	var st eventstore.Store
	switch kind {
	case "embedded":
		if st, err = embedded.Open(dir, embedded.Options{}); err != nil {
			return "", nil, err
		}
	case "memory":
		st = eventstoretest.NewMemory()
	default:
		return "", nil, fmt.Errorf("-self-store %q: want embedded or memory", kind)
	}
	router, err := ai.NewRouter(ai.RouterConfig{}, map[string]ai.Provider{"fake": aitest.New(aitest.Script{
		Tokens: []string{"I", " am", " fine", ",", " thank", " you", "."}})})
	if err != nil {
		return "", nil, err
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	mod, err := conversation.New(conversation.Deps{Store: st, Router: router, Log: log})
	if err != nil {
		return "", nil, err
	}
	srv, err := httpapi.New(httpapi.Config{}, httpapi.Deps{Guard: httpapitest.HeaderGuard{}, Log: log})
	if err != nil {
		return "", nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	mod.Register(srv.API, bustest.New(ctx, st))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cancel()
		return "", nil, err
	}
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = hs.Serve(l) }()
	return "http://" + l.Addr().String(), func() {
		_ = hs.Close()
		cancel()
		_ = st.Close()
		_ = os.RemoveAll(dir)
	}, nil
}
