// Command v1proxy measures what POST /v1/chat/completions adds to a model call: the CPU the server
// spends per proxied call and the time to first chunk it adds, against an OpenAI-compatible
// upstream on loopback, side by side with the same calls made to the upstream directly, in one run.
//
//	go run ./scripts/v1proxy -calls 5000 -c 16
//
// Everything runs in this process (the client, the server with the conversation module on a
// memory store, the fake upstream): the CPU of the direct phase (client + upstream) is subtracted
// from the proxied phase's (client + server + upstream), which leaves the server's, including its
// own HTTP client to the upstream and the recording of each call's usage event (the script checks
// that every proxied call left one with the upstream's reported usage). Allocations per call are
// subtracted the same way; unlike CPU time they do not depend on the machine's load.
//
// Three parts: JSON (stream:false) and SSE (stream:true, stream_options.include_usage) calls as fast
// as the clients can make them against a zero-latency upstream (CPU and allocations per call; the
// time to first chunk there is mostly queueing for the saturated CPU), then the time to first chunk
// the server adds with -c streams in flight against an upstream that writes a token every -gap, so
// that the CPU is not saturated and the difference is the server's own latency. Note the load
// (cat /proc/loadavg) beside the numbers.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/crispy-enigma/crispy/modules/conversation"
	"github.com/crispy-enigma/crispy/modules/conversation/events"
	"github.com/crispy-enigma/crispy/platform/ai"
	"github.com/crispy-enigma/crispy/platform/ai/openai"
	"github.com/crispy-enigma/crispy/platform/bus"
	"github.com/crispy-enigma/crispy/platform/cputime"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/httpapi"
	"github.com/crispy-enigma/crispy/platform/httpapi/httpapitest"
	"github.com/crispy-enigma/crispy/platform/tenant"
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
	rounds := flag.Int("rounds", 5, "direct and proxied phases alternate this many times (calls split between them)")
	ttfcCalls := flag.Int("ttfc-calls", 800, "calls per phase of the time-to-first-chunk part")
	gap := flag.Duration("gap", 5*time.Millisecond, "time between two tokens of the time-to-first-chunk part's upstream")
	profile := flag.String("cpuprofile", "", "write a CPU profile of the proxied SSE phase")
	memprofile := flag.String("memprofile", "", "write an allocation profile of the proxied SSE phase")
	flag.Parse()

	toks := make([]string, *tokens)
	for i := range toks {
		toks[i] = fmt.Sprintf(" tok%d", i)
	}
	upBase, stopUp, err := serve(&upstream{tokens: toks})
	if err != nil {
		return err
	}
	defer stopUp()
	pacedBase, stopPaced, err := serve(&upstream{tokens: toks, gap: *gap})
	if err != nil {
		return err
	}
	defer stopPaced()
	srv, err := startServer(map[string]string{"fake": upBase, "paced": pacedBase})
	if err != nil {
		return err
	}
	defer srv.stop()

	client := &http.Client{Transport: &http.Transport{MaxIdleConns: *conc * 4, MaxIdleConnsPerHost: *conc * 4, IdleConnTimeout: time.Minute}}
	fmt.Printf("%d calls per phase, %d clients, %d tokens per answer; load average %s\n", *calls, *conc, *tokens, loadavg())
	recorded := 0
	for _, stream := range []bool{false, true} {
		kind := "JSON"
		if stream {
			kind = "SSE "
		}
		// Direct and proxied phases alternate, so that a change of the machine's load during the run
		// weighs on both; the server's CPU is the median of the rounds' differences.
		var direct, proxied result
		var perRound []float64
		for r := 0; r < *rounds; r++ {
			d := phase(client, upBase+"/v1/chat/completions", "m", stream, *calls / *rounds, *conc)
			if d.err != nil {
				return fmt.Errorf("direct %s: %w", kind, d.err)
			}
			if stream && r == 0 && *profile != "" {
				f, err := os.Create(*profile)
				if err != nil {
					return err
				}
				if err := pprof.StartCPUProfile(f); err != nil {
					return err
				}
			}
			p := phase(client, srv.base+"/v1/chat/completions", "fake:m", stream, *calls / *rounds, *conc)
			if stream && r == 0 && *profile != "" {
				pprof.StopCPUProfile()
			}
			if p.err != nil {
				return fmt.Errorf("proxied %s: %w", kind, p.err)
			}
			perRound = append(perRound, p.cpuPerCall()-d.cpuPerCall())
			direct, proxied = direct.add(d), proxied.add(p)
		}
		if stream && *memprofile != "" {
			// Allocations are counted from the start; the direct phases' share is small and known.
			if err := writeAllocs(*memprofile); err != nil {
				return err
			}
		}
		recorded += proxied.n + proxied.warm
		if err := srv.checkUsage(recorded); err != nil {
			return fmt.Errorf("proxied %s: %w", kind, err)
		}
		fmt.Printf("%s direct:  %4.0f µs CPU/call, %4.0f allocs/call, %5.1f KB/call, %4.1f reads + %4.1f writes/call, %.3f new upstream conns/call, first chunk p50 %s p99 %s\n", kind, direct.cpuPerCall(), direct.allocsPerCall(), direct.kbPerCall(), direct.readsPerCall(), direct.writesPerCall(), direct.connsPerCall(), pct(direct.fb, .5), pct(direct.fb, .99))
		fmt.Printf("%s proxied: %4.0f µs CPU/call, %4.0f allocs/call, %5.1f KB/call, %4.1f reads + %4.1f writes/call, %.3f new upstream conns/call, first chunk p50 %s p99 %s\n", kind, proxied.cpuPerCall(), proxied.allocsPerCall(), proxied.kbPerCall(), proxied.readsPerCall(), proxied.writesPerCall(), proxied.connsPerCall(), pct(proxied.fb, .5), pct(proxied.fb, .99))
		sort.Float64s(perRound)
		fmt.Printf("%s server:  %4.0f µs CPU/call (median of %d rounds: %s), %4.0f allocs/call, %5.1f KB/call, %4.1f reads + %4.1f writes/call (usage recorded for all %d proxied calls)\n", kind,
			perRound[len(perRound)/2], len(perRound), rounded(perRound), proxied.allocsPerCall()-direct.allocsPerCall(), proxied.kbPerCall()-direct.kbPerCall(),
			proxied.readsPerCall()-direct.readsPerCall(), proxied.writesPerCall()-direct.writesPerCall(), recorded)
	}
	// Time to first chunk with -c streams in flight, the CPU not saturated: the upstream writes its
	// first chunk at once and a token every -gap.
	direct := phase(client, pacedBase+"/v1/chat/completions", "m", true, *ttfcCalls, *conc)
	proxied := phase(client, srv.base+"/v1/chat/completions", "paced:m", true, *ttfcCalls, *conc)
	if direct.err != nil {
		return fmt.Errorf("direct paced SSE: %w", direct.err)
	}
	if proxied.err != nil {
		return fmt.Errorf("proxied paced SSE: %w", proxied.err)
	}
	recorded += proxied.n + proxied.warm
	if err := srv.checkUsage(recorded); err != nil {
		return fmt.Errorf("proxied paced SSE: %w", err)
	}
	fmt.Printf("TTFC (%d streams in flight, a token every %s, %d calls): direct p50 %s p99 %s; proxied p50 %s p99 %s; added p50 %s p99 %s\n",
		*conc, *gap, *ttfcCalls, pct(direct.fb, .5), pct(direct.fb, .99), pct(proxied.fb, .5), pct(proxied.fb, .99),
		pct(proxied.fb, .5)-pct(direct.fb, .5), pct(proxied.fb, .99)-pct(direct.fb, .99))
	fmt.Printf("load average %s\n", loadavg())
	return nil
}

func writeAllocs(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func rounded(v []float64) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.FormatFloat(x, 'f', 0, 64)
	}
	return strings.Join(s, " ")
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

type result struct {
	cpu     time.Duration
	io      ioCount
	conns   int64 // connections the upstreams accepted
	mallocs uint64
	bytes   uint64
	n, warm int
	fb      []time.Duration
	err     error
}

// add sums two phases' measures.
func (r result) add(o result) result {
	return result{cpu: r.cpu + o.cpu, io: ioCount{r.io.reads + o.io.reads, r.io.writes + o.io.writes}, conns: r.conns + o.conns, mallocs: r.mallocs + o.mallocs, bytes: r.bytes + o.bytes,
		n: r.n + o.n, warm: r.warm + o.warm, fb: append(r.fb, o.fb...), err: errors.Join(r.err, o.err)}
}

func (r result) cpuPerCall() float64    { return float64(r.cpu.Microseconds()) / float64(r.n) }
func (r result) readsPerCall() float64  { return float64(r.io.reads) / float64(r.n) }
func (r result) writesPerCall() float64 { return float64(r.io.writes) / float64(r.n) }
func (r result) connsPerCall() float64  { return float64(r.conns) / float64(r.n) }
func (r result) allocsPerCall() float64 { return float64(r.mallocs) / float64(r.n) }
func (r result) kbPerCall() float64     { return float64(r.bytes) / 1024 / float64(r.n) }

// phase makes calls POSTs to url with conc clients and measures the process CPU and allocations
// they took and each call's time to first chunk.
func phase(c *http.Client, url, model string, stream bool, calls, conc int) result {
	body := fmt.Sprintf(`{"model":%q,"stream":%v,"messages":[{"role":"user","content":"How are you today?"}]}`, model, stream)
	if stream {
		// As the SDKs do when asked for usage: the answer's last chunk carries it.
		body = fmt.Sprintf(`{"model":%q,"stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"How are you today?"}]}`, model)
	}
	// Warm up the connections and the server's caches.
	warm := conc * 4
	for i := 0; i < warm; i++ {
		if _, err := call(c, url, body, stream); err != nil {
			return result{err: err}
		}
	}
	var next atomic.Int64
	var mu sync.Mutex
	var fbs []time.Duration
	var firstErr error
	var wg sync.WaitGroup
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	io0 := ioCounts()
	conns0 := upstreamConns.Load()
	cpu0 := cputime.Used()
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
	cpu := cputime.Used() - cpu0
	conns := upstreamConns.Load() - conns0
	io1 := ioCounts()
	runtime.ReadMemStats(&ms1)
	return result{cpu: cpu, io: ioCount{io1.reads - io0.reads, io1.writes - io0.writes}, conns: conns, mallocs: ms1.Mallocs - ms0.Mallocs, bytes: ms1.TotalAlloc - ms0.TotalAlloc, n: calls, warm: warm, fb: fbs, err: firstErr}
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
	if stream && (!bytes.Contains(b, []byte("data: [DONE]")) || !bytes.Contains(b, []byte(`"usage":{`))) {
		return 0, fmt.Errorf("stream without its usage chunk or [DONE]: %.300s", b)
	}
	return fb, nil
}

// upstream is an OpenAI-compatible model answering at once (or, with gap, writing a token every
// gap) with OpenAI's chunks: the role, one chunk a token, the finish_reason, the usage when
// stream_options.include_usage asks for it, then [DONE], each flushed as it is written.
type upstream struct {
	tokens []string
	gap    time.Duration
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	raw, err := io.ReadAll(r.Body)
	if err != nil || r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/chat/completions") {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	const head = `{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","system_fingerprint":"fp_1",`
	usage := fmt.Sprintf(`{"prompt_tokens":13,"completion_tokens":%d,"total_tokens":%d,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}`, len(u.tokens), 13+len(u.tokens))
	if !bytes.Contains(raw, []byte(`"stream":true`)) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":"chatcmpl-2","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":%q,"refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":%s}`,
			strings.Join(u.tokens, ""), usage)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	f, _ := w.(http.Flusher)
	send := func(data string) {
		fmt.Fprintf(w, "data: %s\n\n", data)
		f.Flush()
	}
	send(head + `"choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}]}`)
	for _, t := range u.tokens {
		if u.gap > 0 {
			time.Sleep(u.gap)
		}
		send(fmt.Sprintf(`%s"choices":[{"index":0,"delta":{"content":%q},"logprobs":null,"finish_reason":null}]}`, head, t))
	}
	send(head + `"choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}`)
	if bytes.Contains(raw, []byte(`"include_usage":true`)) {
		send(head + `"choices":[],"usage":` + usage + `}`)
	}
	send("[DONE]")
}

// upstreamConns counts the connections the upstreams accepted: the server's client should keep
// its connections alive, and a new one per call (a dial, a handshake, two goroutines each side)
// costs more CPU than the rest of a call.
var upstreamConns atomic.Int64

func serve(h http.Handler) (string, func(), error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ConnState: func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			upstreamConns.Add(1)
		}
	}}
	go func() { _ = hs.Serve(l) }()
	return "http://" + l.Addr().String(), func() { _ = hs.Close() }, nil
}

type server struct {
	base  string
	store *eventstoretest.Memory
	stop  func()
}

// checkUsage checks that the tenant's calls left want usage events, each of a completed call
// with the upstream's usage (not an estimate).
func (s *server) checkUsage(want int) error {
	evs, err := s.store.ReadTenant(context.Background(), tenant.MustParse("bench"), 0, 0)
	if err != nil {
		return err
	}
	n := 0
	for _, e := range evs {
		if e.Type != events.TypeCompletionRecorded {
			continue
		}
		var rec events.CompletionRecorded
		if err := json.Unmarshal(e.Data, &rec); err != nil {
			return err
		}
		if rec.Outcome != events.OutcomeCompleted || rec.Usage.Estimated || rec.Usage.PromptTokens != 13 {
			return fmt.Errorf("usage event %s: outcome %s, usage %+v, want the upstream's", e.ID, rec.Outcome, rec.Usage)
		}
		n++
	}
	if n != want {
		return fmt.Errorf("%d usage events recorded, want %d", n, want)
	}
	return nil
}

// startServer serves the conversation module on a memory store with the upstreams as
// OpenAI-compatible providers; any x-tenant-id is admitted.
func startServer(upstreams map[string]string) (*server, error) {
	providers := map[string]ai.Provider{}
	for name, base := range upstreams {
		p, err := openai.New(openai.Config{BaseURL: base})
		if err != nil {
			return nil, err
		}
		providers[name] = p
	}
	router, err := ai.NewRouter(ai.RouterConfig{}, providers)
	if err != nil {
		return nil, err
	}
	log := slog.New(slog.DiscardHandler)
	st := eventstoretest.NewMemory()
	mod, err := conversation.New(conversation.Deps{Store: st, Router: router, Log: log, Metrics: metrics.NewSet(),
		Config: conversation.Config{DefaultModel: "fake:m"}})
	if err != nil {
		return nil, err
	}
	srv, err := httpapi.New(httpapi.Config{}, httpapi.Deps{Guard: httpapitest.HeaderGuard{}, Log: log})
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "crispy-v1proxy-")
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
	if err := b.WaitCaughtUp(ctx); err != nil {
		stopBus()
		return nil, err
	}
	base, stop, err := serve(srv.Handler())
	if err != nil {
		stopBus()
		return nil, err
	}
	return &server{base: base, store: st, stop: func() { stop(); stopBus(); <-busDone; _ = os.RemoveAll(dir) }}, nil
}

// ioCount is the process's read and write system calls (/proc/self/io): most of a relayed
// stream's cost is in them, and unlike CPU time their number does not depend on the load.
type ioCount struct{ reads, writes int64 }

func ioCounts() ioCount {
	var c ioCount
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return c
	}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(l, ": ")
		n, _ := strconv.ParseInt(v, 10, 64)
		switch k {
		case "syscr":
			c.reads = n
		case "syscw":
			c.writes = n
		}
	}
	return c
}

func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[int(float64(len(d)-1)*p)].Round(time.Microsecond)
}
