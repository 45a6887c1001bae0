// Package sdktest is the conformance kit for tool plugins, also run by `crispy plugin check BINARY`.
// It launches the binary the way the host does, performs the handshake, validates the description
// (name, semantic version, permissions, schemas that compile), calls the tool with inputs generated from
// its input schema (valid ones, offline and with a host that answers callbacks, and invalid ones),
// checks every output against the output schema, checks that a cancelled call stops, and checks the
// plugin is still healthy at the end.
package sdktest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/crispy-enigma/crispy/plugins/internal/textkit"
	"github.com/crispy-enigma/crispy/plugins/sdk"
	"github.com/crispy-enigma/crispy/plugins/sdk/schema"
)

// Options tune a run.
type Options struct {
	// CallTimeout bounds each call (default: the tool's timeout, at most 30 s).
	CallTimeout time.Duration
	// CancelGrace is how long a cancelled call may keep running (default 1 s).
	CancelGrace time.Duration
	// StartTimeout bounds the handshake (default 10 s).
	StartTimeout time.Duration
	// MemoryLimit is the memory ceiling the plugin runs under when it declares none (default
	// sdk.DefaultMemoryLimit, as the server); a declared one is capped at MaxMemoryLimit (default
	// 2 GiB). The kit runs the plugin under the same kernel limit the server sets.
	MemoryLimit, MaxMemoryLimit int64
}

// Check is one line of the report.
type Check struct {
	Name   string
	Passed bool
	Detail string
}

// Report is the outcome of a run.
type Report struct {
	Binary  string
	Tool    string
	Version string
	Checks  []Check
}

// OK reports whether every check passed.
func (r Report) OK() bool {
	if len(r.Checks) == 0 {
		return false
	}
	for _, c := range r.Checks {
		if !c.Passed {
			return false
		}
	}
	return true
}

// Write prints the report for people.
func (r Report) Write(w io.Writer) {
	fmt.Fprintf(w, "plugin check %s\n", r.Binary)
	if r.Tool != "" {
		fmt.Fprintf(w, "tool %s %s\n", r.Tool, r.Version)
	}
	failed := 0
	for _, c := range r.Checks {
		mark := "PASS"
		if !c.Passed {
			mark = "FAIL"
			failed++
		}
		line := fmt.Sprintf("  %s  %s", mark, c.Name)
		if c.Detail != "" {
			line += ": " + c.Detail
		}
		fmt.Fprintln(w, line)
	}
	if failed == 0 && len(r.Checks) > 0 {
		fmt.Fprintf(w, "ok: %d checks passed\n", len(r.Checks))
	} else {
		fmt.Fprintf(w, "FAILED: %d of %d checks failed\n", failed, len(r.Checks))
	}
}

func (r *Report) add(name string, err error, detail string) bool {
	c := Check{Name: name, Passed: err == nil, Detail: detail}
	if err != nil {
		c.Detail = err.Error()
	}
	r.Checks = append(r.Checks, c)
	return err == nil
}

// Run checks the plugin binary at path.
func Run(ctx context.Context, path string, o Options) Report {
	if o.CancelGrace <= 0 {
		o.CancelGrace = time.Second
	}
	if o.MaxMemoryLimit <= 0 {
		o.MaxMemoryLimit = sdk.DefaultMaxMemoryLimit
	}
	if o.MemoryLimit <= 0 {
		o.MemoryLimit = sdk.DefaultMemoryLimit
	}
	rep := Report{Binary: path}
	cb := fakeHost{}
	// Launched as the server launches it: from a Starter (the plugin dies with the kit), under the
	// server's memory limits.
	starter := sdk.NewStarter()
	defer starter.Close()
	p, err := sdk.Launch(ctx, sdk.LaunchConfig{Path: path, Callbacks: cb, StartTimeout: o.StartTimeout, Starter: starter,
		MaxMemory: o.MaxMemoryLimit, DefaultMemory: o.MemoryLimit})
	if err != nil {
		if errors.Is(err, sdk.ErrBadDescription) {
			rep.add("launch and handshake", nil, "")
			rep.add("description", err, "")
			return rep
		}
		msg := err.Error()
		if errors.Is(err, sdk.ErrNotAPlugin) {
			msg = "the binary is not a Crispy tool plugin (it must call sdk.Serve): " + msg
		}
		rep.add("launch and handshake", errors.New(msg), "")
		return rep
	}
	defer p.Kill()
	d := p.Description()
	rep.Tool, rep.Version = d.Name, d.Version
	rep.add("launch and handshake", nil, fmt.Sprintf("protocol %d", sdk.ProtocolVersion))
	rep.add("description", d.Validate(), fmt.Sprintf("name %s, version %s, permissions %v, timeout %s, memory limit %d MiB",
		d.Name, d.Version, d.Permissions, d.EffectiveTimeout(), p.MemoryLimit()>>20))

	in, inErr := schema.Compile(d.Name+"/input", d.InputSchema)
	rep.add("input schema compiles", inErr, "")
	out, outErr := schema.Compile(d.Name+"/output", d.OutputSchema)
	rep.add("output schema compiles", outErr, "")
	if inErr != nil || outErr != nil {
		return rep
	}
	var root node
	if err := json.Unmarshal(d.InputSchema, &root); err != nil {
		rep.add("input schema is an object", err, "")
		return rep
	}
	timeout := d.EffectiveTimeout()
	if o.CallTimeout > 0 {
		timeout = o.CallTimeout
	} else if timeout > 30*time.Second {
		timeout = 30 * time.Second
	}
	call := func(ctx context.Context, params []byte, caps sdk.Capabilities) (json.RawMessage, error) {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		return p.Execute(cctx, sdk.Call{Params: params, TenantID: "conformance", RequestID: "conformance-check", UserID: "kit",
			Granted: d.Permissions, Capabilities: caps})
	}

	// Valid inputs: the required properties only, and every property; offline and with a host.
	var valid []byte
	for _, full := range []bool{false, true} {
		label := "minimal valid input"
		if full {
			label = "full valid input"
		}
		params, _ := json.Marshal(generate(root, full, 0))
		if v := in.Validate(params); len(v) > 0 {
			rep.add(label, fmt.Errorf("could not generate an input the schema accepts (%s %s); give properties a default or examples", v[0].Path, v[0].Message), "")
			continue
		}
		if valid == nil {
			valid = params
		}
		for _, mode := range []struct {
			name string
			caps sdk.Capabilities
		}{{"offline", sdk.Capabilities{}}, {"with host", sdk.Capabilities{Complete: true, Embed: true, Ingest: true}}} {
			res, err := call(ctx, params, mode.caps)
			name := label + ", " + mode.name
			if err != nil {
				var te *sdk.Error
				if errors.As(err, &te) && !mode.caps.Ingest && d.HasPermission(sdk.PermIndexWrite) {
					rep.add(name, nil, "refused without an index: "+te.Code) // a tool that only writes cannot work offline
					continue
				}
				rep.add(name, fmt.Errorf("call failed: %w", err), "")
				continue
			}
			if v := out.Validate(res); len(v) > 0 {
				rep.add(name, fmt.Errorf("output does not match the output schema at %q: %s", v[0].Path, v[0].Message), "")
				continue
			}
			rep.add(name, nil, fmt.Sprintf("%d bytes of valid output", len(res)))
		}
	}

	// Invalid inputs: the host never sends them, but a plugin must not crash or hang on them.
	for _, iv := range invalids(root) {
		params, _ := json.Marshal(iv.value)
		if len(in.Validate(params)) == 0 {
			continue // the schema accepts it after all
		}
		_, err := call(ctx, params, sdk.Capabilities{})
		name := "invalid input (" + iv.name + ")"
		var te *sdk.Error
		switch {
		case err == nil, errors.As(err, &te):
			rep.add(name, nil, "handled")
		case errors.Is(err, sdk.ErrPluginExited) || p.Exited():
			rep.add(name, errors.New("the plugin crashed"), "")
			return rep
		case errors.Is(err, context.DeadlineExceeded):
			rep.add(name, fmt.Errorf("no answer within %s", timeout), "")
		default:
			rep.add(name, err, "")
		}
	}

	// Cancellation: cancel a call shortly after it starts; the plugin must stop working on it.
	if valid != nil {
		rep.add("honours cancellation", checkCancel(ctx, p, valid, d, o.CancelGrace), "")
	}
	// Still healthy.
	if valid != nil {
		_, err := call(ctx, valid, sdk.Capabilities{})
		var te *sdk.Error
		if errors.As(err, &te) {
			err = nil
		}
		if p.Exited() {
			err = errors.New("the plugin exited")
		}
		rep.add("healthy after the checks", err, "")
	}
	return rep
}

func checkCancel(ctx context.Context, p *sdk.Plugin, params []byte, d sdk.Description, grace time.Duration) error {
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = p.Execute(cctx, sdk.Call{Params: params, TenantID: "conformance", RequestID: "conformance-cancel", Granted: d.Permissions})
	}()
	time.Sleep(20 * time.Millisecond)
	cancel()
	<-done
	deadline := time.Now().Add(grace)
	for {
		n, err := p.InFlight(ctx)
		if err != nil {
			return fmt.Errorf("status after cancellation: %w", err)
		}
		if n == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the tool kept running %s after its call was cancelled; pass ctx to blocking work and return when ctx.Done()", grace)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// fakeHost answers callbacks the way a small deployment would: a model that says something, hashed
// embeddings, an index that accepts documents.
type fakeHost struct{}

func (fakeHost) Complete(_ context.Context, _ sdk.Scope, req sdk.CompleteRequest) (sdk.Completion, error) {
	text := "conformance model answer"
	if strings.Contains(req.System, "JSON") {
		text = "[]"
	}
	return sdk.Completion{Text: text, Model: "conformance:model"}, nil
}

func (fakeHost) Embed(_ context.Context, _ sdk.Scope, texts []string) (sdk.Embeddings, error) {
	out := sdk.Embeddings{Model: "conformance:embed"}
	for _, t := range texts {
		out.Vectors = append(out.Vectors, textkit.Embed(t))
	}
	return out, nil
}

func (fakeHost) Ingest(_ context.Context, _ sdk.Scope, d sdk.Document) (sdk.IngestResult, error) {
	return sdk.IngestResult{DocID: d.DocID, Chunks: 1, EmbeddingModel: "conformance:embed"}, nil
}
