// Package sdk is what a tool vendor imports to build a Crispy Enigma tool plugin: the Tool interface,
// Serve (which runs the binary as a go-plugin gRPC plugin with our handshake), and the Host a tool calls
// back into for model completions, embeddings and ingestion into the calling tenant's index.
//
// A tool is a separate process. The host launches it, asks it to Describe itself, validates every call's
// input and output against the declared JSON Schemas, and scopes every callback to the call it belongs to
// with a capability token it issues per call: a tool never names a tenant, and a token from another call,
// or from a call that has ended, is refused.
//
// The host side of the protocol (Launch, Plugin, Callbacks) lives here too, so both ends of the wire are
// versioned together; modules/tooling and the conformance kit (sdk/sdktest) use it.
package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/hashicorp/go-plugin"
)

// ProtocolVersion is the plugin protocol version. The host refuses a plugin built for another one.
const ProtocolVersion = 1

// PluginName is the name under which a binary serves its tool in go-plugin's plugin set.
const PluginName = "tool"

// Handshake is the go-plugin handshake every Crispy tool plugin and host share. The magic cookie is not
// a secret: it only stops a plugin binary from running as a normal program by accident.
func Handshake() plugin.HandshakeConfig {
	return plugin.HandshakeConfig{
		ProtocolVersion:  ProtocolVersion,
		MagicCookieKey:   "CRISPY_TOOL_PLUGIN",
		MagicCookieValue: "5b1d8e0c6f4a4f7e9f7c2d0a1e3b6c94",
	}
}

// Permissions a tool may declare. A tool's Host callbacks are refused unless the tool declared the
// matching permission and the calling tenant grants it (see modules/tooling for how tenants grant).
const (
	PermModelComplete = "model:complete" // Host.Complete
	PermModelEmbed    = "model:embed"    // Host.Embed
	PermIndexWrite    = "index:write"    // Host.Ingest
)

// KnownPermissions lists every permission the host understands.
func KnownPermissions() []string {
	return []string{PermModelComplete, PermModelEmbed, PermIndexWrite}
}

// DefaultTimeout is used when a tool declares none.
const DefaultTimeout = 30 * time.Second

// DefaultMemoryLimit is a tool's memory ceiling when it declares none (a host may set another default).
const DefaultMemoryLimit int64 = 512 << 20

// DefaultMaxMemoryLimit caps the memory ceiling a tool may declare (a host may set another cap).
const DefaultMaxMemoryLimit int64 = 2 << 30

// Description is what a tool says about itself.
type Description struct {
	Name         string          // ^[a-z][a-z0-9_]{0,63}$, unique in a plugins folder
	Version      string          // semantic version, e.g. 1.2.0
	Description  string          // one or two sentences for people and models
	InputSchema  json.RawMessage // JSON Schema of the params
	OutputSchema json.RawMessage // JSON Schema of the result
	Permissions  []string        // from KnownPermissions
	Timeout      time.Duration   // 0: DefaultTimeout
	// MemoryLimit is the most resident memory the tool needs, in bytes (0: the host's default,
	// DefaultMemoryLimit unless configured otherwise). The
	// host caps it with its own maximum, replaces a process that stays above it, and has the kernel
	// refuse memory well beyond it.
	MemoryLimit int64
}

var (
	namePattern   = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)
	semverPattern = regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$`)
)

// Validate checks names, version and permissions. Schemas are compiled by the host (and the kit).
func (d Description) Validate() error {
	var errs []error
	if !namePattern.MatchString(d.Name) {
		errs = append(errs, fmt.Errorf("name %q must match %s", d.Name, namePattern))
	}
	if !semverPattern.MatchString(d.Version) {
		errs = append(errs, fmt.Errorf("version %q is not a semantic version (MAJOR.MINOR.PATCH)", d.Version))
	}
	if d.Description == "" {
		errs = append(errs, errors.New("description is empty"))
	}
	if len(d.InputSchema) == 0 || !json.Valid(d.InputSchema) {
		errs = append(errs, errors.New("input schema is missing or not JSON"))
	}
	if len(d.OutputSchema) == 0 || !json.Valid(d.OutputSchema) {
		errs = append(errs, errors.New("output schema is missing or not JSON"))
	}
	known := map[string]bool{}
	for _, p := range KnownPermissions() {
		known[p] = true
	}
	for _, p := range d.Permissions {
		if !known[p] {
			errs = append(errs, fmt.Errorf("unknown permission %q (known: %v)", p, KnownPermissions()))
		}
	}
	if d.Timeout < 0 {
		errs = append(errs, fmt.Errorf("timeout %s is negative", d.Timeout))
	}
	if d.MemoryLimit < 0 {
		errs = append(errs, fmt.Errorf("memory limit %d is negative", d.MemoryLimit))
	}
	return errors.Join(errs...)
}

// EffectiveTimeout is Timeout with its default.
func (d Description) EffectiveTimeout() time.Duration {
	if d.Timeout <= 0 {
		return DefaultTimeout
	}
	return d.Timeout
}

// HasPermission reports whether the tool declared p.
func (d Description) HasPermission(p string) bool {
	for _, q := range d.Permissions {
		if q == p {
			return true
		}
	}
	return false
}

// Request is one call of a tool.
type Request struct {
	Params    json.RawMessage // valid against the input schema (the host checked)
	TenantID  string          // the calling tenant, for the tool's logs only
	RequestID string
	UserID    string
}

// Tool is what a vendor implements.
type Tool interface {
	Describe() Description
	// Execute runs the tool. It must honour ctx: the host cancels it on timeout and when the caller goes
	// away, and replaces a process whose cancelled calls keep running past a grace period (the other
	// calls on it finish first). Return an *Error for a refusal the caller should see (its code and
	// message are passed on).
	Execute(ctx context.Context, req Request, host Host) (json.RawMessage, error)
}

// Capabilities says which Host callbacks have a backend behind them for this call.
type Capabilities struct {
	Complete bool // a real model answers Complete (false: offline; use a deterministic method)
	Embed    bool
	Ingest   bool
}

// CompleteRequest asks the tenant's chat model for a completion.
type CompleteRequest struct {
	System    string
	Prompt    string
	MaxTokens int
}

// Completion is a model's answer.
type Completion struct {
	Text  string
	Model string
}

// Embeddings are one vector per input text.
type Embeddings struct {
	Vectors [][]float32
	Model   string
}

// Document is ingested into the calling tenant's index.
type Document struct {
	DocID     string
	Text      string
	Title     string
	Source    string
	URL       string
	Metadata  map[string]any
	ChunkSize int // 0: the index's default
}

// IngestResult reports an ingestion.
type IngestResult struct {
	DocID          string
	Chunks         int
	EmbeddingModel string
}

// Host is the tool's way back into the platform. Every call is scoped by the host to the tenant and
// request of the Execute it was handed to; it stops working when that Execute returns.
type Host interface {
	Capabilities() Capabilities
	Complete(ctx context.Context, req CompleteRequest) (Completion, error)
	Embed(ctx context.Context, texts []string) (Embeddings, error)
	Ingest(ctx context.Context, doc Document) (IngestResult, error)
}

// Errors a Host callback can return; test with errors.Is.
var (
	// ErrUnavailable: no backend for this callback (for Complete: only the offline model). Fall back to
	// a deterministic method.
	ErrUnavailable = errors.New("host capability not available")
	// ErrPermissionDenied: the tool did not declare the permission, or the tenant does not grant it.
	ErrPermissionDenied = errors.New("host capability not permitted")
	// ErrTokenRefused: the capability token is unknown or its call has ended.
	ErrTokenRefused = errors.New("host refused the call's capability token")
)

// Error is a refusal a tool reports; the host passes code and message to the caller.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf builds an *Error.
func Errorf(code, format string, args ...any) error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}
