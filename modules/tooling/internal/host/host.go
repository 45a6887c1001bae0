// Package host runs the tool plugins: it discovers the executables of the plugins folder, launches each
// (through the SDK, with the lock's checksum when there is a lock), keeps it warm, relaunches it after a
// crash, kills it on timeout, and bounds the calls in flight per tool.
package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/crispy-enigma/crispy/plugins/sdk"
	"github.com/crispy-enigma/crispy/plugins/sdk/schema"
)

// Config configures the Manager.
type Config struct {
	Dir           string
	MaxConcurrent int           // calls in flight per tool
	StartTimeout  time.Duration // handshake bound
	MaxTimeout    time.Duration // caps a tool's declared timeout
	Callbacks     sdk.Callbacks
	Log           *slog.Logger
	HCLog         hclog.Logger
	// OnRestart is called when a tool's process is relaunched after a crash or a timeout kill.
	OnRestart func(tool string)
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
	sem      chan struct{}

	mu   sync.Mutex
	proc *sdk.Plugin
}

// Manager owns the plugin processes.
type Manager struct {
	cfg Config

	mu       sync.Mutex
	loaded   bool
	closed   bool
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
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.HCLog == nil {
		cfg.HCLog = hclog.NewNullLogger()
	}
	return &Manager{cfg: cfg, tools: map[string]*entry{}}
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
			sem: make(chan struct{}, m.cfg.MaxConcurrent), proc: r.p}
		m.cfg.Log.InfoContext(ctx, "tool plugin loaded", "tool", t.Desc.Name, "version", t.Desc.Version, "file", r.file, "locked", r.sum != nil)
	}
	m.loaded = true
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
	return sdk.Launch(lctx, sdk.LaunchConfig{Path: path, Checksum: sum, Callbacks: m.cfg.Callbacks,
		Logger: m.cfg.HCLog.Named(filepath.Base(path)), StartTimeout: m.cfg.StartTimeout})
}

// Timeout is the effective timeout of a tool.
func (m *Manager) Timeout(t Tool) time.Duration {
	d := t.Desc.EffectiveTimeout()
	if d > m.cfg.MaxTimeout {
		d = m.cfg.MaxTimeout
	}
	return d
}

// Call runs one call of the tool called name: it waits for a slot, (re)launches the plugin if needed,
// and applies the tool's timeout. A timed-out plugin is killed; a crashed one is relaunched by the next
// call. Errors: ErrNotFound, ErrTimeout, ErrCrashed, *sdk.Error (the tool's refusal), ctx's error.
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
	select {
	case e.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-e.sem }()

	// A (re)launch is bounded by StartTimeout, not by the tool's timeout: the tool's timeout is for its
	// work, and a host under load must not turn a slow process start into a tool timeout.
	p, err := m.proc(ctx, e)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w: relaunch: %v", ErrCrashed, err)
	}
	tctx, cancel := context.WithTimeout(ctx, m.Timeout(e.tool))
	defer cancel()
	out, err := p.Execute(tctx, call)
	switch {
	case err == nil:
		return out, nil
	case ctx.Err() != nil:
		// The caller went away; the plugin was asked to stop through cancellation.
		return nil, ctx.Err()
	case tctx.Err() != nil:
		m.discard(e, p, "timeout")
		return nil, fmt.Errorf("%w after %s", ErrTimeout, m.Timeout(e.tool))
	}
	var te *sdk.Error
	if errors.As(err, &te) {
		return nil, err
	}
	m.discard(e, p, "crash")
	return nil, fmt.Errorf("%w: %v", ErrCrashed, err)
}

// proc returns the tool's live process, launching a new one when there is none or it has exited.
func (m *Manager) proc(ctx context.Context, e *entry) (*sdk.Plugin, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.proc != nil && !e.proc.Exited() {
		return e.proc, nil
	}
	if e.proc != nil {
		e.proc.Kill()
		e.proc = nil
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
		// Keep the process if it comes up after all; the next call finds it.
		go func() {
			if r := <-ch; r.err == nil {
				m.adopt(e, r.p)
			}
		}()
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
	e.proc = r.p
	m.cfg.Log.Warn("tool plugin relaunched", "tool", e.tool.Desc.Name)
	if m.cfg.OnRestart != nil {
		m.cfg.OnRestart(e.tool.Desc.Name)
	}
	return r.p, nil
}

func (m *Manager) adopt(e *entry, p *sdk.Plugin) {
	m.mu.Lock()
	closed := m.closed
	m.mu.Unlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	if closed || (e.proc != nil && !e.proc.Exited()) {
		p.Kill()
		return
	}
	e.proc = p
}

// discard kills p (if it is still the tool's process) so the next call launches a fresh one.
func (m *Manager) discard(e *entry, p *sdk.Plugin, why string) {
	e.mu.Lock()
	if e.proc == p {
		e.proc = nil
	}
	e.mu.Unlock()
	m.cfg.Log.Warn("tool plugin killed", "tool", e.tool.Desc.Name, "reason", why, "pid", p.PID())
	p.Kill()
}

// Close kills every plugin; later calls fail with ErrClosed.
func (m *Manager) Close() {
	m.mu.Lock()
	m.closed = true
	entries := make([]*entry, 0, len(m.tools))
	for _, e := range m.tools {
		entries = append(entries, e)
	}
	m.mu.Unlock()
	var wg sync.WaitGroup
	for _, e := range entries {
		e.mu.Lock()
		p := e.proc
		e.proc = nil
		e.mu.Unlock()
		if p != nil {
			wg.Add(1)
			go func() { defer wg.Done(); p.Kill() }()
		}
	}
	wg.Wait()
}
