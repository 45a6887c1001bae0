// Package host runs the tool plugins: it discovers the executables of the plugins folder, launches each
// (through the SDK, with the lock's checksum when there is a lock), keeps it warm, and contains it.
//
// Containment, per tool:
//   - A plugin dies with the host, even of SIGKILL: the SDK's Starter gives it a parent-death signal,
//     and the SDK's parent watch ends a plugin whose host is gone anyway.
//   - A call that times out (or whose caller goes away) is cancelled over gRPC, nothing more. Only a
//     process that does not recover is replaced: one still running the cancelled call after
//     CancelGrace, one that no longer answers, one above its memory ceiling. A replaced process keeps
//     serving the calls it has (they drain, each bounded by its timeout) and is killed when the last
//     one ends. Only a process that has died takes its calls with it.
//   - Calls wait for one of MaxConcurrent slots in per-tenant queues served round-robin (fairq).
//   - Each process has a memory ceiling: the kernel refuses memory well beyond it (RLIMIT_DATA), and a
//     process whose resident memory is above it is replaced after draining.
package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/crispy-enigma/crispy/modules/tooling/internal/fairq"
	"github.com/crispy-enigma/crispy/plugins/sdk"
	"github.com/crispy-enigma/crispy/plugins/sdk/schema"
)

// Reasons a process is replaced (the label of the restart metric).
const (
	ReasonCrash   = "crash"   // the process died
	ReasonMemory  = "memory"  // above its memory ceiling, or died out of memory
	ReasonTimeout = "timeout" // still running a cancelled call after CancelGrace
	ReasonWedged  = "wedged"  // no longer answers
)

// Config configures the Manager.
type Config struct {
	Dir           string
	MaxConcurrent int           // calls in flight per tool; more wait in per-tenant queues
	StartTimeout  time.Duration // handshake bound
	MaxTimeout    time.Duration // caps a tool's declared timeout
	// CancelGrace is how long a cancelled call may keep running in the plugin before the host
	// replaces the process (default 2 s).
	CancelGrace time.Duration
	// MemoryLimit is the memory ceiling of a tool that declares none, in bytes (default
	// sdk.DefaultMemoryLimit, 512 MiB; negative: no ceiling).
	MemoryLimit int64
	// MaxMemoryLimit caps the ceiling a tool declares (default 2 GiB).
	MaxMemoryLimit int64
	// MemoryPoll is how often the resident memory of each process is compared with its ceiling
	// (default 1 s).
	MemoryPoll time.Duration
	Callbacks  sdk.Callbacks
	Log        *slog.Logger
	HCLog      hclog.Logger
	// OnRestart is called when a tool's process is replaced, with one of the Reason constants.
	OnRestart func(tool, reason string)
}

// Errors of Call.
var (
	ErrNotFound = errors.New("tool not found")
	ErrTimeout  = errors.New("tool timed out")
	ErrCrashed  = errors.New("tool process failed during the call")
	ErrClosed   = errors.New("tool host is shut down")
)

// Refusal is a binary the host would not run, and why.
type Refusal struct {
	File   string
	Reason string
}

// Tool is a loaded tool: its description and compiled schemas.
type Tool struct {
	Desc   sdk.Description
	Input  *schema.Schema
	Output *schema.Schema
	File   string
}

type entry struct {
	tool     Tool
	path     string
	checksum []byte
	queue    *fairq.Queue

	launchMu sync.Mutex // one launch at a time

	mu       sync.Mutex
	cur      *proc          // where new calls go; nil: launch one
	draining map[*proc]bool // replaced, finishing their calls
	// closed is set by Close under mu, so a process that comes up as the host closes is either
	// collected by Close or killed by whoever would have installed it, never both or neither.
	closed bool
}

// proc is one process of a tool. Its fields but p are guarded by its entry's mu.
type proc struct {
	p        *sdk.Plugin
	inflight int    // calls the host has on it
	retired  string // why it was replaced; "" while it takes new calls
	killed   bool
}

// Manager owns the plugin processes.
type Manager struct {
	cfg  Config
	ids  atomic.Uint64 // call ids
	ctx  context.Context
	stop context.CancelFunc
	bg   sync.WaitGroup // the watchdog, cancellation checks, late launches

	mu       sync.Mutex
	loaded   bool
	closed   bool
	starter  *sdk.Starter
	tools    map[string]*entry
	refusals []Refusal
}

// New returns a Manager; nothing is launched until the catalog is first needed.
func New(cfg Config) *Manager {
	if cfg.MaxConcurrent <= 0 {
		cfg.MaxConcurrent = 32
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 10 * time.Second
	}
	if cfg.MaxTimeout <= 0 {
		cfg.MaxTimeout = 5 * time.Minute
	}
	if cfg.CancelGrace <= 0 {
		cfg.CancelGrace = 2 * time.Second
	}
	if cfg.MemoryLimit == 0 {
		cfg.MemoryLimit = sdk.DefaultMemoryLimit
	}
	if cfg.MaxMemoryLimit <= 0 {
		cfg.MaxMemoryLimit = sdk.DefaultMaxMemoryLimit
	}
	if cfg.MemoryLimit > cfg.MaxMemoryLimit {
		cfg.MemoryLimit = cfg.MaxMemoryLimit
	}
	if cfg.MemoryPoll <= 0 {
		cfg.MemoryPoll = time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.HCLog == nil {
		cfg.HCLog = hclog.NewNullLogger()
	}
	ctx, stop := context.WithCancel(context.Background())
	return &Manager{cfg: cfg, ctx: ctx, stop: stop, tools: map[string]*entry{}}
}

// Tools returns the loaded tools sorted by name, launching every plugin on first use.
func (m *Manager) Tools(ctx context.Context) ([]Tool, error) {
	if err := m.load(ctx); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Tool, 0, len(m.tools))
	for _, e := range m.tools {
		out = append(out, e.tool)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Desc.Name < out[j].Desc.Name })
	return out, nil
}

// Lookup returns the tool called name.
func (m *Manager) Lookup(ctx context.Context, name string) (Tool, error) {
	if err := m.load(ctx); err != nil {
		return Tool{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.tools[name]
	if !ok {
		return Tool{}, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	return e.tool, nil
}

// Refusals lists the binaries that were not loaded.
func (m *Manager) Refusals(ctx context.Context) ([]Refusal, error) {
	if err := m.load(ctx); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Refusal(nil), m.refusals...), nil
}

// load discovers and launches every plugin once. A plugin that fails is refused and logged; the others
// load.
func (m *Manager) load(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	if m.loaded {
		return nil
	}
	if m.cfg.Dir == "" {
		m.loaded = true
		return nil
	}
	names, err := Executables(m.cfg.Dir)
	if err != nil {
		return err
	}
	lock, err := ReadLock(m.cfg.Dir)
	if err != nil {
		return err
	}
	m.starter = sdk.NewStarter()
	type result struct {
		file string
		p    *sdk.Plugin
		sum  []byte
		err  error
	}
	results := make([]result, len(names))
	var wg sync.WaitGroup
	for i, n := range names {
		results[i].file = n
		var sum []byte
		if lock != nil {
			s, ok := lock[n]
			if !ok {
				results[i].err = fmt.Errorf("not listed in %s", LockFileName)
				continue
			}
			sum = s
		}
		results[i].sum = sum
		wg.Add(1)
		go func(r *result) {
			defer wg.Done()
			r.p, r.err = m.launch(ctx, filepath.Join(m.cfg.Dir, r.file), r.sum)
		}(&results[i])
	}
	wg.Wait()
	for _, r := range results {
		if r.err != nil {
			m.refuse(r.file, r.err)
			continue
		}
		t, err := compileTool(r.p.Description(), r.file)
		if err != nil {
			r.p.Kill()
			m.refuse(r.file, err)
			continue
		}
		if _, dup := m.tools[t.Desc.Name]; dup {
			r.p.Kill()
			m.refuse(r.file, fmt.Errorf("another binary already serves tool %q", t.Desc.Name))
			continue
		}
		m.tools[t.Desc.Name] = &entry{tool: t, path: filepath.Join(m.cfg.Dir, r.file), checksum: r.sum,
			queue: fairq.New(m.cfg.MaxConcurrent), cur: &proc{p: r.p}, draining: map[*proc]bool{}}
		m.cfg.Log.InfoContext(ctx, "tool plugin loaded", "tool", t.Desc.Name, "version", t.Desc.Version, "file", r.file,
			"locked", r.sum != nil, "memoryLimitBytes", r.p.MemoryLimit())
	}
	m.loaded = true
	m.bg.Add(1)
	go m.watch()
	return nil
}

func (m *Manager) refuse(file string, err error) {
	m.refusals = append(m.refusals, Refusal{File: file, Reason: err.Error()})
	m.cfg.Log.Error("tool plugin refused", "file", file, "error", err)
}

func compileTool(d sdk.Description, file string) (Tool, error) {
	in, err := schema.Compile(d.Name+"/input", d.InputSchema)
	if err != nil {
		return Tool{}, fmt.Errorf("%w: %v", sdk.ErrBadDescription, err)
	}
	out, err := schema.Compile(d.Name+"/output", d.OutputSchema)
	if err != nil {
		return Tool{}, fmt.Errorf("%w: %v", sdk.ErrBadDescription, err)
	}
	return Tool{Desc: d, Input: in, Output: out, File: file}, nil
}

func (m *Manager) launch(ctx context.Context, path string, sum []byte) (*sdk.Plugin, error) {
	// The plugin outlives the request that launched it: only the start timeout bounds the launch.
	lctx := context.WithoutCancel(ctx)
	cfg := sdk.LaunchConfig{Path: path, Checksum: sum, Callbacks: m.cfg.Callbacks, Starter: m.starter,
		Logger: m.cfg.HCLog.Named(filepath.Base(path)), StartTimeout: m.cfg.StartTimeout}
	if m.cfg.MemoryLimit > 0 {
		cfg.MaxMemory, cfg.DefaultMemory = m.cfg.MaxMemoryLimit, m.cfg.MemoryLimit
	}
	return sdk.Launch(lctx, cfg)
}

// Timeout is the effective timeout of a tool.
func (m *Manager) Timeout(t Tool) time.Duration {
	d := t.Desc.EffectiveTimeout()
	if d > m.cfg.MaxTimeout {
		d = m.cfg.MaxTimeout
	}
	return d
}

// Queued is the number of calls of the tool waiting for a slot.
func (m *Manager) Queued(name string) int {
	m.mu.Lock()
	e, ok := m.tools[name]
	m.mu.Unlock()
	if !ok {
		return 0
	}
	return e.queue.Waiting()
}

// Call runs one call of the tool called name: it waits for a slot in the calling tenant's turn,
// (re)launches the plugin if needed, and applies the tool's timeout. A call that times out is cancelled
// and the process checked (see the package comment); a process that died is replaced by the next call.
// Errors: ErrNotFound, ErrTimeout, ErrCrashed, *sdk.Error (the tool's refusal), ctx's error.
func (m *Manager) Call(ctx context.Context, name string, call sdk.Call) (json.RawMessage, error) {
	m.mu.Lock()
	e, ok := m.tools[name]
	closed := m.closed
	m.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	release, err := e.queue.Acquire(ctx, call.TenantID)
	if err != nil {
		return nil, err
	}
	defer release()

	// A (re)launch is bounded by StartTimeout, not by the tool's timeout: the tool's timeout is for its
	// work, and a host under load must not turn a slow process start into a tool timeout.
	pr, err := m.proc(ctx, e)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w: relaunch: %v", ErrCrashed, err)
	}
	call.ID = strconv.FormatUint(m.ids.Add(1), 10)
	tctx, cancel := context.WithTimeout(ctx, m.Timeout(e.tool))
	defer cancel()
	out, err := pr.p.Execute(tctx, call)
	m.done(e, pr)
	var te *sdk.Error
	switch {
	case err == nil:
		return out, nil
	case errors.As(err, &te):
		return nil, err
	case errors.Is(err, sdk.ErrPluginExited):
		m.retire(e, pr, deathReason(pr.p))
		return nil, fmt.Errorf("%w: %v", ErrCrashed, err)
	case ctx.Err() != nil:
		// The caller went away; the call was cancelled in the plugin. Check it stops.
		m.checkCancelled(e, pr, call.ID)
		return nil, ctx.Err()
	case tctx.Err() != nil || errors.Is(err, context.DeadlineExceeded):
		// The plugin answers its own end of the deadline: that answer can arrive before this
		// process's timer has marked tctx done (then it said context.DeadlineExceeded).
		m.checkCancelled(e, pr, call.ID)
		return nil, fmt.Errorf("%w after %s", ErrTimeout, m.Timeout(e.tool))
	case pr.p.Exited():
		m.retire(e, pr, deathReason(pr.p))
		return nil, fmt.Errorf("%w: %v", ErrCrashed, err)
	}
	// A broken answer from a live process: this call failed; the process is replaced only if it no
	// longer answers.
	m.checkAlive(e, pr)
	return nil, fmt.Errorf("%w: %v", ErrCrashed, err)
}

// deathReason tells why a process died. Its last words (the Go runtime's "out of memory") are read
// from its stderr, which can end after its connection broke, its call failed and it was reaped:
// wait for both, briefly, rather than count a death from the memory limit as a crash.
func deathReason(p *sdk.Plugin) string {
	for deadline := time.Now().Add(2 * time.Second); (!p.Exited() || !p.LastWordsRead()) && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if p.OutOfMemory() {
		return ReasonMemory
	}
	return ReasonCrash
}

// proc returns the tool's live process with one more call counted on it, launching a new one when
// there is none or it has exited.
func (m *Manager) proc(ctx context.Context, e *entry) (*proc, error) {
	if pr := m.take(e); pr != nil {
		return pr, nil
	}
	e.launchMu.Lock()
	defer e.launchMu.Unlock()
	if pr := m.take(e); pr != nil {
		return pr, nil
	}
	type res struct {
		p   *sdk.Plugin
		err error
	}
	ch := make(chan res, 1)
	go func() {
		p, err := m.launch(ctx, e.path, e.checksum)
		ch <- res{p, err}
	}()
	var r res
	select {
	case r = <-ch:
	case <-ctx.Done():
		// Keep the process if it comes up after all; the next call finds it (adopt kills it if the
		// host closed meanwhile). A closed host does not wait for it, but it is still killed.
		wait := func() {
			if r := <-ch; r.err == nil {
				m.adopt(e, r.p)
			}
		}
		if !m.background(wait) {
			go wait()
		}
		return nil, ctx.Err()
	}
	if r.err != nil {
		m.cfg.Log.Error("tool plugin relaunch refused", "tool", e.tool.Desc.Name, "file", e.tool.File, "error", r.err)
		return nil, r.err
	}
	if d := r.p.Description(); d.Name != e.tool.Desc.Name {
		r.p.Kill()
		return nil, fmt.Errorf("binary %s now serves %q instead of %q", e.tool.File, d.Name, e.tool.Desc.Name)
	}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		r.p.Kill()
		return nil, ErrClosed
	}
	if cur := e.cur; cur != nil && !cur.p.Exited() {
		// A launch abandoned by an earlier caller came up meanwhile (adopt): use it, drop ours.
		cur.inflight++
		e.mu.Unlock()
		r.p.Kill()
		return cur, nil
	}
	old := e.cur
	pr := &proc{p: r.p, inflight: 1}
	e.cur = pr
	e.mu.Unlock()
	if old != nil {
		m.retire(e, old, deathReason(old.p))
	}
	m.cfg.Log.Warn("tool plugin relaunched", "tool", e.tool.Desc.Name, "pid", r.p.PID())
	return pr, nil
}

// take counts a call on the tool's current process if it is alive; a dead one is retired.
func (m *Manager) take(e *entry) *proc {
	e.mu.Lock()
	pr := e.cur
	if pr != nil && !pr.p.Exited() {
		pr.inflight++
		e.mu.Unlock()
		return pr
	}
	e.mu.Unlock()
	if pr != nil {
		m.retire(e, pr, deathReason(pr.p))
	}
	return nil
}

func (m *Manager) adopt(e *entry, p *sdk.Plugin) {
	e.mu.Lock()
	if e.closed || (e.cur != nil && !e.cur.p.Exited()) {
		e.mu.Unlock()
		p.Kill()
		return
	}
	old := e.cur
	e.cur = &proc{p: p}
	e.mu.Unlock()
	if old != nil {
		m.retire(e, old, deathReason(old.p))
	}
}

// done ends a call on pr; the last call of a replaced process kills it.
func (m *Manager) done(e *entry, pr *proc) {
	e.mu.Lock()
	pr.inflight--
	kill := pr.retired != "" && pr.inflight == 0 && !pr.killed
	if kill {
		pr.killed = true
		delete(e.draining, pr)
	}
	e.mu.Unlock()
	if kill {
		m.cfg.Log.Info("tool plugin drained and stopped", "tool", e.tool.Desc.Name, "pid", pr.p.PID(), "reason", pr.retired)
		pr.p.Kill()
	}
}

// retire replaces pr: new calls go to a new process, and pr is killed once its calls have finished
// (at once if it has none, or is dead).
func (m *Manager) retire(e *entry, pr *proc, reason string) {
	e.mu.Lock()
	closed := e.closed
	if pr.retired != "" || pr.killed {
		e.mu.Unlock()
		return
	}
	pr.retired = reason
	if e.cur == pr {
		e.cur = nil
	}
	dead := pr.p.Exited()
	kill := pr.inflight == 0 || dead
	if kill {
		pr.killed = true
	} else {
		e.draining[pr] = true
	}
	n := pr.inflight
	e.mu.Unlock()
	if closed {
		pr.p.Kill()
		return
	}
	m.cfg.Log.Warn("tool plugin replaced", "tool", e.tool.Desc.Name, "pid", pr.p.PID(), "reason", reason,
		"draining", n, "exited", dead)
	if m.cfg.OnRestart != nil {
		m.cfg.OnRestart(e.tool.Desc.Name, reason)
	}
	if kill {
		pr.p.Kill()
	}
}

// checkCancelled watches, in the background, whether the cancelled call id stops within CancelGrace;
// if the plugin keeps running it (or stops answering), the process is replaced.
func (m *Manager) checkCancelled(e *entry, pr *proc, id string) {
	m.background(func() {
		deadline := time.Now().Add(m.cfg.CancelGrace)
		poll := max(m.cfg.CancelGrace/20, 10*time.Millisecond)
		for {
			still, err := m.stillRunning(e, pr, id)
			switch {
			case err != nil:
				m.unresponsive(e, pr, err)
				return
			case !still:
				return
			case time.Now().After(deadline):
				m.cfg.Log.Warn("tool plugin ignores cancellation", "tool", e.tool.Desc.Name, "pid", pr.p.PID(), "grace", m.cfg.CancelGrace)
				m.retire(e, pr, ReasonTimeout)
				return
			}
			select {
			case <-m.ctx.Done():
				return
			case <-time.After(poll):
			}
		}
	})
}

// stillRunning asks the plugin whether it still runs call id.
func (m *Manager) stillRunning(e *entry, pr *proc, id string) (bool, error) {
	ctx, cancel := context.WithTimeout(m.ctx, m.cfg.CancelGrace)
	defer cancel()
	ids, n, err := pr.p.Running(ctx)
	if err != nil {
		return false, err
	}
	if len(ids) > 0 || n == 0 {
		return slices.Contains(ids, id), nil
	}
	// A plugin that names no calls: it runs more than the host gave it, so a cancelled one still runs.
	e.mu.Lock()
	defer e.mu.Unlock()
	return n > pr.inflight, nil
}

// checkAlive replaces pr if it no longer answers.
func (m *Manager) checkAlive(e *entry, pr *proc) {
	m.background(func() {
		ctx, cancel := context.WithTimeout(m.ctx, m.cfg.CancelGrace)
		defer cancel()
		if _, _, err := pr.p.Running(ctx); err != nil {
			m.unresponsive(e, pr, err)
		}
	})
}

func (m *Manager) unresponsive(e *entry, pr *proc, err error) {
	if m.ctx.Err() != nil {
		return
	}
	reason := ReasonWedged
	if errors.Is(err, sdk.ErrPluginExited) || pr.p.Exited() {
		// Dying, perhaps of its memory limit: deathReason waits for its last words.
		reason = deathReason(pr.p)
	}
	m.cfg.Log.Warn("tool plugin does not answer", "tool", e.tool.Desc.Name, "pid", pr.p.PID(), "error", err)
	m.retire(e, pr, reason)
}

// background runs f unless the Manager is closed (then it reports false); Close waits for it.
func (m *Manager) background(f func()) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false
	}
	m.bg.Add(1)
	go func() {
		defer m.bg.Done()
		f()
	}()
	return true
}

// watch compares every live process's resident memory with its ceiling, and notices processes that
// died between calls, until Close.
func (m *Manager) watch() {
	defer m.bg.Done()
	t := time.NewTicker(m.cfg.MemoryPoll)
	defer t.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
		}
		m.mu.Lock()
		entries := make([]*entry, 0, len(m.tools))
		for _, e := range m.tools {
			entries = append(entries, e)
		}
		m.mu.Unlock()
		for _, e := range entries {
			e.mu.Lock()
			pr := e.cur
			e.mu.Unlock()
			if pr == nil {
				continue
			}
			if pr.p.Exited() {
				m.retire(e, pr, deathReason(pr.p))
				continue
			}
			limit := pr.p.MemoryLimit()
			if limit <= 0 {
				continue
			}
			if rss, err := pr.p.ResidentMemory(); err == nil && rss > limit {
				m.cfg.Log.Warn("tool plugin above its memory ceiling", "tool", e.tool.Desc.Name, "pid", pr.p.PID(),
					"residentBytes", rss, "limitBytes", limit)
				m.retire(e, pr, ReasonMemory)
			}
		}
	}
}

// Close kills every plugin; later calls fail with ErrClosed.
func (m *Manager) Close() {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	m.closed = true
	entries := make([]*entry, 0, len(m.tools))
	for _, e := range m.tools {
		entries = append(entries, e)
	}
	starter := m.starter
	m.mu.Unlock()
	m.stop()
	var procs []*proc
	for _, e := range entries {
		e.mu.Lock()
		e.closed = true
		mine := make([]*proc, 0, 1+len(e.draining))
		if e.cur != nil {
			mine = append(mine, e.cur)
			e.cur = nil
		}
		for pr := range e.draining {
			mine = append(mine, pr)
		}
		clear(e.draining)
		for _, pr := range mine {
			pr.killed = true
		}
		e.mu.Unlock()
		procs = append(procs, mine...)
	}
	var wg sync.WaitGroup
	for _, pr := range procs {
		wg.Add(1)
		go func() { defer wg.Done(); pr.p.Kill() }()
	}
	wg.Wait()
	m.bg.Wait()
	if starter != nil {
		starter.Close()
	}
}
