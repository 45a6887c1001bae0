// Command history measures what the embedded event store costs as history grows. It writes N events
// of a realistic mix (chat sessions of 10–50 messages, document ingests, tool audits) across several
// tenants into a data folder, then measures, each in a fresh process: the store's open time and the
// RSS after it, a read of a 1,000-event stream, a read of 1,000 of a tenant's events from the middle
// of its history, and (with -crispy) the time and peak RSS of `crispy verify` and `crispy replay` of
// the biggest tenant.
//
//	go run ./scripts/history -dir /tmp/h100k -events 100000
//	go build -o bin/crispy ./cmd/crispy && go run ./scripts/history -dir /tmp/h1m -events 1000000 -crispy bin/crispy
//
// The folder is a data folder (-dir/events/events.log), so `crispy serve --data-dir` can start on it.
// A folder that already holds a store is measured as it is (nothing is written). -tenants 1 puts
// every event in one tenant, for a replay and verify of an N-event tenant.
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
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/uuid"

	convevents "github.com/crispy-enigma/crispy/modules/conversation/events"
	retrevents "github.com/crispy-enigma/crispy/modules/retrieval/events"
	tenevents "github.com/crispy-enigma/crispy/modules/tenancy/events"
	toolevents "github.com/crispy-enigma/crispy/modules/tooling/events"
	"github.com/crispy-enigma/crispy/platform/auditlog"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/embedded"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "history:", err)
		os.Exit(1)
	}
}

// longStream is the 1,000-event session the read measurement reads, in the biggest tenant.
const longStreamEntity = "long-1000"

func run() error {
	dir := flag.String("dir", "", "data folder to write to or measure (required)")
	total := flag.Int("events", 100_000, "events to write when the folder holds no store")
	tenants := flag.Int("tenants", 4, "tenants; the first (t0) gets half of the events, the others share the rest")
	writers := flag.Int("writers", 32, "concurrent writers (appends share fsyncs as in a busy server)")
	runs := flag.Int("runs", 3, "fresh-process opens to measure (the median is reported)")
	crispy := flag.String("crispy", "", "a built crispy binary: also measure 'crispy verify' and 'crispy replay' of t0")
	measure := flag.Bool("measure-open", false, "internal: open the store in this process and print what it cost")
	flag.Parse()
	if *dir == "" {
		return errors.New("-dir is required")
	}
	storeDir := filepath.Join(*dir, "events")
	if *measure {
		return measureOpen(storeDir)
	}
	if _, err := os.Stat(filepath.Join(storeDir, "events.log")); errors.Is(err, os.ErrNotExist) {
		if *tenants < 1 || *total < 1100 {
			return errors.New("-tenants must be at least 1 and -events at least 1100")
		}
		// The audit signing key a first start of crispy serve makes with an empty store: serve
		// refuses a store with events and no key.
		if _, err := auditlog.CreateKey(auditlog.DefaultKeyFile(*dir)); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
		if err := write(storeDir, *total, *tenants, *writers); err != nil {
			return err
		}
	} else {
		fmt.Printf("measuring the store already in %s (nothing written)\n", storeDir)
	}
	if fi, err := os.Stat(filepath.Join(storeDir, "events.log")); err == nil {
		fmt.Printf("log: %.1f MB\n", float64(fi.Size())/1e6)
	}
	var results []openResult
	for i := 0; i < max(*runs, 1); i++ {
		r, err := child(*dir)
		if err != nil {
			return err
		}
		results = append(results, r)
	}
	slices.SortFunc(results, func(a, b openResult) int { return int(a.OpenMs*1000 - b.OpenMs*1000) })
	m := results[len(results)/2]
	fmt.Printf("events: %d (t0: %d)\n", m.Events, m.T0Events)
	fmt.Printf("open: %.1f ms (median of %d fresh processes; all: %s)\n", m.OpenMs, len(results), allOpens(results))
	fmt.Printf("RSS after open: %.1f MB (Go heap in use %.1f MB; peak RSS during open %.1f MB)\n", m.RSSMB, m.HeapMB, m.PeakMB)
	fmt.Printf("read a 1,000-event stream: %.2f ms (median of 21)\n", m.ReadStreamMs)
	fmt.Printf("read 1,000 of t0's events from position %d: %.2f ms (median of 21)\n", m.TenantFrom, m.ReadTenantMs)
	if *crispy != "" {
		for _, cmd := range []string{"verify", "replay"} {
			if err := cli(*crispy, cmd, *dir); err != nil {
				return err
			}
		}
	}
	return nil
}

func allOpens(rs []openResult) string {
	var s []string
	for _, r := range rs {
		s = append(s, strconv.FormatFloat(r.OpenMs, 'f', 1, 64))
	}
	return strings.Join(s, ", ") + " ms"
}

// openResult is what a fresh process measured.
type openResult struct {
	Events       uint64  `json:"events"`
	T0Events     int     `json:"t0Events"`
	OpenMs       float64 `json:"openMs"`
	RSSMB        float64 `json:"rssMB"`
	HeapMB       float64 `json:"heapMB"`
	PeakMB       float64 `json:"peakMB"`
	ReadStreamMs float64 `json:"readStreamMs"`
	TenantFrom   uint64  `json:"tenantFrom"`
	ReadTenantMs float64 `json:"readTenantMs"`
}

// child runs this program again, in a fresh process, to measure an open.
func child(dir string) (openResult, error) {
	exe, err := os.Executable()
	if err != nil {
		return openResult{}, err
	}
	var out bytes.Buffer
	c := exec.Command(exe, "-measure-open", "-dir", dir)
	c.Stdout, c.Stderr = &out, os.Stderr
	if err := c.Run(); err != nil {
		return openResult{}, fmt.Errorf("measure open: %w", err)
	}
	var r openResult
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		return openResult{}, fmt.Errorf("measure open: %w (%q)", err, out.String())
	}
	return r, nil
}

// measureOpen opens the store, notes the time and the memory, then reads.
func measureOpen(storeDir string) error {
	t0 := time.Now()
	s, err := embedded.Open(storeDir, embedded.Options{})
	if err != nil {
		return err
	}
	var r openResult
	r.OpenMs = ms(time.Since(t0))
	r.RSSMB, r.PeakMB = rss()
	var mst runtime.MemStats
	runtime.ReadMemStats(&mst)
	r.HeapMB = float64(mst.HeapInuse) / 1e6
	defer s.Close()
	ctx := context.Background()
	last, err := s.LastPosition(ctx)
	if err != nil {
		return err
	}
	r.Events = uint64(last)
	big := tenant.MustParse("t0")
	long := tenant.MustStream(big, convevents.SessionCategory, longStreamEntity)
	var lat []time.Duration
	for i := 0; i < 21; i++ {
		t := time.Now()
		evs, err := s.ReadStream(ctx, long, 0, 0)
		if err != nil {
			return err
		}
		if len(evs) != 1000 {
			return fmt.Errorf("the long stream has %d events, want 1000", len(evs))
		}
		lat = append(lat, time.Since(t))
	}
	r.ReadStreamMs = median(lat)
	// t0's middle: count its events page by page (this is also the replay path).
	var positions []eventstore.Position
	for from := eventstore.Start; ; {
		page, err := s.ReadTenant(ctx, big, from, 4096)
		if err != nil {
			return err
		}
		for i := 0; i < len(page); i += 1000 {
			positions = append(positions, page[i].Position)
		}
		r.T0Events += len(page)
		if len(page) < 4096 {
			break
		}
		from = page[len(page)-1].Position + 1
	}
	from := positions[len(positions)/2]
	r.TenantFrom = uint64(from)
	lat = lat[:0]
	for i := 0; i < 21; i++ {
		t := time.Now()
		evs, err := s.ReadTenant(ctx, big, from, 1000)
		if err != nil {
			return err
		}
		if len(evs) == 0 {
			return errors.New("no events of t0 from the middle of its history")
		}
		lat = append(lat, time.Since(t))
	}
	r.ReadTenantMs = median(lat)
	return json.NewEncoder(os.Stdout).Encode(r)
}

// cli runs 'crispy verify|replay --tenant t0' on dir and reports its time and peak RSS.
func cli(bin, cmd, dir string) error {
	args := []string{cmd, "--data-dir", dir, "--tenant", "t0"}
	if cmd == "replay" {
		args = append(args, "--out", os.DevNull)
	}
	c := exec.Command(bin, args...)
	var stderr bytes.Buffer
	c.Stdout, c.Stderr = io.Discard, &stderr
	t := time.Now()
	err := c.Run()
	d := time.Since(t)
	if err != nil {
		return fmt.Errorf("crispy %s: %w: %s", cmd, err, lastLine(stderr.String()))
	}
	ru, _ := c.ProcessState.SysUsage().(*syscall.Rusage)
	peak := 0.0
	if ru != nil {
		peak = float64(ru.Maxrss) / 1024
	}
	fmt.Printf("crispy %s --tenant t0: %.2f s, peak RSS %.1f MB\n", cmd, d.Seconds(), peak)
	return nil
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func median(d []time.Duration) float64 {
	slices.Sort(d)
	return ms(d[len(d)/2])
}

// rss reads this process's resident set and its peak from /proc, in MB.
func rss() (cur, peak float64) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
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

// write appends total events to a new store in storeDir with writers concurrent writers.
func write(storeDir string, total, tenants, writers int) error {
	s, err := embedded.Open(storeDir, embedded.Options{})
	if err != nil {
		return err
	}
	ctx := context.Background()
	ids := make([]tenant.ID, tenants)
	for i := range ids {
		ids[i] = tenant.MustParse(fmt.Sprintf("t%d", i))
		ev, err := eventstore.NewEventData(tenevents.TypeTenantRegistered, tenevents.TenantRegistered{
			Config: tenevents.TenantConfig{ID: ids[i].String()}, Source: "scripts/history"})
		if err != nil {
			return err
		}
		if _, err := s.Append(ctx, tenant.MustStream(ids[i], "tenant", ""), eventstore.Any, ev); err != nil {
			return err
		}
	}
	budget := &atomic.Int64{}
	budget.Store(int64(total - tenants - 1000))
	start := time.Now()
	// The 1,000-event session that the read measurement reads, interleaved with everything else.
	long := &gen{rnd: rand.New(rand.NewPCG(99, 1)), s: s, budget: &atomic.Int64{}}
	long.budget.Store(1000)
	var wg sync.WaitGroup
	errs := make(chan error, writers+1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := long.session(ctx, ids[0], longStreamEntity, 1000); err != nil {
			errs <- err
		}
	}()
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			g := &gen{rnd: rand.New(rand.NewPCG(uint64(w), 7)), s: s, budget: budget}
			for budget.Load() > 0 {
				t := ids[0]
				if len(ids) > 1 && g.rnd.IntN(2) == 1 {
					t = ids[1+g.rnd.IntN(len(ids)-1)]
				}
				var err error
				switch k := g.rnd.IntN(10); {
				case k < 8:
					err = g.session(ctx, t, uuid.NewString(), 11+g.rnd.IntN(41))
				case k < 9:
					err = g.documents(ctx, t, 3)
				default:
					err = g.tools(ctx, t, 5)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}(w)
	}
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(5 * time.Second):
				n := int64(total) - budget.Load() - long.budget.Load()
				fmt.Fprintf(os.Stderr, "  %d events written (%.0f/s)\n", n, float64(n)/time.Since(start).Seconds())
			}
		}
	}()
	wg.Wait()
	close(done)
	close(errs)
	if err := <-errs; err != nil {
		s.Close()
		return err
	}
	last, _ := s.LastPosition(ctx)
	if err := s.Close(); err != nil {
		return err
	}
	d := time.Since(start)
	fmt.Printf("wrote %d events (%d tenants) in %.1f s (%.0f events/s with %d writers)\n", last, tenants, d.Seconds(), float64(last)/d.Seconds(), writers)
	return nil
}

// gen writes one writer's share of the mix.
type gen struct {
	rnd    *rand.Rand
	s      eventstore.Store
	budget *atomic.Int64
}

// take reserves n events of the budget; false when it is spent.
func (g *gen) take(n int) bool { return g.budget.Add(-int64(n)) >= 0 }

var words = strings.Fields(`the a of to and in is it that for on with as was at by this be from or an are
not have but which one they you were their all we can her has there been if more when will would who
so no model token answer document search session tenant budget stream event latency cost index query
summary context retrieval chunk embedding vector policy request response user assistant tool`)

func (g *gen) text(minLen, maxLen int) string {
	n := minLen + g.rnd.IntN(maxLen-minLen+1)
	var b strings.Builder
	for b.Len() < n {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(words[g.rnd.IntN(len(words))])
	}
	return b.String()
}

func (g *gen) append(ctx context.Context, st tenant.Stream, exp eventstore.ExpectedRevision, typ string, v any) error {
	ev, err := eventstore.NewEventData(typ, v)
	if err != nil {
		return err
	}
	ev.RequestID = uuid.NewString()
	ev.Actor = "user-" + strconv.Itoa(g.rnd.IntN(50))
	_, err = g.s.Append(ctx, st, exp, ev)
	return err
}

// session writes a session of up to n events: started, then user and assistant messages in turns,
// each its own append with the expected revision, as the conversation module writes them.
func (g *gen) session(ctx context.Context, t tenant.ID, id string, n int) error {
	st := tenant.MustStream(t, convevents.SessionCategory, id)
	if !g.take(1) {
		return nil
	}
	first := g.text(20, 80)
	if err := g.append(ctx, st, eventstore.NoStream, convevents.TypeSessionStarted, convevents.SessionStarted{SessionID: id, Tenant: t.String(), Title: first}); err != nil {
		return err
	}
	rev := uint64(0)
	for i := 1; i < n; i += 2 {
		if !g.take(1) {
			return nil
		}
		turn := uuid.NewString()
		if err := g.append(ctx, st, eventstore.Exact(rev), convevents.TypeUserMessageAdded, convevents.UserMessageAdded{
			SessionID: id, TurnID: turn, Content: g.text(40, 400), ChosenModel: "offline:echo", Source: "chat"}); err != nil {
			return err
		}
		rev++
		if i+1 >= n || !g.take(1) {
			return nil
		}
		content := g.text(200, 1500)
		if err := g.append(ctx, st, eventstore.Exact(rev), convevents.TypeAssistantMessageCompleted, convevents.AssistantMessageCompleted{
			SessionID: id, TurnID: turn, Content: content, Model: "offline:echo",
			Usage:     convevents.Usage{PromptTokens: 300 + g.rnd.IntN(2000), CompletionTokens: len(content) / 4, TotalTokens: 2000},
			LatencyMs: 100 + g.rnd.Float64()*900, TTFTMs: 20 + g.rnd.Float64()*200, Source: "chat"}); err != nil {
			return err
		}
		rev++
	}
	return nil
}

// documents ingests n documents of 1–6 KB, each in its own stream.
func (g *gen) documents(ctx context.Context, t tenant.ID, n int) error {
	for i := 0; i < n; i++ {
		if !g.take(1) {
			return nil
		}
		id := "doc-" + uuid.NewString()
		text := g.text(1000, 6000)
		var chunks []retrevents.Chunk
		var chunkIDs []string
		for start, k := 0, 0; start < len(text); start, k = start+800, k+1 {
			c := retrevents.Chunk{ID: fmt.Sprintf("%s#%d", id, k), Start: start, End: min(start+1000, len(text))}
			chunks = append(chunks, c)
			chunkIDs = append(chunkIDs, c.ID)
		}
		st := tenant.MustStream(t, retrevents.DocCategory, retrevents.DocStreamKey(id))
		if err := g.append(ctx, st, eventstore.Any, retrevents.TypeDocumentIngested, retrevents.DocumentIngested{
			DocID: id, Title: g.text(10, 60), ContentHash: "sha256:" + strings.Repeat("0", 64), Text: text,
			MaxChunkSize: 1000, Overlap: 200, Chunks: chunks, ChunkIDs: chunkIDs, EmbeddingModel: "offline:hash-384"}); err != nil {
			return err
		}
	}
	return nil
}

// tools records n tool calls (invoked, then succeeded) in the tenant's audit stream.
func (g *gen) tools(ctx context.Context, t tenant.ID, n int) error {
	st := tenant.MustStream(t, toolevents.AuditCategory, "")
	for i := 0; i < n; i++ {
		if !g.take(2) {
			return nil
		}
		inv, req := uuid.NewString(), uuid.NewString()
		if err := g.append(ctx, st, eventstore.Any, toolevents.TypeToolInvoked, toolevents.ToolInvoked{
			InvocationID: inv, Tenant: t.String(), Tool: "summarize", Version: "1.0.0", RequestID: req, ParamsHMAC: strings.Repeat("a", 64)}); err != nil {
			return err
		}
		if err := g.append(ctx, st, eventstore.Any, toolevents.TypeToolSucceeded, toolevents.ToolSucceeded{
			InvocationID: inv, Tenant: t.String(), Tool: "summarize", Version: "1.0.0", RequestID: req, ParamsHMAC: strings.Repeat("a", 64),
			Success: true, DurationMs: g.rnd.Float64() * 50}); err != nil {
			return err
		}
	}
	return nil
}
