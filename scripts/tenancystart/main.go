// Command tenancystart measures the tenancy module's start on a data folder written by
// scripts/history: how long the tenants-file sync takes before the server can resolve tenants, and
// how many events the store hands the module to do it, and the bus (which feeds the module's tenant
// directory read model, "tenancy.directory", from its checkpoint).
//
//	go run ./scripts/history -dir /tmp/h100k -events 100000
//	go run ./scripts/tenancystart -dir /tmp/h100k
//
// The folder is copied first (its events/ folder, into a scratch folder next to it), so the
// measurement never writes into it and can be repeated. Then, each in a fresh process, as serve
// does (Start records and serves the file's tenants; the bus and the module's Run start; Run records
// the removals once the tenant directory has caught up):
//   - "first": a start with a tenants file that keeps t0…t2, drops t3 and adds t-new, so the sync
//     records a removal and a registration; the folder has no read model yet, so the bus builds the
//     directory from the start of the store (what the first start after an upgrade does);
//   - "again": a restart with the same file, which records nothing; the directory resumes from its
//     checkpoint.
//
// "tenants served" is the time Start takes (serve waits for it before it listens); "removals
// recorded" is the time from the bus's start until the tenants that left the file are recorded as
// removed (WaitSynced: the tenant directory caught up, then the appends).
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/crispy-enigma/crispy/modules/tenancy"
	"github.com/crispy-enigma/crispy/platform/bus"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/embedded"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "tenancystart:", err)
		os.Exit(1)
	}
}

const tenantsFile = `tenants:
  - id: t0
  - id: t1
  - id: t2
  - id: t-new
`

func run() error {
	dir := flag.String("dir", "", "data folder written by scripts/history (read only: it is copied)")
	child := flag.String("child", "", "internal: measure one start of the scratch folder")
	keep := flag.Bool("keep", false, "keep the scratch folder")
	flag.Parse()
	if *dir == "" {
		return errors.New("-dir is required")
	}
	if *child != "" {
		return measure(*dir, *child)
	}
	if _, err := os.Stat(filepath.Join(*dir, "events", "events.log")); err != nil {
		return fmt.Errorf("no store in %s (write one with scripts/history): %w", *dir, err)
	}
	scratch, err := os.MkdirTemp(filepath.Dir(filepath.Clean(*dir)), "tenancystart-")
	if err != nil {
		return err
	}
	if !*keep {
		defer os.RemoveAll(scratch)
	}
	if out, err := exec.Command("cp", "-a", filepath.Join(*dir, "events"), scratch).CombinedOutput(); err != nil {
		return fmt.Errorf("copy the store: %v: %s", err, out)
	}
	if err := os.WriteFile(filepath.Join(scratch, "tenants.yaml"), []byte(tenantsFile), 0o600); err != nil {
		return err
	}
	for _, phase := range []string{"first", "again"} {
		r, err := fresh(scratch, phase)
		if err != nil {
			return err
		}
		fmt.Printf("%-5s start: store at %d events, store open %.1f ms, tenants served after %.1f ms, removals recorded after %.1f ms; events the store handed tenancy: %d (reads %d), the bus: %d; recorded %d; tenants %s; RSS %.1f MB\n",
			phase, r.Events, r.OpenMs, r.ReadyMs, r.SyncedMs, r.Delivered, r.Reads, r.BusDelivered, r.Recorded, r.Tenants, r.RSSMB)
	}
	return nil
}

type result struct {
	Events    uint64  `json:"events"`
	OpenMs    float64 `json:"openMs"`
	ReadyMs   float64 `json:"readyMs"`
	SyncedMs  float64 `json:"syncedMs"`
	Delivered int64   `json:"delivered"` // events handed to the module by Subscribe, ReadStream and ReadTenant
	Reads     int64   `json:"reads"`     // calls of those
	// BusDelivered is what the store handed the bus until the removals were recorded.
	BusDelivered int64   `json:"busDelivered"`
	Recorded     uint64  `json:"recorded"`
	Tenants      string  `json:"tenants"`
	RSSMB        float64 `json:"rssMB"`
}

// fresh runs this program again, in a fresh process, to measure one start.
func fresh(scratch, phase string) (result, error) {
	exe, err := os.Executable()
	if err != nil {
		return result{}, err
	}
	var out bytes.Buffer
	c := exec.Command(exe, "-dir", scratch, "-child", phase)
	c.Stdout, c.Stderr = &out, os.Stderr
	if err := c.Run(); err != nil {
		return result{}, fmt.Errorf("%s start: %w", phase, err)
	}
	var r result
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		return result{}, fmt.Errorf("%s start: %w (%q)", phase, err, out.String())
	}
	return r, nil
}

// counting counts what the store hands its caller.
type counting struct {
	eventstore.Store
	delivered, reads atomic.Int64
}

func (c *counting) Subscribe(ctx context.Context, o eventstore.SubscribeOptions, fn eventstore.Handler) error {
	c.reads.Add(1)
	return c.Store.Subscribe(ctx, o, func(ctx context.Context, e eventstore.Event) error { c.delivered.Add(1); return fn(ctx, e) })
}

func (c *counting) ReadStream(ctx context.Context, s tenant.Stream, from uint64, max int) ([]eventstore.Event, error) {
	evs, err := c.Store.ReadStream(ctx, s, from, max)
	c.reads.Add(1)
	c.delivered.Add(int64(len(evs)))
	return evs, err
}

func (c *counting) ReadTenant(ctx context.Context, t tenant.ID, from eventstore.Position, max int) ([]eventstore.Event, error) {
	evs, err := c.Store.ReadTenant(ctx, t, from, max)
	c.reads.Add(1)
	c.delivered.Add(int64(len(evs)))
	return evs, err
}

func measure(scratch, phase string) error {
	ctx := context.Background()
	t0 := time.Now()
	s, err := embedded.Open(filepath.Join(scratch, "events"), embedded.Options{})
	if err != nil {
		return err
	}
	defer s.Close()
	var r result
	r.OpenMs = ms(time.Since(t0))
	last, err := s.LastPosition(ctx)
	if err != nil {
		return err
	}
	r.Events = uint64(last)
	cs, bs := &counting{Store: s}, &counting{Store: s}
	b, err := bus.New(bus.Config{CheckpointDir: filepath.Join(scratch, "bus"), ReadModelDir: filepath.Join(scratch, "readmodels")},
		bus.Deps{Store: bs})
	if err != nil {
		return err
	}
	m, err := tenancy.New(tenancy.Deps{Config: tenancy.Config{TenantsFile: filepath.Join(scratch, "tenants.yaml")}, Store: cs})
	if err != nil {
		return err
	}
	m.Register(b)
	t1 := time.Now()
	if err := m.Start(ctx); err != nil {
		return err
	}
	r.ReadyMs = ms(time.Since(t1))
	bctx, stop := context.WithCancel(ctx)
	defer stop()
	done, modDone := make(chan error, 1), make(chan error, 1)
	t2 := time.Now()
	go func() { done <- b.Run(bctx) }()
	go func() { modDone <- m.Run(bctx) }()
	if err := m.WaitSynced(ctx); err != nil {
		return err
	}
	r.SyncedMs = ms(time.Since(t2))
	r.Delivered, r.Reads, r.BusDelivered = cs.delivered.Load(), cs.reads.Load(), bs.delivered.Load()
	// Let the directory apply what the sync recorded, then stop cleanly (it commits its checkpoint).
	if err := b.Sync(ctx); err != nil {
		return err
	}
	stop() // deferred too, for the error returns: the process ends with them
	if err := errors.Join(<-done, <-modDone); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	after, err := s.LastPosition(ctx)
	if err != nil {
		return err
	}
	r.Recorded = uint64(after - last)
	r.Tenants = fmt.Sprint(m.Tenants())
	r.RSSMB = rssMB()
	return json.NewEncoder(os.Stdout).Encode(r)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// rssMB is this process's resident set size.
func rssMB() float64 {
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
