// Command startup measures how long the real `crispy serve` takes to start on a data folder written
// by scripts/history, and what it holds in memory once it serves:
//
//	go build -o /tmp/crispy ./cmd/crispy
//	go run ./scripts/history -dir /tmp/h1m -events 1000000
//	go run ./scripts/startup -crispy /tmp/crispy -dir /tmp/h1m
//
// The folder's event store (-dir/events) is copied once into a scratch folder (-work, default a new
// folder under the system's temporary folder, removed at the end), so the measured server never
// writes into -dir and other measurements can share it. Then, each a fresh `crispy serve` process
// started with exec:
//   - "first": a first start on the scratch folder with no read models, no bus checkpoint and no
//     search index (everything but events/ removed): every read model is rebuilt from position 1;
//   - "restart" (-runs times): a start on what the previous run left, read models at their
//     checkpoints.
//
// For each it reports: the time from exec to the port accepting a connection ("listening": a
// server may accept connections before it answers them); to the first HTTP answer (GET /healthz,
// "answering"); to the first 200 on GET /health (tenant demo) whose status and every backend are ok
// ("ready to serve"); what the first /health answer said if it was not ok (catching_up and its
// progress); the RSS (VmRSS) and peak RSS (VmHWM) of the server once ready; and, from the server's
// log and the /health answers, a timeline: when each read model caught up and how fast (events/s for
// one built from position 1). For a first start it sums that up: when the read models on the shared
// cursor had all caught up and at how many events/s, then the two on cursors of their own (the
// search index, retrieval.index, which re-embeds every document, and the audit tree, audit.merkle),
// which start reading once the shared ones have caught up: each at how many events/s over the time
// it read. The machine's load average (from
// /proc/loadavg) before each start and the CPU time the server had used once ready (user + system,
// from /proc/<pid>/stat) are printed too: on a busy machine (other work on its cores) wall-clock
// rates are what the server got of the machine, and events per CPU-second say what it cost. /health is rate-limited like every tenant route, so after its first
// answer it is polled only once the log says the read models caught up (-milestone; "listening" for
// a server that listens only then). The server is then stopped with SIGTERM. The page cache is warm
// (the copy was just written): these are warm starts.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/crispy-enigma/crispy/platform/auditlog"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "startup:", err)
		os.Exit(1)
	}
}

func run() error {
	bin := flag.String("crispy", "", "a built crispy binary (required)")
	dir := flag.String("dir", "", "a data folder written by scripts/history (required; only read)")
	work := flag.String("work", "", "scratch folder for the copy (default: a new temporary folder, removed at the end)")
	runs := flag.Int("runs", 3, "restarts to measure after the first start (the median is reported too)")
	timeout := flag.Duration("timeout", 5*time.Minute, "give up on a start after this long")
	keep := flag.Bool("keep", false, "keep the scratch folder")
	milestone := flag.String("milestone", "every route answers", "poll /health once the server's log has a line with this (\"listening\" for a server that listens once caught up)")
	tenants := flag.String("tenants", "", "comma-separated tenants for a tenants file (--tenants), e.g. demo,t0,t1,t2,t3 to serve the history's tenants; none: no file (tenant demo only)")
	skipFirst := flag.Bool("restarts-only", false, "do not report the first start (it still runs, to build the read models)")
	flag.Parse()
	if *bin == "" || *dir == "" {
		return errors.New("-crispy and -dir are required")
	}
	src := filepath.Join(*dir, "events")
	if _, err := os.Stat(filepath.Join(src, "events.log")); err != nil {
		return fmt.Errorf("no event store in %s (write one with scripts/history): %w", *dir, err)
	}
	if *work == "" {
		w, err := os.MkdirTemp("", "crispy-startup-")
		if err != nil {
			return err
		}
		*work = w
		if !*keep {
			defer os.RemoveAll(w)
		}
	} else if err := os.MkdirAll(*work, 0o750); err != nil {
		return err
	}
	t := time.Now()
	n, err := copyTree(src, filepath.Join(*work, "events"))
	if err != nil {
		return fmt.Errorf("copy the event store: %w", err)
	}
	fmt.Printf("copied %s (%.1f MB) to %s in %.1f s\n", src, float64(n)/1e6, *work, time.Since(t).Seconds())

	// First start: nothing but the events.
	ents, err := os.ReadDir(*work)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e.Name() != "events" {
			if err := os.RemoveAll(filepath.Join(*work, e.Name())); err != nil {
				return err
			}
		}
	}
	var extra []string
	if *tenants != "" {
		var b strings.Builder
		b.WriteString("tenants:\n")
		for _, id := range strings.Split(*tenants, ",") {
			fmt.Fprintf(&b, "  - id: %s\n", strings.TrimSpace(id))
		}
		path := filepath.Join(*work, "tenants.yaml")
		if err := os.WriteFile(path, []byte(b.String()), 0o640); err != nil {
			return err
		}
		extra = append(extra, "--tenants", path)
	}
	var first result
	if *skipFirst {
		if _, err := measure(*bin, *work, *milestone, *timeout, extra...); err != nil { // builds the read models, not reported
			return fmt.Errorf("first start: %w", err)
		}
	} else {
		if first, err = measure(*bin, *work, *milestone, *timeout, extra...); err != nil {
			return fmt.Errorf("first start: %w", err)
		}
		first.print("first start (no read models)")
	}
	var rs []result
	for i := 0; i < max(*runs, 1); i++ {
		r, err := measure(*bin, *work, *milestone, *timeout, extra...)
		if err != nil {
			return fmt.Errorf("restart %d: %w", i+1, err)
		}
		r.print(fmt.Sprintf("restart %d (read models at their checkpoints)", i+1))
		rs = append(rs, r)
	}
	slices.SortFunc(rs, func(a, b result) int { return int(a.Ready - b.Ready) })
	m := rs[len(rs)/2]
	fmt.Printf("\nsummary (%d events): first start ready %s, answering %s, RSS %.1f MB; restart (median of %d) ready %s, answering %s, RSS %.1f MB (peak %.1f MB)\n",
		first.Events, sec(first.Ready), sec(first.Answering), first.RSSMB, len(rs), sec(m.Ready), sec(m.Answering), m.RSSMB, m.PeakMB)
	if !*skipFirst {
		fmt.Printf("first start catch-up: %s\n", first.catchUp())
	}
	return nil
}

// ownCursors are the read models on cursors of their own (bus.ProjectionOptions.OwnCursor): the
// search index, which re-embeds every document, and the audit Merkle tree. Since 4cd3ac0 they start
// reading once the shared cursor's read models have caught up (the server logs which, and their
// "reading" time, their catch-up without that wait).
var ownCursors = []string{"retrieval.index", "audit.merkle"}

// caughtUp is a read model's "caught up" log line.
type caughtUp struct {
	At       time.Duration // since exec
	Took     time.Duration // since its bus started
	Reading  time.Duration // since its cursor started reading (0: not logged, as Took)
	Position uint64
	FromZero bool
}

// catchUp sums up a start's read models: when those on the shared cursor had all caught up, at how
// many events/s (of a first start: the events up to the store's end over the time the slowest of
// them took since the bus ran), then each read model on a cursor of its own, at how many events/s
// over the time it was reading.
func (r result) catchUp() string {
	var slowest string
	var rest caughtUp
	for name, c := range r.CaughtUp {
		if !slices.Contains(ownCursors, name) && c.Took >= rest.Took {
			slowest, rest = name, c
		}
	}
	if slowest == "" {
		return "no read model caught up in the log"
	}
	out := fmt.Sprintf("read models on the shared cursor (all but %s) caught up at %s (slowest %s, %s after the bus ran)", strings.Join(ownCursors, ", "), sec(rest.At), slowest, sec(rest.Took))
	if rest.FromZero && rest.Took > 0 {
		out += fmt.Sprintf(": %.0f events/s", float64(rest.Position)/rest.Took.Seconds())
		if r.SharedCPU > 0 {
			out += fmt.Sprintf(", server CPU by then %s (%.0f events per CPU-second, start-up included)", sec(r.SharedCPU), float64(rest.Position)/r.SharedCPU.Seconds())
		}
	}
	for _, name := range ownCursors {
		c, ok := r.CaughtUp[name]
		if !ok {
			continue
		}
		out += fmt.Sprintf("; %s caught up at %s", name, sec(c.At))
		read := c.Took
		if c.Reading > 0 {
			read = c.Reading
		}
		if c.FromZero && read > 0 {
			out += fmt.Sprintf(": %.0f events/s over the %s it read", float64(c.Position)/read.Seconds(), sec(read))
		}
	}
	if r.CPU > 0 {
		out += fmt.Sprintf("; server CPU time once ready %s (%.0f events per CPU-second)", sec(r.CPU), float64(r.Events)/r.CPU.Seconds())
	}
	return out + fmt.Sprintf("; load average before the start %s", r.Load)
}

// result is one start.
type result struct {
	Listening, Answering, Ready time.Duration
	FirstCatchingUp             string        // the first /health answer that was not ok, abridged
	CatchingUpAt                time.Duration // when it came
	RSSMB, PeakMB               float64
	Events                      uint64
	Timeline                    []logEvent
	CaughtUp                    map[string]caughtUp // per read model, from the log
	CPU                         time.Duration       // the server's user + system time once ready
	SharedCPU                   time.Duration       // the same when the log said the shared read models caught up (first start)
	Load, LoadReady             string              // /proc/loadavg's 1, 5 and 15 minute averages before the start and once ready
}

type logEvent struct {
	At   time.Duration
	What string
}

// sharedCaughtUp is the server's log line when the read models on the shared cursor have caught up
// (logged once they took more than 100 ms: a first start).
const sharedCaughtUp = "the shared read models caught up"

func (r result) print(title string) {
	fmt.Printf("\n%s:\n", title)
	fmt.Printf("  listening (port accepts):   %s\n", sec(r.Listening))
	fmt.Printf("  answering (/healthz 200):   %s\n", sec(r.Answering))
	if r.FirstCatchingUp != "" {
		fmt.Printf("  first /health not ok:       %s: %s\n", sec(r.CatchingUpAt), r.FirstCatchingUp)
	}
	fmt.Printf("  ready (/health all ok):     %s\n", sec(r.Ready))
	fmt.Printf("  RSS once ready:             %.1f MB (peak %.1f MB)\n", r.RSSMB, r.PeakMB)
	fmt.Printf("  server CPU once ready:      %s (user + system)\n", sec(r.CPU))
	fmt.Printf("  machine load average:       %s before the start, %s once ready (this machine has %d cores)\n", r.Load, r.LoadReady, runtime.NumCPU())
	for _, e := range r.Timeline {
		fmt.Printf("    %8s  %s\n", sec(e.At), e.What)
	}
}

func sec(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', 3, 64) + " s" }

// measure starts crispy serve on dir, waits until it is ready, reads its memory and stops it.
func measure(bin, dir, milestone string, timeout time.Duration, extra ...string) (result, error) {
	port, err := freePort()
	if err != nil {
		return result{}, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	logPath := filepath.Join(dir, "serve.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return result{}, err
	}
	defer logf.Close()
	// A folder scripts/history wrote before it made the audit signing key: make it as a first start
	// would (serve refuses a store with events and no key; --new-audit-key would add events).
	if _, err := auditlog.CreateKey(auditlog.DefaultKeyFile(dir)); err != nil && !errors.Is(err, os.ErrExist) {
		return result{}, err
	}
	c := exec.Command(bin, append([]string{"serve", "--data-dir", dir, "--addr", addr}, extra...)...)
	// The defaults (embedded store, bus and index, no tenants file: tenant demo), whatever CRISPY_*
	// the caller's environment sets.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CRISPY_") {
			c.Env = append(c.Env, kv)
		}
	}
	c.Stdout, c.Stderr = logf, logf
	load := loadAvg()
	start := time.Now()
	if err := c.Start(); err != nil {
		return result{}, err
	}
	exited := make(chan error, 1)
	go func() { exited <- c.Wait() }()
	stop := func() error {
		_ = c.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
			return nil
		case <-time.After(time.Minute):
			_ = c.Process.Kill()
			<-exited
			return errors.New("the server did not stop within a minute of SIGTERM")
		}
	}
	r := result{Load: load}
	deadline := start.Add(timeout)
	failed := func(err error) (result, error) {
		_ = stop()
		return r, fmt.Errorf("%w (server log: %s)", err, lastLines(logPath, 5))
	}
	// The port.
	for {
		if cn, err := net.DialTimeout("tcp", addr, 100*time.Millisecond); err == nil {
			cn.Close()
			r.Listening = time.Since(start)
			break
		}
		select {
		case err := <-exited:
			return r, fmt.Errorf("the server exited before listening: %v (log: %s)", err, lastLines(logPath, 5))
		default:
		}
		if time.Now().After(deadline) {
			return failed(errors.New("the port did not accept within the timeout"))
		}
		time.Sleep(time.Millisecond)
	}
	// Answering: the first HTTP answer (GET /healthz, liveness). A server may listen before it serves.
	hc := &http.Client{Timeout: 2 * time.Second}
	for {
		if resp, err := hc.Get("http://" + addr + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				r.Answering = time.Since(start)
				break
			}
		}
		select {
		case err := <-exited:
			return r, fmt.Errorf("the server exited before answering: %v (log: %s)", err, lastLines(logPath, 5))
		default:
		}
		if time.Now().After(deadline) {
			return failed(errors.New("no answer on /healthz within the timeout"))
		}
		time.Sleep(time.Millisecond)
	}
	// Ready: /health 200 with every backend ok. /health is rate-limited like every tenant route (70
	// a minute for demo), so it is asked once now (what a client sees while the server catches up),
	// then polled only once the server's log says it has caught up (-milestone), and a 429 is waited
	// out as its retry-after says.
	lastKind := ""
	if ok, summary, err := healthOK(hc, "http://"+addr+"/health"); err == nil && !ok {
		r.FirstCatchingUp, r.CatchingUpAt = summary, time.Since(start)
	}
	for !logHas(logPath, milestone) {
		if r.SharedCPU == 0 && logHas(logPath, sharedCaughtUp) {
			// What the read models on the shared cursor cost, apart from what the cursors of
			// their own (the index's re-embedding) cost after them.
			r.SharedCPU = cpuTime(c.Process.Pid)
		}
		select {
		case err := <-exited:
			return r, fmt.Errorf("the server exited before it caught up: %v (log: %s)", err, lastLines(logPath, 5))
		default:
		}
		if time.Now().After(deadline) {
			return failed(fmt.Errorf("no %q in the server's log within the timeout", milestone))
		}
		time.Sleep(2 * time.Millisecond)
	}
	for {
		ok, summary, err := healthOK(hc, "http://"+addr+"/health")
		if err == nil && ok {
			r.Ready = time.Since(start)
			break
		}
		if k := healthKind(summary); err == nil && k != lastKind {
			r.Timeline = append(r.Timeline, logEvent{At: time.Since(start), What: "/health " + clip(summary, 300)})
			lastKind = k
		}
		select {
		case err := <-exited:
			return r, fmt.Errorf("the server exited before it was ready: %v (log: %s)", err, lastLines(logPath, 5))
		default:
		}
		if time.Now().After(deadline) {
			return failed(fmt.Errorf("not ready within the timeout (last /health: %s, %v)", summary, err))
		}
		if strings.HasPrefix(summary, "429 ") {
			time.Sleep(time.Second) // rate-limited: its retry-after is a second or more
			continue
		}
		time.Sleep(5 * time.Millisecond)
	}
	r.RSSMB, r.PeakMB = rss(c.Process.Pid)
	r.CPU, r.LoadReady = cpuTime(c.Process.Pid), loadAvg()
	if err := stop(); err != nil {
		return r, err
	}
	tl, events, cu := timeline(logPath, start)
	r.CaughtUp = cu
	r.Timeline, r.Events = append(r.Timeline, tl...), events
	slices.SortStableFunc(r.Timeline, func(a, b logEvent) int { return int(a.At - b.At) })
	return r, nil
}

// healthKind is a /health summary without its progress numbers: a change of kind is a milestone.
func healthKind(summary string) string {
	var b strings.Builder
	inParen := false
	for _, c := range summary {
		switch {
		case c == '(':
			inParen = true
		case c == ')':
			inParen = false
		case !inParen:
			b.WriteRune(c)
		}
	}
	return b.String()
}

// healthOK asks /health as tenant demo; ok when the answer is 200 and it and every backend say ok.
func healthOK(hc *http.Client, url string) (bool, string, error) {
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("x-tenant-id", "demo")
	resp, err := hc.Do(req)
	if err != nil {
		return false, "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Sprintf("%d %s", resp.StatusCode, clip(string(body), 200)), nil
	}
	var h struct {
		Status   string `json:"status"`
		Backends map[string]struct {
			Status   string `json:"status"`
			Error    string `json:"error"`
			Progress *struct {
				Done, Total uint64
			} `json:"progress"`
		} `json:"backends"`
	}
	if err := json.Unmarshal(body, &h); err != nil {
		return false, "", fmt.Errorf("/health: %w", err)
	}
	ok := h.Status == "ok"
	var parts []string
	for name, b := range h.Backends {
		if b.Status != "ok" {
			ok = false
			p := name + " " + b.Status
			if b.Progress != nil {
				p += fmt.Sprintf(" (%d of %d)", b.Progress.Done, b.Progress.Total)
			}
			parts = append(parts, p)
		}
	}
	slices.Sort(parts)
	return ok, h.Status + ": " + strings.Join(parts, ", "), nil
}

// timeline picks the server log's start-up milestones, as offsets from exec, and when each read
// model caught up.
func timeline(path string, start time.Time) ([]logEvent, uint64, map[string]caughtUp) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, nil
	}
	defer f.Close()
	var out []logEvent
	var events uint64
	fromZero := map[string]bool{}
	cu := map[string]caughtUp{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l map[string]any
		if json.Unmarshal(sc.Bytes(), &l) != nil {
			continue
		}
		msg, _ := l["msg"].(string)
		ts, _ := l["time"].(string)
		at, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			continue
		}
		what := ""
		switch {
		case msg == "bus running":
			events = uint64(num(l["storeAt"]))
			what = fmt.Sprintf("bus running (store at %d, projections from %d)", events, uint64(num(l["projectionsFrom"])))
		case msg == "bus: projection caught up":
			what = fmt.Sprintf("read model %v caught up at %d (took %v)", l["projection"], uint64(num(l["position"])), l["took"])
			d, err := time.ParseDuration(fmt.Sprint(l["took"]))
			name := fmt.Sprint(l["projection"])
			rd, _ := time.ParseDuration(fmt.Sprint(l["reading"])) // 0 from a server that does not log it
			if rd > 0 && rd < d-time.Millisecond {
				what += fmt.Sprintf(", reading the store for %v", l["reading"])
				if fromZero[name] {
					what += fmt.Sprintf(": %.0f events/s from position 1 while reading", num(l["position"])/rd.Seconds())
				}
			} else if err == nil && d > 0 && fromZero[name] {
				what += fmt.Sprintf(": %.0f events/s from position 1", num(l["position"])/d.Seconds())
			}
			cu[name] = caughtUp{At: at.Sub(start), Took: d, Reading: rd, Position: uint64(num(l["position"])), FromZero: fromZero[name]}
		case msg == "bus: projection builds from the start of the store", msg == "bus: projection resumes from its checkpoint":
			fromZero[fmt.Sprint(l["projection"])] = msg == "bus: projection builds from the start of the store"
			what = fmt.Sprintf("%s: %v", strings.TrimPrefix(msg, "bus: "), l["projection"])
		case strings.HasPrefix(msg, "bus: the shared read models caught up"):
			what = fmt.Sprintf("%s (waited %v)", strings.TrimPrefix(msg, "bus: "), l["waited"])
		case msg == "tenants loaded", msg == "listening", msg == "ready", msg == "read models caught up",
			strings.Contains(msg, "index") && !strings.Contains(msg, "request"),
			strings.Contains(msg, "caught up"), strings.Contains(msg, "catch"):
			what = msg
		}
		if what != "" {
			out = append(out, logEvent{At: at.Sub(start), What: what})
		}
	}
	return out, events, cu
}

// loadAvg is /proc/loadavg's 1, 5 and 15 minute load averages ("?" when it cannot be read).
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// cpuTime is the user + system CPU time of process pid (utime and stime of /proc/<pid>/stat, in
// clock ticks of 1/100 s on Linux).
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) is in parentheses and may hold spaces: count after its ")".
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	return time.Duration(ut+st) * (time.Second / 100)
}

// logHas reports whether the file at path holds s.
func logHas(path, s string) bool {
	b, err := os.ReadFile(path)
	return err == nil && bytes.Contains(b, []byte(s))
}

func num(v any) float64 {
	f, _ := v.(float64)
	return f
}

func rss(pid int) (cur, peak float64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
		switch k {
		case "VmRSS":
			cur = kb / 1024
		case "VmHWM":
			peak = kb / 1024
		}
	}
	return cur, peak
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// copyTree copies the regular files under src to dst and returns the bytes copied.
func copyTree(src, dst string) (int64, error) {
	var total int64
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(to, 0o750)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.Create(to)
		if err != nil {
			return err
		}
		n, err := io.Copy(out, in)
		total += n
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		return err
	})
	return total, err
}

func lastLines(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return clip(strings.Join(lines, " | "), 1500)
}

func clip(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
