// Command testplugin is a tool plugin for the host's and the kit's tests. One binary plays several
// personas, chosen by the name it is run under (copy it to echo, plain, stubborn, badname …), so a test
// builds it once. Modes in the params make it crash, hang, fail, lie about its output, abuse its
// Host, or hold memory it never frees. It writes "<persona>.<pid>" into $CRISPY_TESTPLUGIN_PIDDIR when it starts hanging, so a test can
// check the host killed it.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/crispy-enigma/crispy/plugins/sdk"
)

const inputSchema = `{
  "type": "object",
  "required": ["mode"],
  "additionalProperties": false,
  "properties": {
    "mode": {"type": "string", "enum": ["ok", "crash", "hang", "slow", "fail", "badoutput", "callback", "stale", "panic", "hold", "lastwords"], "default": "ok"},
    "n": {"type": "integer", "minimum": 0, "maximum": 10},
    "text": {"type": "string", "maxLength": 100},
    "ms": {"type": "integer", "minimum": 0, "maximum": 60000},
    "mb": {"type": "integer", "minimum": 0, "maximum": 4096}
  }
}`

const outputSchema = `{
  "type": "object",
  "required": ["mode"],
  "properties": {"mode": {"type": "string"}}
}`

type params struct {
	Mode string `json:"mode"`
	N    int    `json:"n"`
	Text string `json:"text"`
	MS   int    `json:"ms"`
	MB   int    `json:"mb"`
}

type tool struct {
	persona string
	desc    sdk.Description

	mu   sync.Mutex
	last sdk.Host // the previous call's Host, for the "stale" mode
	held [][]byte // what the "hold" mode allocated: a leak on purpose
}

func (t *tool) Describe() sdk.Description { return t.desc }

func (t *tool) Execute(ctx context.Context, req sdk.Request, host sdk.Host) (json.RawMessage, error) {
	t.mu.Lock()
	prev := t.last
	t.last = host
	t.mu.Unlock()
	if t.persona == "stubborn" {
		time.Sleep(400 * time.Millisecond) // ignores ctx on purpose
		return json.RawMessage(`{"mode":"ok"}`), nil
	}
	var p params
	if err := json.Unmarshal(req.Params, &p); err != nil {
		return nil, sdk.Errorf("invalid_params", "%v", err)
	}
	switch p.Mode {
	case "crash":
		os.Exit(3)
	case "panic":
		panic("boom")
	case "lastwords":
		// Ignores its cancellation for ms, then dies while its last words are still on their way: a
		// helper sharing its stderr says "out of memory" after the process has gone, as a loaded
		// machine can read a dying plugin's stderr after its connection broke.
		time.Sleep(time.Duration(p.MS) * time.Millisecond)
		cmd := exec.Command("sh", "-c", "sleep 0.3; echo 'fatal error: runtime: out of memory' >&2")
		cmd.Stderr = os.NewFile(2, "stderr") // the process's own (go-plugin reassigns os.Stderr), where the runtime writes
		_ = cmd.Start()
		os.Exit(2)
	case "hang":
		if dir := os.Getenv("CRISPY_TESTPLUGIN_PIDDIR"); dir != "" {
			_ = os.WriteFile(filepath.Join(dir, fmt.Sprintf("%s.%d", t.persona, os.Getpid())), nil, 0o644)
		}
		select {} // ignores ctx on purpose: the host must kill it
	case "slow":
		select {
		case <-time.After(time.Duration(p.MS) * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	case "hold":
		// Allocates mb MiB, touches every page so it is resident, and never lets go: a leaking tool.
		for range p.MB {
			b := make([]byte, 1<<20)
			for i := 0; i < len(b); i += 4096 {
				b[i] = 1
			}
			t.mu.Lock()
			t.held = append(t.held, b)
			t.mu.Unlock()
		}
	case "fail":
		return nil, sdk.Errorf("failed_on_purpose", "the test plugin failed as asked")
	case "badoutput":
		return json.RawMessage(`{"unexpected":true}`), nil
	case "callback":
		return t.callback(ctx, req, host)
	case "stale":
		if prev == nil {
			return nil, sdk.Errorf("no_previous_call", "call once before asking for stale")
		}
		_, err := prev.Ingest(ctx, sdk.Document{DocID: "stolen", Text: "written with another call's token"})
		return json.Marshal(map[string]any{"mode": "stale", "ingest": errText(err)})
	}
	return json.Marshal(map[string]any{"mode": "ok", "n": p.N, "text": p.Text, "tenant": req.TenantID, "user": req.UserID, "request": req.RequestID, "pid": os.Getpid()})
}

func (t *tool) callback(ctx context.Context, req sdk.Request, host sdk.Host) (json.RawMessage, error) {
	out := map[string]any{"mode": "callback", "capabilities": host.Capabilities()}
	c, err := host.Complete(ctx, sdk.CompleteRequest{Prompt: "say hi"})
	out["complete"], out["completeErr"] = c.Text, errText(err)
	e, err := host.Embed(ctx, []string{"a", "b"})
	out["embedCount"], out["embedErr"] = len(e.Vectors), errText(err)
	r, err := host.Ingest(ctx, sdk.Document{DocID: "doc-" + req.RequestID, Text: "hello from a tool", Metadata: map[string]any{"k": "v"}})
	out["ingestChunks"], out["ingestErr"] = r.Chunks, errText(err)
	return json.Marshal(out)
}

func errText(err error) string {
	switch {
	case err == nil:
		return ""
	case strings.Contains(err.Error(), sdk.ErrTokenRefused.Error()):
		return "token_refused"
	case strings.Contains(err.Error(), sdk.ErrPermissionDenied.Error()):
		return "permission_denied"
	case strings.Contains(err.Error(), sdk.ErrUnavailable.Error()):
		return "unavailable"
	default:
		return err.Error()
	}
}

func main() {
	persona := filepath.Base(os.Args[0])
	d := sdk.Description{
		Name: persona, Version: "1.0.0", Description: "Test plugin persona " + persona + ".",
		InputSchema: json.RawMessage(inputSchema), OutputSchema: json.RawMessage(outputSchema),
		Timeout: 500 * time.Millisecond,
	}
	switch persona {
	case "echo", "echo2", "echo3":
		d.Permissions = sdk.KnownPermissions()
	case "crowd", "crowd2", "crowd3":
		// echo with room: with a thousand calls in flight, a call's 500 ms (its round trip and the
		// plugin's work, both starved of CPU on a loaded machine under -race) ran out in
		// TestThousandConcurrentCallsAcrossTools, which is about every call arriving, not about the
		// timeout (the timeout tests use echo and stubborn).
		d.Permissions = sdk.KnownPermissions()
		d.Timeout = 30 * time.Second
	case "plain":
		d.Timeout = 5 * time.Second
	case "stubborn":
		d.Timeout = 10 * time.Second
	case "innocent":
		d.Timeout = 1500 * time.Millisecond // its callers' 100 ms calls never time out, even on a loaded machine
	case "leaky":
		d.Timeout = 10 * time.Second
		d.MemoryLimit = 1 << 30 // asks for more than the host allows; the host's cap wins
	case "badname":
		d.Name = "Bad Name"
	}
	sdk.Serve(&tool{persona: persona, desc: d})
}
