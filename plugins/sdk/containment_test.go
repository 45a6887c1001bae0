package sdk_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/plugins/sdk"
	"github.com/crispy-enigma/crispy/plugins/sdk/sdktest"
)

func waitGone(t *testing.T, pid int) {
	t.Helper()
	if !sdktest.WaitGone(pid, 15*time.Second) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		t.Fatalf("process %d outlived its SIGKILLed host", pid)
	}
}

// The test binary doubles as a host process (see TestMain): childHostEnv says how it starts its child.
const childHostEnv = "CRISPY_SDK_TEST_CHILD_HOST"

// childHost starts one child, prints "pid <n>", and waits to be killed. "plugin" launches the test
// plugin without a Starter (so only the SDK's parent watch can end it); "sleep" starts a plain
// `sleep` through a Starter (so only the parent-death signal can).
func childHost(mode string) int {
	switch mode {
	case "plugin":
		p, err := sdk.Launch(context.Background(), sdk.LaunchConfig{Path: filepath.Join(os.Getenv("CRISPY_SDK_TEST_BIN"), "echo")})
		if err != nil {
			fmt.Println("error:", err)
			return 1
		}
		fmt.Printf("pid %d\n", p.PID())
	case "wrapped":
		// As the server launches it (from a Starter), through a wrapper script: the parent-death
		// signal ends the shell, and the plugin, re-parented, must notice its host is gone.
		p, err := sdk.Launch(context.Background(), sdk.LaunchConfig{Path: filepath.Join(os.Getenv("CRISPY_SDK_TEST_BIN"), "wrapped"),
			Starter: sdk.NewStarter()})
		if err != nil {
			fmt.Println("error:", err)
			return 1
		}
		// Answering after a few parent polls: the plugin did not take the shell for a dead host.
		time.Sleep(time.Second)
		out, err := p.Execute(context.Background(), sdk.Call{Params: json.RawMessage(`{"mode":"ok"}`)})
		if err != nil {
			fmt.Println("error:", err)
			return 1
		}
		var r struct{ PID int }
		_ = json.Unmarshal(out, &r)
		fmt.Printf("pid %d\n", r.PID)
	case "sleep":
		cmd := exec.Command("sleep", "300")
		if err := sdk.NewStarter().Start(cmd); err != nil {
			fmt.Println("error:", err)
			return 1
		}
		fmt.Printf("pid %d\n", cmd.Process.Pid)
	}
	select {}
}

// killHost runs the test binary as a host of the given mode, SIGKILLs it, and returns its child's pid.
func killHost(t *testing.T, mode string) int {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "-test.run=^$")
	cmd.Env = append(os.Environ(), childHostEnv+"="+mode, "CRISPY_SDK_TEST_BIN="+binDir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	pid, _ := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "pid ")))
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	go func() { _, _ = io.Copy(io.Discard, out) }()
	if pid == 0 {
		t.Fatalf("child host said %q", line)
	}
	return pid
}

// TestPluginExitsByItselfWhenItsHostIsKilled: no parent-death signal, so it is the SDK's parent watch
// that ends the plugin (what protects hosts on other systems, or launched without a Starter).
func TestPluginExitsByItselfWhenItsHostIsKilled(t *testing.T) {
	t.Parallel()
	waitGone(t, killHost(t, "plugin"))
}

// TestPluginBehindAWrapperScriptServesAndDiesWithItsHost: a plugin run by a shell script as its child
// (not exec'd) takes the shell for its parent: it serves calls (before: it took the shell for a dead host
// and exited at once, so the launch failed), and still exits once its host is SIGKILLed.
func TestPluginBehindAWrapperScriptServesAndDiesWithItsHost(t *testing.T) {
	t.Parallel()
	if runtime.GOOS != "linux" {
		t.Skip("the wrapper dies with its host by the parent-death signal, Linux's")
	}
	waitGone(t, killHost(t, "wrapped"))
}

// TestStarterKillsItsProcessesWhenTheirHostIsKilled: a plain process (no SDK, no watch) started through
// a Starter dies with its SIGKILLed host: the parent-death signal.
func TestStarterKillsItsProcessesWhenTheirHostIsKilled(t *testing.T) {
	t.Parallel()
	if runtime.GOOS != "linux" {
		t.Skip("the parent-death signal is Linux's")
	}
	waitGone(t, killHost(t, "sleep"))
}

// TestStarterOutlivesTheGoroutinesThatUseIt: a process started through a Starter from a goroutine that
// locks its thread and ends (which ends that thread) keeps running: the parent-death signal is tied to
// the Starter's own thread, not to its caller's.
func TestStarterOutlivesTheGoroutinesThatUseIt(t *testing.T) {
	t.Parallel()
	if runtime.GOOS != "linux" {
		t.Skip("the parent-death signal is Linux's")
	}
	s := sdk.NewStarter()
	defer s.Close()
	cmd := exec.Command("sleep", "300")
	done := make(chan error)
	go func() {
		runtime.LockOSThread() // never unlocked: this thread ends with the goroutine
		done <- s.Start(cmd)
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	time.Sleep(100 * time.Millisecond) // let the caller's thread end
	if !sdktest.Alive(cmd.Process.Pid) {
		t.Fatal("the process died with the goroutine that asked for it")
	}
	s.Close()
	if err := s.Start(exec.Command("true")); !errors.Is(err, sdk.ErrStarterClosed) {
		t.Fatalf("start after close: %v", err)
	}
}

// TestCancelledCallIsAnsweredAndListedUntilItStops: the SDK answers a cancelled call at once, and
// lists it in Status while the tool's function still runs: until it returns (a tool that honours ctx),
// or for good (one that ignores ctx, which the host then replaces).
func TestCancelledCallIsAnsweredAndListedUntilItStops(t *testing.T) {
	t.Parallel()
	p := launch(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := p.Execute(ctx, sdk.Call{ID: "ignores", Params: json.RawMessage(`{"mode":"hang"}`)})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("hanging call: %v", err)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel2()
	_, err = p.Execute(ctx2, sdk.Call{ID: "honours", Params: json.RawMessage(`{"mode":"slow","ms":60000}`)})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("slow call: %v", err)
	}
	var ids []string
	deadline := time.Now().Add(10 * time.Second)
	for {
		ids, _, err = p.Running(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(ids, "honours") || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !slices.Equal(ids, []string{"ignores"}) {
		t.Fatalf("running %v, want only the call that ignores cancellation", ids)
	}
	if _, err := p.Execute(context.Background(), sdk.Call{ID: "next", Params: json.RawMessage(`{"mode":"ok"}`)}); err != nil {
		t.Fatalf("a call beside the stuck one: %v", err)
	}
}

// TestMemoryCeilingIsTheKernelsLimitToo: the ceiling a host gives (capped at MaxMemory) is applied to
// the process as its data limit (HardMemoryLimit), which the plugin cannot raise.
func TestMemoryCeilingIsTheKernelsLimitToo(t *testing.T) {
	t.Parallel()
	if runtime.GOOS != "linux" {
		t.Skip("rlimits of other processes are Linux's")
	}
	echo, leaky := filepath.Join(binDir, "echo"), filepath.Join(t.TempDir(), "leaky") // leaky declares 1 GiB
	if err := os.Link(echo, leaky); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name             string
		path             string
		max, deflt, want int64
	}{
		{"the default of a tool that declares none", echo, 1 << 30, 200 << 20, 200 << 20},
		{"never above the maximum", echo, 300 << 20, 5 << 30, 300 << 20},
		{"the maximum when nothing is said", echo, 300 << 20, 0, 300 << 20},
		{"the tool's own ceiling", leaky, 2 << 30, 200 << 20, 1 << 30},
		{"the tool's own ceiling, never above the maximum", leaky, 300 << 20, 200 << 20, 300 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := sdk.Launch(context.Background(), sdk.LaunchConfig{Path: tc.path, MaxMemory: tc.max, DefaultMemory: tc.deflt})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Kill()
			if p.MemoryLimit() != tc.want {
				t.Fatalf("ceiling %d, want %d", p.MemoryLimit(), tc.want)
			}
			limits, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", p.PID()))
			if err != nil {
				t.Fatal(err)
			}
			hard := strconv.FormatInt(sdk.HardMemoryLimit(tc.want), 10)
			for _, l := range strings.Split(string(limits), "\n") {
				if strings.HasPrefix(l, "Max data size") {
					if f := strings.Fields(l); len(f) < 5 || f[3] != hard || f[4] != hard {
						t.Fatalf("%s, want soft and hard %s", l, hard)
					}
					return
				}
			}
			t.Fatalf("no data limit in\n%s", limits)
		})
	}
}

func TestMatchingChecksumLaunches(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join(binDir, "echo"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	p, err := sdk.Launch(context.Background(), sdk.LaunchConfig{Path: filepath.Join(binDir, "echo"), Checksum: sum[:]})
	if err != nil {
		t.Fatal(err)
	}
	p.Kill()
}
