package sdk

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/hashicorp/go-plugin/runner"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	toolpb "github.com/crispy-enigma/crispy/plugins/sdk/proto"
)

// This file is the host side of the protocol: launching a plugin binary, calling it, and answering its
// callbacks under per-call capability tokens.

// Errors from Launch and Plugin.Execute; test with errors.Is.
var (
	// ErrNotAPlugin: the binary did not complete the Crispy tool handshake.
	ErrNotAPlugin = errors.New("not a Crispy tool plugin")
	// ErrChecksumMismatch: the binary's SHA-256 differs from the pinned one.
	ErrChecksumMismatch = errors.New("plugin checksum does not match the lock")
	// ErrPluginExited: the plugin process died or its connection broke during the call.
	ErrPluginExited = errors.New("plugin process exited")
	// ErrBadDescription: the plugin's description is invalid.
	ErrBadDescription = errors.New("invalid tool description")
)

// Scope is the call a callback belongs to, resolved by the host from the capability token.
type Scope struct {
	TenantID  string
	RequestID string
	UserID    string
	Tool      string
	Granted   []string // permissions granted to this call: declared by the tool and granted by the tenant
}

// Allows reports whether permission p was granted to the call.
func (s Scope) Allows(p string) bool {
	for _, g := range s.Granted {
		if g == p {
			return true
		}
	}
	return false
}

// Callbacks answer a tool's Host calls on the host side. Return ErrUnavailable when there is no backend
// (for Complete: only the offline model), an *Error for a refusal of the tool's request.
type Callbacks interface {
	Complete(ctx context.Context, scope Scope, req CompleteRequest) (Completion, error)
	Embed(ctx context.Context, scope Scope, texts []string) (Embeddings, error)
	Ingest(ctx context.Context, scope Scope, doc Document) (IngestResult, error)
}

// Call is one invocation, as the host issues it.
type Call struct {
	// ID names the call in Plugin.Running; unique per process (empty: the plugin names it).
	ID           string
	Params       json.RawMessage
	TenantID     string
	RequestID    string
	UserID       string
	Granted      []string
	Capabilities Capabilities
}

// LaunchConfig configures Launch.
type LaunchConfig struct {
	Path string
	// Checksum pins the binary's SHA-256 (go-plugin SecureConfig); nil launches without a pin.
	Checksum []byte
	// Callbacks answer the tool's Host calls; nil answers every callback with ErrUnavailable.
	Callbacks Callbacks
	// Logger receives go-plugin's log and the plugin's stderr; nil discards them.
	Logger hclog.Logger
	// StartTimeout bounds the handshake (default 10 s).
	StartTimeout time.Duration
	// Starter starts the process from a long-lived thread with a parent-death signal, so the kernel
	// kills the plugin when this process dies, even of SIGKILL (see Starter). Nil starts it from the
	// calling goroutine without one; the plugin's own parent watch (Serve) still ends it then.
	Starter *Starter
	// MaxMemory is the most memory any tool may have, in bytes (0: no memory limits at all). It bounds
	// the plugin from its start until it has described itself.
	MaxMemory int64
	// DefaultMemory is the memory ceiling of a tool that declares none (0: MaxMemory). Once the plugin
	// has described itself its ceiling is the one it declares or this, never above MaxMemory. The
	// plugin is told it (the SDK makes it the Go runtime's soft limit) and the kernel refuses the
	// process memory well beyond it (HardMemoryLimit); keeping the process under the ceiling itself
	// is the caller's job (ResidentMemory).
	DefaultMemory int64
}

// HardMemoryLimit is the private writable memory (RLIMIT_DATA) the kernel allows a plugin whose
// ceiling is ceiling: twice the ceiling and 128 MiB more, because a Go process maps memory ahead of
// use (128 MB at rest) and the host would rather replace a plugin gently, after its calls finish,
// than have it die mid-call. A sudden allocation far past the ceiling fails at once instead.
func HardMemoryLimit(ceiling int64) int64 {
	if ceiling <= 0 {
		return 0
	}
	return 2*ceiling + 128<<20
}

// Plugin is a launched tool plugin process.
type Plugin struct {
	client  *plugin.Client
	rpc     *rpcClient
	desc    Description
	hostSrv *grpc.Server
	tokens  *tokenTable
	proc    *procRunner
	memory  int64 // the ceiling, bytes; 0: none
}

// rpcClient is what the host-side grpcPlugin dispenses.
type rpcClient struct {
	tool   toolpb.ToolClient
	broker *plugin.GRPCBroker
}

// Launch starts the binary at cfg.Path, performs the handshake, attaches the host's callback service
// and reads the tool's description. The caller must Kill the plugin.
func Launch(ctx context.Context, cfg LaunchConfig) (*Plugin, error) {
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 10 * time.Second
	}
	st, err := os.Stat(cfg.Path)
	if err != nil {
		return nil, fmt.Errorf("plugin %s: %w", cfg.Path, err)
	}
	if st.IsDir() || st.Mode().Perm()&0o111 == 0 {
		return nil, fmt.Errorf("plugin %s: %w: not an executable file", cfg.Path, ErrNotAPlugin)
	}
	p := &Plugin{tokens: &tokenTable{m: map[string]tokenEntry{}}}
	mkRunner := newRunner(cfg, HardMemoryLimit(cfg.MaxMemory))
	p.client = plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig: Handshake(),
		Plugins:         plugin.PluginSet{PluginName: &grpcPlugin{}},
		RunnerFunc: func(l hclog.Logger, tmpl *exec.Cmd, dir string) (runner.Runner, error) {
			r, err := mkRunner(l, tmpl, dir)
			if err == nil {
				p.proc = r.(*procRunner)
			}
			return r, err
		},
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Logger:           cfg.Logger,
		StartTimeout:     cfg.StartTimeout,
	})
	client := p.client
	fail := func(err error) (*Plugin, error) {
		p.Kill()
		return nil, err
	}
	proto, err := client.Client()
	if err != nil {
		msg := err.Error()
		if strings.Contains(msg, plugin.ErrChecksumsDoNotMatch.Error()) {
			return fail(fmt.Errorf("plugin %s: %w", cfg.Path, ErrChecksumMismatch))
		}
		return fail(fmt.Errorf("plugin %s: %w: %s", cfg.Path, ErrNotAPlugin, msg))
	}
	raw, err := proto.Dispense(PluginName)
	if err != nil {
		return fail(fmt.Errorf("plugin %s: %w: dispense: %v", cfg.Path, ErrNotAPlugin, err))
	}
	rc, ok := raw.(*rpcClient)
	if !ok {
		return fail(fmt.Errorf("plugin %s: %w: unexpected client %T", cfg.Path, ErrNotAPlugin, raw))
	}
	p.rpc = rc

	// One callback server per plugin process, attached once: go-plugin forgets a broker id that is
	// not dialled within 5 s, and a server per call would cost a socket per call.
	id := rc.broker.NextId()
	ln, err := rc.broker.Accept(id)
	if err != nil {
		return fail(fmt.Errorf("plugin %s: host callbacks: %w", cfg.Path, err))
	}
	p.hostSrv = grpc.NewServer()
	toolpb.RegisterHostServer(p.hostSrv, &hostServer{tokens: p.tokens, cb: cfg.Callbacks})
	go func() { _ = p.hostSrv.Serve(ln) }()

	actx, cancel := context.WithTimeout(ctx, cfg.StartTimeout)
	defer cancel()
	d, err := rc.tool.Describe(actx, &toolpb.DescribeRequest{})
	if err != nil {
		return fail(fmt.Errorf("plugin %s: describe: %w", cfg.Path, err))
	}
	p.desc = Description{
		Name: d.Name, Version: d.Version, Description: d.Description,
		InputSchema: d.InputSchema, OutputSchema: d.OutputSchema,
		Permissions: d.Permissions, Timeout: time.Duration(d.TimeoutMs) * time.Millisecond,
		MemoryLimit: d.MemoryLimitBytes,
	}
	if cfg.MaxMemory > 0 {
		p.memory = p.desc.MemoryLimit
		if p.memory <= 0 {
			p.memory = cfg.DefaultMemory
		}
		if p.memory <= 0 || p.memory > cfg.MaxMemory {
			p.memory = cfg.MaxMemory // the kernel would not let the limit rise above the one set at start
		}
	}
	if p.memory > 0 && p.memory != cfg.MaxMemory {
		if err := limitMemory(p.PID(), HardMemoryLimit(p.memory)); err != nil {
			return fail(fmt.Errorf("plugin %s: %w", cfg.Path, err))
		}
	}
	if _, err := rc.tool.Attach(actx, &toolpb.AttachRequest{HostBrokerId: id, MemoryLimitBytes: p.memory}); err != nil {
		return fail(fmt.Errorf("plugin %s: attach: %w", cfg.Path, err))
	}
	if d.SdkProtocol != ProtocolVersion {
		return fail(fmt.Errorf("plugin %s: %w: built for protocol %d, host speaks %d", cfg.Path, ErrBadDescription, d.SdkProtocol, ProtocolVersion))
	}
	if err := p.desc.Validate(); err != nil {
		return fail(fmt.Errorf("plugin %s: %w: %v", cfg.Path, ErrBadDescription, err))
	}
	return p, nil
}

// Description is what the plugin said about itself at launch.
func (p *Plugin) Description() Description { return p.desc }

// PID is the plugin's process id (0 when unknown).
func (p *Plugin) PID() int {
	if p.proc == nil {
		return 0
	}
	return int(p.proc.pid.Load())
}

// MemoryLimit is the plugin's memory ceiling in bytes (0: none).
func (p *Plugin) MemoryLimit() int64 { return p.memory }

// ResidentMemory is the process's resident set size in bytes (Linux; elsewhere an error).
func (p *Plugin) ResidentMemory() (int64, error) {
	pid := p.PID()
	if pid == 0 || p.client.Exited() {
		return 0, ErrPluginExited
	}
	return residentMemory(pid)
}

// OutOfMemory reports whether the plugin said it ran out of memory (on its stderr, as the Go runtime
// does before it dies): with a memory limit, the sign the limit killed it.
func (p *Plugin) OutOfMemory() bool { return p.proc != nil && p.proc.stderr.oom.Load() }

// Exited reports whether the plugin process has ended.
func (p *Plugin) Exited() bool { return p.client.Exited() }

// LastWordsRead reports whether everything the process wrote on its stderr has been read (and so
// OutOfMemory is final): true once the stream ended, or when the process was not started here.
func (p *Plugin) LastWordsRead() bool { return p.proc == nil || p.proc.stderr.drained() }

// Kill ends the plugin at once (SIGKILL) and releases its resources. It is safe to call more than once.
// A hung plugin would hold go-plugin's graceful shutdown for seconds, so the process is killed first.
func (p *Plugin) Kill() {
	if p.proc != nil {
		// Through os.Process (a pidfd on Linux), not by pid: a process reaped meanwhile is never
		// mistaken for another that got its pid.
		_ = p.proc.Kill(context.Background())
	}
	if p.hostSrv != nil {
		p.hostSrv.Stop()
	}
	p.client.Kill()
}

// InFlight asks the plugin how many calls it is still running.
func (p *Plugin) InFlight(ctx context.Context) (int, error) {
	r, err := p.rpc.tool.Status(ctx, &toolpb.StatusRequest{})
	if err != nil {
		return 0, err
	}
	return int(r.InFlight), nil
}

// Running asks the plugin which calls (by Call.ID) it is still running, cancelled ones included: a
// cancelled call still listed after a grace period is one the tool ignores cancellation for. A plugin
// built with an SDK that predates call ids lists none; then n, the number running, still tells.
// Errors: ErrPluginExited when the process is gone, else gRPC's (DeadlineExceeded: it did not answer).
func (p *Plugin) Running(ctx context.Context) (ids []string, n int, err error) {
	r, err := p.rpc.tool.Status(ctx, &toolpb.StatusRequest{})
	if err != nil {
		if status.Code(err) == codes.Unavailable || p.client.Exited() {
			return nil, 0, fmt.Errorf("%s: %w: %v", p.desc.Name, ErrPluginExited, err)
		}
		return nil, 0, err
	}
	return r.CallIds, int(r.InFlight), nil
}

// Execute calls the tool. The capability token it issues is valid only until Execute returns.
// Errors: *Error (the tool refused), ErrPluginExited (crash), ctx's error (timeout, cancellation).
func (p *Plugin) Execute(ctx context.Context, c Call) (json.RawMessage, error) {
	tok, err := p.tokens.issue(ctx, Scope{TenantID: c.TenantID, RequestID: c.RequestID, UserID: c.UserID, Tool: p.desc.Name, Granted: c.Granted})
	if err != nil {
		return nil, err
	}
	defer p.tokens.revoke(tok)
	resp, err := p.rpc.tool.Execute(withOutgoingTrace(ctx), &toolpb.ExecuteRequest{
		Params: c.Params, RequestId: c.RequestID, UserId: c.UserID, TenantId: c.TenantID, HostToken: tok, CallId: c.ID,
		Capabilities: &toolpb.Capabilities{Complete: c.Capabilities.Complete, Embed: c.Capabilities.Embed, Ingest: c.Capabilities.Ingest},
	})
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return nil, cerr
		}
		code := status.Code(err)
		if code == codes.Unavailable || p.client.Exited() {
			return nil, fmt.Errorf("%s: %w: %v", p.desc.Name, ErrPluginExited, err)
		}
		if code == codes.DeadlineExceeded {
			return nil, context.DeadlineExceeded
		}
		if code == codes.Canceled {
			return nil, context.Canceled
		}
		return nil, fmt.Errorf("%s: execute: %w", p.desc.Name, err)
	}
	if resp.Error != nil {
		return nil, &Error{Code: resp.Error.Code, Message: resp.Error.Message}
	}
	return resp.Result, nil
}

// tokenTable maps live capability tokens to their call.
type tokenTable struct {
	mu sync.RWMutex
	m  map[string]tokenEntry
}

type tokenEntry struct {
	scope Scope
	ctx   context.Context
}

func (t *tokenTable) issue(ctx context.Context, s Scope) (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("capability token: %w", err)
	}
	tok := hex.EncodeToString(b[:])
	t.mu.Lock()
	t.m[tok] = tokenEntry{scope: s, ctx: ctx}
	t.mu.Unlock()
	return tok, nil
}

func (t *tokenTable) revoke(tok string) {
	t.mu.Lock()
	delete(t.m, tok)
	t.mu.Unlock()
}

func (t *tokenTable) lookup(tok string) (tokenEntry, bool) {
	t.mu.RLock()
	e, ok := t.m[tok]
	t.mu.RUnlock()
	return e, ok
}

// hostServer answers the plugin's Host calls after resolving the token to its call.
type hostServer struct {
	toolpb.UnimplementedHostServer
	tokens *tokenTable
	cb     Callbacks
}

// scoped resolves the token, checks the permission, and returns a context that also ends when the
// call ends (a callback cannot outlive its call). It carries the values of the call's context (the
// host's trace span, request identity and whatever else the host put there), so the work a callback
// does is part of the call that made it, not an orphan of the plugin connection.
func (h *hostServer) scoped(ctx context.Context, tok, perm string) (context.Context, context.CancelFunc, Scope, error) {
	e, ok := h.tokens.lookup(tok)
	if !ok {
		return nil, nil, Scope{}, status.Error(codes.Unauthenticated, "capability token is unknown or its call has ended")
	}
	if !e.scope.Allows(perm) {
		return nil, nil, Scope{}, status.Errorf(codes.PermissionDenied, "permission %q was not declared by the tool or is not granted by the tenant", perm)
	}
	if h.cb == nil {
		return nil, nil, Scope{}, status.Error(codes.Unavailable, "the host has no backend for this callback")
	}
	cctx, cancel := context.WithCancel(context.WithoutCancel(e.ctx))
	stopRPC := context.AfterFunc(ctx, cancel)
	stop := context.AfterFunc(e.ctx, cancel)
	return cctx, func() { stop(); stopRPC(); cancel() }, e.scope, nil
}

func toStatus(err error) error {
	var te *Error
	switch {
	case errors.Is(err, ErrUnavailable):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, ErrPermissionDenied):
		return status.Error(codes.PermissionDenied, err.Error())
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	case errors.As(err, &te):
		return status.Error(codes.InvalidArgument, te.Message)
	default:
		return status.Error(codes.Internal, "host callback failed: "+err.Error())
	}
}

func (h *hostServer) Complete(ctx context.Context, r *toolpb.CompleteRequest) (*toolpb.CompleteResponse, error) {
	cctx, done, scope, err := h.scoped(ctx, r.Token, PermModelComplete)
	if err != nil {
		return nil, err
	}
	defer done()
	c, err := h.cb.Complete(cctx, scope, CompleteRequest{System: r.System, Prompt: r.Prompt, MaxTokens: int(r.MaxTokens)})
	if err != nil {
		return nil, toStatus(err)
	}
	return &toolpb.CompleteResponse{Text: c.Text, Model: c.Model}, nil
}

func (h *hostServer) Embed(ctx context.Context, r *toolpb.EmbedRequest) (*toolpb.EmbedResponse, error) {
	cctx, done, scope, err := h.scoped(ctx, r.Token, PermModelEmbed)
	if err != nil {
		return nil, err
	}
	defer done()
	e, err := h.cb.Embed(cctx, scope, r.Texts)
	if err != nil {
		return nil, toStatus(err)
	}
	out := &toolpb.EmbedResponse{Model: e.Model, Vectors: make([]*toolpb.Vector, len(e.Vectors))}
	for i, v := range e.Vectors {
		out.Vectors[i] = &toolpb.Vector{Values: v}
	}
	return out, nil
}

func (h *hostServer) Ingest(ctx context.Context, r *toolpb.IngestRequest) (*toolpb.IngestResponse, error) {
	cctx, done, scope, err := h.scoped(ctx, r.Token, PermIndexWrite)
	if err != nil {
		return nil, err
	}
	defer done()
	doc := Document{DocID: r.DocId, Text: r.Text, Title: r.Title, Source: r.Source, URL: r.Url, ChunkSize: int(r.ChunkSize)}
	if len(r.Metadata) > 0 {
		if err := json.Unmarshal(r.Metadata, &doc.Metadata); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "metadata is not a JSON object: %v", err)
		}
	}
	res, err := h.cb.Ingest(cctx, scope, doc)
	if err != nil {
		return nil, toStatus(err)
	}
	return &toolpb.IngestResponse{DocId: res.DocID, Chunks: int32(res.Chunks), EmbeddingModel: res.EmbeddingModel}, nil
}
