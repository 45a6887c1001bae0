package sdk_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"github.com/crispy-enigma/crispy/plugins/sdk"
)

var binDir string

func TestMain(m *testing.M) {
	if mode := os.Getenv(childHostEnv); mode != "" {
		binDir = os.Getenv("CRISPY_SDK_TEST_BIN")
		os.Exit(childHost(mode))
	}
	dir, err := os.MkdirTemp("", "sdk-test-")
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	binDir = dir
	code := func() int {
		defer os.RemoveAll(dir)
		out, err := exec.Command("go", "build", "-o", filepath.Join(dir, "echo"), "github.com/crispy-enigma/crispy/plugins/sdk/internal/testplugin").CombinedOutput()
		if err != nil {
			fmt.Printf("build test plugin: %v\n%s", err, out)
			return 1
		}
		// A plugin behind a wrapper script that runs it as its child (no exec): its parent is the
		// shell, not the host.
		wrapper := "#!/bin/sh\n" + strconv.Quote(filepath.Join(dir, "echo")) + " \"$@\"\n"
		if err := os.WriteFile(filepath.Join(dir, "wrapped"), []byte(wrapper), 0o755); err != nil {
			fmt.Println(err)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

// recorder is a Callbacks that remembers the scopes it was called with.
type recorder struct {
	mu     sync.Mutex
	scopes []sdk.Scope
}

func (r *recorder) note(s sdk.Scope) {
	r.mu.Lock()
	r.scopes = append(r.scopes, s)
	r.mu.Unlock()
}

func (r *recorder) Complete(_ context.Context, s sdk.Scope, req sdk.CompleteRequest) (sdk.Completion, error) {
	r.note(s)
	return sdk.Completion{Text: "hi from " + s.TenantID, Model: "test:model"}, nil
}

func (r *recorder) Embed(_ context.Context, s sdk.Scope, texts []string) (sdk.Embeddings, error) {
	r.note(s)
	return sdk.Embeddings{Vectors: make([][]float32, len(texts)), Model: "test:embed"}, nil
}

func (r *recorder) Ingest(_ context.Context, s sdk.Scope, d sdk.Document) (sdk.IngestResult, error) {
	r.note(s)
	return sdk.IngestResult{DocID: d.DocID, Chunks: 1}, nil
}

func launch(t *testing.T, cb sdk.Callbacks) *sdk.Plugin {
	t.Helper()
	p, err := sdk.Launch(context.Background(), sdk.LaunchConfig{Path: filepath.Join(binDir, "echo"), Callbacks: cb})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	return p
}

func TestCallbacksAreScopedToTheirCall(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	p := launch(t, rec)
	if d := p.Description(); d.Name != "echo" || d.Version != "1.0.0" {
		t.Fatalf("description %+v", d)
	}
	call := sdk.Call{Params: json.RawMessage(`{"mode":"callback"}`), TenantID: "acme", RequestID: "r1", UserID: "u1", Granted: sdk.KnownPermissions()}
	out, err := p.Execute(context.Background(), call)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	_ = json.Unmarshal(out, &got)
	if got["complete"] != "hi from acme" || got["ingestErr"] != "" || got["embedErr"] != "" {
		t.Fatalf("callback result %v", got)
	}
	for _, s := range rec.scopes {
		if s.TenantID != "acme" || s.RequestID != "r1" || s.UserID != "u1" || s.Tool != "echo" {
			t.Fatalf("scope %+v", s)
		}
	}

	// Tenant B's call: the plugin tries to write with the Host it kept from acme's call.
	out, err = p.Execute(context.Background(), sdk.Call{Params: json.RawMessage(`{"mode":"stale"}`), TenantID: "bravo", RequestID: "r2", Granted: sdk.KnownPermissions()})
	if err != nil {
		t.Fatal(err)
	}
	_ = json.Unmarshal(out, &got)
	if got["ingest"] != "token_refused" {
		t.Fatalf("stale token was not refused: %v", got)
	}
	for _, s := range rec.scopes {
		if s.TenantID != "acme" {
			t.Fatalf("a callback reached tenant %s", s.TenantID)
		}
	}

	// Permissions not granted to the call are refused.
	out, err = p.Execute(context.Background(), sdk.Call{Params: json.RawMessage(`{"mode":"callback"}`), TenantID: "acme", RequestID: "r3", Granted: nil})
	if err != nil {
		t.Fatal(err)
	}
	_ = json.Unmarshal(out, &got)
	if got["completeErr"] != "permission_denied" || got["ingestErr"] != "permission_denied" {
		t.Fatalf("ungranted callbacks were not refused: %v", got)
	}
}

func TestNoCallbacksMeansUnavailable(t *testing.T) {
	t.Parallel()
	p := launch(t, nil)
	out, err := p.Execute(context.Background(), sdk.Call{Params: json.RawMessage(`{"mode":"callback"}`), TenantID: "acme", Granted: sdk.KnownPermissions()})
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	_ = json.Unmarshal(out, &got)
	if got["completeErr"] != "unavailable" {
		t.Fatalf("got %v", got)
	}
}

func TestToolErrorsAndCrashes(t *testing.T) {
	t.Parallel()
	p := launch(t, nil)
	_, err := p.Execute(context.Background(), sdk.Call{Params: json.RawMessage(`{"mode":"fail"}`)})
	var te *sdk.Error
	if !errors.As(err, &te) || te.Code != "failed_on_purpose" {
		t.Fatalf("fail: %v", err)
	}
	_, err = p.Execute(context.Background(), sdk.Call{Params: json.RawMessage(`{"mode":"panic"}`)})
	if !errors.As(err, &te) || te.Code != "tool_panic" {
		t.Fatalf("panic: %v", err)
	}
	_, err = p.Execute(context.Background(), sdk.Call{Params: json.RawMessage(`{"mode":"crash"}`)})
	if !errors.Is(err, sdk.ErrPluginExited) {
		t.Fatalf("crash: %v", err)
	}
}

func TestNonPluginIsRefused(t *testing.T) {
	t.Parallel()
	script := filepath.Join(t.TempDir(), "hello")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho hello\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := sdk.Launch(context.Background(), sdk.LaunchConfig{Path: script})
	if !errors.Is(err, sdk.ErrNotAPlugin) {
		t.Fatalf("err = %v", err)
	}
}

func TestChecksumMismatchIsRefused(t *testing.T) {
	t.Parallel()
	_, err := sdk.Launch(context.Background(), sdk.LaunchConfig{Path: filepath.Join(binDir, "echo"), Checksum: make([]byte, 32)})
	if !errors.Is(err, sdk.ErrChecksumMismatch) {
		t.Fatalf("err = %v", err)
	}
}

func BenchmarkWarmCall(b *testing.B) {
	p, err := sdk.Launch(context.Background(), sdk.LaunchConfig{Path: filepath.Join(binDir, "echo")})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Kill()
	call := sdk.Call{Params: json.RawMessage(`{"mode":"ok"}`), TenantID: "acme"}
	b.ResetTimer()
	for b.Loop() {
		if _, err := p.Execute(context.Background(), call); err != nil {
			b.Fatal(err)
		}
	}
}
