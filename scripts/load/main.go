// Command load drives POST /chat (streamed) on a running Crispy server over loopback for a bounded
// number of turns or seconds, and prints turns/s and latency percentiles.
//
//	go run ./scripts/load -url http://127.0.0.1:8080 -tenant demo -turns 20000 -c 64
//	go run ./scripts/load -self -turns 20000 -c 64   # starts an in-process server: embedded store, zero-latency fake model
//	go run ./scripts/load -self -duration 30s -turns 0 -c 32 -restart   # and the live heap after a restart on the same data
//
// Every turn starts a new session unless -turns-per-session is above 1 (-v1: stateless
// POST /v1/chat/completions calls instead). A turn counts as done when its "done" event arrives; an
// "error" event or a non-200 answer counts as an error.
//
// With -self the server runs in this process, so the live heap it reports is the server's (plus this
// client's few bytes per turn): sampled each second during the run (runtime/metrics
// /gc/heap/live:bytes, the heap marked live by the last GC: no extra GC), and HeapAlloc after a
// forced GC at the end, while the finished turns are still inside the resume window. -restart then
// stops the server, opens a new one on the same data folder, waits until its read models have caught
// up and reports HeapAlloc after a GC again: what the same history costs without the traffic.
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
	"os/exec"
	"runtime"
	rtmetrics "runtime/metrics"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/google/uuid"

	"github.com/crispy-enigma/crispy/modules/conversation"
	"github.com/crispy-enigma/crispy/platform/ai"
	"github.com/crispy-enigma/crispy/platform/ai/aitest"
	"github.com/crispy-enigma/crispy/platform/bus"
	"github.com/crispy-enigma/crispy/platform/cputime"
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
	heapprofile := flag.String("heapprofile", "", "write a heap profile of this process at the end of the run (useful with -self)")
	restart := flag.Bool("restart", false, "with -self: after the run, restart the server on the same data and report its live heap")
	reopenDir := flag.String("reopen", "", "(used by -restart) open the -self server on this data folder, report its live heap and exit")
	tokens := flag.Int("tokens", 7, "with -self: tokens in each answer of the fake model")
	v1 := flag.Bool("v1", false, "drive stateless POST /v1/chat/completions calls (streamed, no x-session-id) instead of /chat")
	flag.Parse()
	if *reopenDir != "" {
		return reopen(*reopenDir)
	}
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
	var srv *selfServer
	if *self {
		var err error
		if srv, err = startSelf(*selfStore, "", *tokens); err != nil {
			return err
		}
		defer func() { srv.stop(true) }()
		*url, *tenantID = srv.base, "load"
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
	cpu0 := cputime.Used()
	sampler := sampleHeap(ctx, time.Second)
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
				if *v1 {
					results <- completion(ctx, client, *url, *tenantID, *apiKey, *model)
				} else {
					results <- turn(ctx, client, *url, *tenantID, *apiKey, session, *model)
				}
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
	cpu := cputime.Used() - cpu0
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
	cancel()
	fmt.Printf("live heap during the run: max %s (/gc/heap/live:bytes each second)\n", mb(sampler.max()))
	fmt.Printf("live heap at the end: %s (HeapAlloc after GC, finished turns still in the resume window)\n", mb(liveHeap()))
	if srv != nil {
		srv.printMemory()
	}
	if *heapprofile != "" {
		if err := writeHeapProfile(*heapprofile); err != nil {
			return err
		}
	}
	if *restart {
		if srv == nil || *selfStore != "embedded" {
			return errors.New("-restart needs -self with the embedded store")
		}
		// A restart is a new process: the old one's turns and timers must not count.
		srv.stop(false)
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		cmd := exec.Command(exe, "-reopen", srv.dir)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("restart: %w", err)
		}
	}
	return nil
}

// reopen is the second process of -restart: it opens the server on dir, waits for its read models
// and reports the live heap.
func reopen(dir string) error {
	t0 := time.Now()
	srv, err := startSelf("embedded", dir, 1)
	if err != nil {
		return err
	}
	defer srv.stop(false)
	took := time.Since(t0)
	fmt.Printf("after a restart on the same data: live heap %s (HeapAlloc after GC, new process, read models caught up in %s)\n", mb(liveHeap()), took.Round(time.Millisecond))
	return nil
}

// heapSampler keeps the largest live heap seen.
type heapSampler struct {
	mu   sync.Mutex
	peak uint64
}

func (h *heapSampler) max() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.peak
}

// sampleHeap reads the live heap as of the last GC every interval until ctx ends: no GC is forced,
// so the run is not slowed.
func sampleHeap(ctx context.Context, every time.Duration) *heapSampler {
	h := &heapSampler{}
	sample := []rtmetrics.Sample{{Name: "/gc/heap/live:bytes"}}
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				rtmetrics.Read(sample)
				if sample[0].Value.Kind() == rtmetrics.KindUint64 {
					h.mu.Lock()
					h.peak = max(h.peak, sample[0].Value.Uint64())
					h.mu.Unlock()
				}
			}
		}
	}()
	return h
}

// liveHeap is HeapAlloc after a full GC: the bytes still reachable.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC() // the second one frees what the first one's finalizers released
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

func mb(b uint64) string { return fmt.Sprintf("%.1f MB", float64(b)/1e6) }

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	runtime.GC()
	return pprof.WriteHeapProfile(f)
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
	return postStream(ctx, c, url+"/chat", body, tenantID, key, "done", func(line string, rd *bufio.Reader) (bool, error) {
		switch line {
		case "event: done\n":
			return true, nil
		case "event: error\n":
			l, _ := rd.ReadString('\n')
			return false, fmt.Errorf("error event: %s", strings.TrimSpace(l))
		}
		return false, nil
	})
}

// completion sends one stateless streamed POST /v1/chat/completions and reads it to its [DONE].
func completion(ctx context.Context, c *http.Client, url, tenantID, key, model string) result {
	if model == "" {
		model = "default"
	}
	body := `{"model":"` + model + `","stream":true,"messages":[{"role":"user","content":"How are you today?"}]}`
	return postStream(ctx, c, url+"/v1/chat/completions", body, tenantID, key, "[DONE]", func(line string, _ *bufio.Reader) (bool, error) {
		switch {
		case line == "data: [DONE]\n":
			return true, nil
		case strings.HasPrefix(line, `data: {"error"`):
			return false, fmt.Errorf("error event: %s", strings.TrimSpace(line))
		}
		return false, nil
	})
}

// postStream POSTs body and reads the SSE answer line by line until end says it is done (the time to
// its first byte and to the end is the result) or failed; last names the end for a cut stream.
func postStream(ctx context.Context, c *http.Client, url, body, tenantID, key, last string, end func(line string, rd *bufio.Reader) (bool, error)) result {
	req, err := http.NewRequestWithContext(ctx, "POST", url, strings.NewReader(body))
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
			return result{err: fmt.Errorf("stream ended without %s: %w", last, err)}
		}
		done, err := end(line, rd)
		if err != nil {
			return result{err: err}
		}
		if done {
			_, _ = io.Copy(io.Discard, rd)
			return result{firstByte: fb, total: time.Since(t0)}
		}
	}
}

// selfServer is the in-process server of -self.
type selfServer struct {
	base string
	dir  string
	set  *metrics.Set
	stop func(removeData bool)
}

// printMemory prints what the conversation module reports of its fold cache and resume buffer.
func (s *selfServer) printMemory() {
	var b bytes.Buffer
	s.set.WritePrometheus(&b)
	var held []string
	for _, line := range strings.Split(b.String(), "\n") {
		if strings.HasPrefix(line, "crispy_chat_session_cache_") || strings.HasPrefix(line, "crispy_chat_resume_buffer_") {
			held = append(held, line)
		}
	}
	if len(held) > 0 {
		fmt.Printf("module memory: %s\n", strings.Join(held, ", "))
	}
}

// startSelf serves the conversation module alone on a loopback port: an embedded store in dir (a
// new temp dir when empty), any x-tenant-id admitted, and a zero-latency fake model as fake:zero. It
// returns once the module's read models have caught up with the store.
func startSelf(kind, dir string, tokens int) (*selfServer, error) {
	if dir == "" {
		d, err := os.MkdirTemp("", "crispy-load-")
		if err != nil {
			return nil, err
		}
		dir = d
	}
	var st eventstore.Store
	var err error
	switch kind {
	case "embedded":
		if st, err = embedded.Open(dir, embedded.Options{}); err != nil {
			return nil, err
		}
	case "memory":
		st = eventstoretest.NewMemory()
	default:
		return nil, fmt.Errorf("-self-store %q: want embedded or memory", kind)
	}
	answer := []string{"I", " am", " fine", ",", " thank", " you", "."}
	for len(answer) < tokens {
		answer = append(answer, " and", " more")
	}
	router, err := ai.NewRouter(ai.RouterConfig{}, map[string]ai.Provider{"fake": aitest.New(aitest.Script{Tokens: answer[:max(tokens, 1)]})})
	if err != nil {
		return nil, err
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	set := metrics.NewSet()
	mod, err := conversation.New(conversation.Deps{Store: st, Router: router, Log: log, Metrics: set})
	if err != nil {
		return nil, err
	}
	srv, err := httpapi.New(httpapi.Config{}, httpapi.Deps{Guard: httpapitest.HeaderGuard{}, Log: log})
	if err != nil {
		return nil, err
	}
	b, err := bus.New(bus.Config{CheckpointDir: dir + "/bus", ReadModelDir: dir + "/readmodels"}, bus.Deps{Store: st, Log: log})
	if err != nil {
		return nil, err
	}
	mod.Register(srv.API, b)
	ctx, stopBus := context.WithCancel(context.Background())
	busDone := make(chan struct{})
	go func() { defer close(busDone); _ = b.Run(ctx) }()
	cancel := func() { stopBus(); <-busDone }
	if err := b.WaitCaughtUp(ctx); err != nil {
		cancel()
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cancel()
		return nil, err
	}
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = hs.Serve(l) }()
	return &selfServer{base: "http://" + l.Addr().String(), dir: dir, set: set, stop: func(removeData bool) {
		_ = hs.Close()
		cancel()
		_ = st.Close()
		if removeData {
			_ = os.RemoveAll(dir)
		}
	}}, nil
}
