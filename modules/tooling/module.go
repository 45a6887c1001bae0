// Package tooling runs tools as out-of-process plugin binaries (plugins/sdk, go-plugin over gRPC): the
// tool registry, the plugin host, tenant permissions, schema validation, execution and its audit.
//
// Permissions: a tenant runs a tool when TenantConfig.ToolAllowed(name) (tools.enabled/allow/deny,
// deny wins) and grants every permission the tool declares. Permissions (model:complete, model:embed,
// index:write) are granted by default; a tenant revokes one with the feature flag
// "tool.<permission with ':' as '.'>" set to false (e.g. features: {tool.index.write: false}). A call
// of a tool that needs a revoked permission is 403 PERMISSION_DENIED; the host also refuses any callback
// the tool did not declare.
package tooling

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/danielgtaylor/huma/v2"
	"github.com/hashicorp/go-hclog"
	"go.opentelemetry.io/otel/trace"

	"github.com/crispy-enigma/crispy/modules/tooling/events"
	"github.com/crispy-enigma/crispy/modules/tooling/internal/adapters"
	"github.com/crispy-enigma/crispy/modules/tooling/internal/app"
	"github.com/crispy-enigma/crispy/modules/tooling/internal/host"
	toolhttp "github.com/crispy-enigma/crispy/modules/tooling/internal/httpapi"
	"github.com/crispy-enigma/crispy/platform/bus"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/keystore"
	"github.com/crispy-enigma/crispy/platform/readmodel"
	"github.com/crispy-enigma/crispy/platform/tenant"
	"github.com/crispy-enigma/crispy/plugins/sdk"
)

// Config configures the module.
type Config struct {
	// PluginsDir holds the plugin binaries (default bin/plugins, what `task build` produces). An
	// optional plugins.lock in it pins their checksums.
	PluginsDir string
	// MaxConcurrentPerTool bounds the calls in flight per tool; more wait in per-tenant queues served
	// round-robin, so one tenant's flood cannot starve another tenant (default 32).
	MaxConcurrentPerTool int
	// StartTimeout bounds a plugin's handshake (default 10 s).
	StartTimeout time.Duration
	// MaxTimeout caps the timeout a tool declares (default 5 min).
	MaxTimeout time.Duration
	// CancelGrace is how long a timed-out or cancelled call may keep running in its plugin before the
	// process is replaced (default 2 s). The calls still healthy on it finish first.
	CancelGrace time.Duration
	// PluginMemoryLimit is the memory ceiling of a plugin whose tool declares none, in bytes (default
	// 512 MiB; negative: no ceiling). A plugin whose resident memory is above its ceiling is replaced
	// after its calls finish; the kernel refuses it memory far beyond (sdk.HardMemoryLimit).
	PluginMemoryLimit int64
	// MaxPluginMemoryLimit caps the ceiling a tool declares for itself (default 2 GiB).
	MaxPluginMemoryLimit int64
}

func (c *Config) defaults() {
	if c.PluginsDir == "" {
		c.PluginsDir = "bin/plugins"
	}
	if c.MaxConcurrentPerTool == 0 {
		c.MaxConcurrentPerTool = 32
	}
	if c.StartTimeout == 0 {
		c.StartTimeout = 10 * time.Second
	}
	if c.MaxTimeout == 0 {
		c.MaxTimeout = 5 * time.Minute
	}
	if c.CancelGrace == 0 {
		c.CancelGrace = 2 * time.Second
	}
	if c.PluginMemoryLimit == 0 {
		c.PluginMemoryLimit = sdk.DefaultMemoryLimit
	}
	if c.MaxPluginMemoryLimit == 0 {
		c.MaxPluginMemoryLimit = sdk.DefaultMaxMemoryLimit
	}
}

// Validate checks the configuration.
func (c Config) Validate() error {
	if c.MaxConcurrentPerTool < 0 || c.StartTimeout < 0 || c.MaxTimeout < 0 || c.CancelGrace < 0 || c.MaxPluginMemoryLimit < 0 {
		return fmt.Errorf("tooling: negative limits in %+v", c)
	}
	if c.PluginMemoryLimit > c.MaxPluginMemoryLimit {
		return fmt.Errorf("tooling: the plugin memory limit (%d MiB) is above the maximum (%d MiB); raise the maximum or lower the limit",
			c.PluginMemoryLimit>>20, c.MaxPluginMemoryLimit>>20)
	}
	return nil
}

// Deps are the module's collaborators.
type Deps struct {
	Config    Config
	Store     eventstore.Store
	Keys      keystore.Store // each tenant's secret for the audit's params HMAC ("tenant/hmac"); required
	Policy    TenantPolicy   // nil: every tool allowed (tests)
	Completer Completer      // nil: tools use their offline methods
	Embedder  Embedder       // nil: Host.Embed is unavailable
	Ingester  Ingester       // nil: Host.Ingest is unavailable
	Log       *slog.Logger
	Metrics   *metrics.Set
	Tracer    trace.Tracer // nil: no spans
	Now       func() time.Time
}

// Module is the tooling module.
type Module struct {
	svc  *app.Service
	host *host.Manager
}

// statsProjection is the durable name of the execution statistics read model (its file is
// <data>/readmodels/tooling.execution-stats.db): never rename it.
const statsProjection = "tooling.execution-stats"

// New builds the module. Plugins are launched on first use, not here.
func New(d Deps) (*Module, error) {
	d.Config.defaults()
	if err := d.Config.Validate(); err != nil {
		return nil, err
	}
	if d.Store == nil {
		return nil, fmt.Errorf("tooling: a Store is required")
	}
	if d.Keys == nil {
		return nil, fmt.Errorf("tooling: a key store is required (the tool audit fingerprints params with each tenant's secret)")
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	cb := adapters.Callbacks{}
	if d.Completer != nil {
		cb.Completer = d.Completer
	}
	if d.Embedder != nil {
		cb.Embedder = d.Embedder
	}
	if d.Ingester != nil {
		cb.Ingester = d.Ingester
	}
	log := d.Log.With("module", "tooling")
	hc := hclog.New(&hclog.LoggerOptions{Name: "plugin", Level: hclog.Warn, Output: slogWriter{log}, DisableTime: true})
	restarts := func(tool, reason string) {
		// No request context reaches here (the host replaces a plugin between calls), so the line
		// names the tool and reason but no request id.
		log.Warn("tool plugin restarted", "tool", tool, "reason", reason)
		if d.Metrics != nil {
			d.Metrics.GetOrCreateCounter(fmt.Sprintf(`crispy_tool_plugin_restarts_total{tool=%q,reason=%q}`, tool, reason)).Inc()
		}
	}
	mgr := host.New(host.Config{Dir: d.Config.PluginsDir, MaxConcurrent: d.Config.MaxConcurrentPerTool, StartTimeout: d.Config.StartTimeout,
		MaxTimeout: d.Config.MaxTimeout, CancelGrace: d.Config.CancelGrace, MemoryLimit: d.Config.PluginMemoryLimit,
		MaxMemoryLimit: d.Config.MaxPluginMemoryLimit, Callbacks: cb, Log: log, HCLog: hc, OnRestart: restarts})
	svc := &app.Service{Host: mgr, Store: d.Store, Keys: d.Keys, Capabilities: cb.Capabilities(), Metrics: d.Metrics, Tracer: d.Tracer, Log: log, Now: d.Now}
	if d.Policy != nil {
		svc.Policy = d.Policy
	}
	return &Module{svc: svc, host: mgr}, nil
}

// Register mounts GET /schema/tools, POST /tools/execute and GET /metrics/tools/execution, and the
// execution statistics projection (checkpointed: a start resumes where the last one stopped).
func (m *Module) Register(api huma.API, b bus.Consumers) {
	events.Register(b.Codec().Add)
	// Version 2: a call refused for the caller's fault is no longer an error of the tool.
	p := b.Projection(statsProjection, bus.ProjectionOptions{What: "tool execution statistics", Version: 2})
	bus.Apply(p, func(_ context.Context, tx *readmodel.Tx, env bus.Envelope, ev events.ToolSucceeded) error {
		return adapters.RecordExecution(tx.Bucket(), env.Tenant, ev.Tool, env.Time, adapters.Succeeded, ev.DurationMs)
	})
	bus.Apply(p, func(_ context.Context, tx *readmodel.Tx, env bus.Envelope, ev events.ToolFailed) error {
		outcome := adapters.Failed
		if ev.CallersFault() {
			outcome = adapters.Refused
		}
		return adapters.RecordExecution(tx.Bucket(), env.Tenant, ev.Tool, env.Time, outcome, ev.DurationMs)
	})
	m.svc.Stats = adapters.ExecutionStats{Projection: p}
	toolhttp.Register(api, m.svc)
}

// Run blocks until ctx ends, then shuts every plugin down.
func (m *Module) Run(ctx context.Context) error {
	<-ctx.Done()
	m.host.Close()
	return nil
}

// Close shuts every plugin down (for callers that do not use Run).
func (m *Module) Close() { m.host.Close() }

// Execute runs a tool for the chat integration: same permissions, schemas and audit as POST
// /tools/execute. Errors are *apperr.Error with the SPEC's codes.
func (m *Module) Execute(ctx context.Context, t tenant.ID, name string, params json.RawMessage, userID string) (json.RawMessage, error) {
	res, err := m.svc.Execute(ctx, app.Execute{Tenant: t, Tool: name, Params: params, UserID: userID})
	if err != nil {
		return nil, err
	}
	return res.Result, nil
}

// slogWriter carries go-plugin's log lines (and the plugins' stderr) into the module's logger.
type slogWriter struct{ log *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		if line != "" {
			w.log.Warn("plugin log", "line", line)
		}
	}
	return len(p), nil
}

var _ io.Writer = slogWriter{}
