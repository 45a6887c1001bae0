package tooling_test

// Containment: a plugin's failures, floods and leaks stay with the plugin and the tenant that caused
// them (issue 10, item 7).

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/crispy-enigma/crispy/modules/tooling"
	"github.com/crispy-enigma/crispy/modules/tooling/internal/host"
	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/tenant"
	"github.com/crispy-enigma/crispy/plugins/sdk"
	"github.com/crispy-enigma/crispy/plugins/sdk/sdktest"
)

// hungPID is the pid the test plugin recorded when persona started hanging.
func hungPID(t testing.TB, persona string) int {
	t.Helper()
	var pid int
	eventually(t, persona+" recorded the pid of its hanging call", func() bool {
		ents, _ := os.ReadDir(pidDir)
		for _, en := range ents {
			if p, ok := strings.CutPrefix(en.Name(), persona+"."); ok {
				pid, _ = strconv.Atoi(p)
				return true
			}
		}
		return false
	})
	return pid
}

// TestTimedOutCallDoesNotFailOtherTenantsCalls: tenant A's call hangs (ignoring cancellation) past the
// tool's timeout while tenant B keeps calls of the same tool in flight. A gets EXECUTION_TIMEOUT; every
// one of B's calls succeeds, including those in flight on the process when A's call timed out and
// while the host replaced that process.
func TestTimedOutCallDoesNotFailOtherTenantsCalls(t *testing.T) {
	t.Parallel()
	e := newEnv(t, pluginsDir(t, "innocent"), opts{})
	ctx := context.Background()
	a, b := tenant.MustParse("tenant-a"), tenant.MustParse("tenant-b")
	if _, err := e.mod.Execute(ctx, b, "innocent", json.RawMessage(`{"mode":"ok"}`), ""); err != nil {
		t.Fatal(err)
	}

	var (
		stop             atomic.Bool
		aDone            atomic.Bool
		okB, overlapping atomic.Int64
		mu               sync.Mutex
		failures         []string
		wg               sync.WaitGroup
	)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				before := aDone.Load()
				_, err := e.mod.Execute(ctx, b, "innocent", json.RawMessage(`{"mode":"slow","ms":100}`), "")
				if err != nil {
					mu.Lock()
					failures = append(failures, apperr.CodeOf(err)+": "+err.Error())
					mu.Unlock()
					continue
				}
				okB.Add(1)
				if !before && aDone.Load() {
					overlapping.Add(1) // in flight when A's call timed out
				}
			}
		}()
	}
	_, err := e.mod.Execute(ctx, a, "innocent", json.RawMessage(`{"mode":"hang"}`), "")
	aDone.Store(true)
	if code := apperr.CodeOf(err); code != "EXECUTION_TIMEOUT" {
		t.Errorf("tenant A's hanging call: %q (%v), want EXECUTION_TIMEOUT", code, err)
	}
	// The hung process ignores cancellation: the host replaces it once B's calls on it have drained.
	pid := hungPID(t, "innocent")
	eventually(t, "the process that ignored cancellation is replaced", func() bool { return !sdktest.Alive(pid) })
	stop.Store(true)
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d of tenant B's calls failed (%d succeeded); first: %s", len(failures), okB.Load(), failures[0])
	}
	if overlapping.Load() == 0 {
		t.Fatal("none of B's calls was in flight when A's call timed out; the test proved nothing")
	}
	t.Logf("tenant B: %d calls succeeded, %d of them in flight when A's call timed out", okB.Load(), overlapping.Load())
	if _, err := e.mod.Execute(ctx, b, "innocent", json.RawMessage(`{"mode":"ok"}`), ""); err != nil {
		t.Fatalf("call after the replacement: %v", err)
	}
}

// TestTenantFloodDoesNotStarveAnotherTenant: tenant A queues 40 slow calls on a tool that runs 2 at a
// time; tenant B's one call completes before most of them (it waits for about one slot, not for A's
// queue).
func TestTenantFloodDoesNotStarveAnotherTenant(t *testing.T) {
	t.Parallel()
	m := host.New(host.Config{Dir: pluginsDir(t, "echo"), MaxConcurrent: 2})
	t.Cleanup(m.Close)
	ctx := context.Background()
	if _, err := m.Tools(ctx); err != nil {
		t.Fatal(err)
	}
	const flood = 40
	var aDone atomic.Int64
	var wg sync.WaitGroup
	for range flood {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := m.Call(ctx, "echo", sdk.Call{Params: json.RawMessage(`{"mode":"slow","ms":50}`), TenantID: "tenant-a"}); err != nil {
				t.Errorf("tenant A: %v", err)
			}
			aDone.Add(1)
		}()
	}
	eventually(t, "tenant A's flood is queued", func() bool { return m.Queued("echo") >= flood-2 })
	queuedAhead := flood - int(aDone.Load())
	if _, err := m.Call(ctx, "echo", sdk.Call{Params: json.RawMessage(`{"mode":"ok"}`), TenantID: "tenant-b"}); err != nil {
		t.Fatal(err)
	}
	finishedFirst := int(aDone.Load()) - (flood - queuedAhead)
	wg.Wait()
	// Fair: B's call waits for the calls in flight (2) and about one more of A's; FIFO: for all 40.
	// The bound is loose so that a slow machine's scheduling cannot fail it, and still far from FIFO.
	if finishedFirst >= queuedAhead/2 {
		t.Fatalf("%d of tenant A's %d queued calls finished before tenant B's one call", finishedFirst, queuedAhead)
	}
}

// childHostEnv makes the test binary a host process (see TestMain): it loads the plugins folder named by
// the variable, calls every tool once, prints "pid <n>" per plugin process, and waits to be killed.
const childHostEnv = "CRISPY_TEST_CHILD_HOST_PLUGINS"

func childHost(dir string) int {
	m := host.New(host.Config{Dir: dir})
	ctx := context.Background()
	tools, err := m.Tools(ctx)
	if err != nil || len(tools) == 0 {
		fmt.Println("error: no tools:", err)
		return 1
	}
	for _, tl := range tools {
		out, err := m.Call(ctx, tl.Desc.Name, sdk.Call{Params: json.RawMessage(`{"mode":"ok"}`), TenantID: "acme"})
		if err != nil {
			fmt.Println("error:", err)
			return 1
		}
		var r struct{ PID int }
		_ = json.Unmarshal(out, &r)
		fmt.Printf("pid %d\n", r.PID)
	}
	fmt.Println("ready")
	select {}
}

// TestPluginsDieWithTheHostOnSIGKILL starts a host process with two plugins, SIGKILLs the host, and
// checks its plugin processes end too (no orphans).
func TestPluginsDieWithTheHostOnSIGKILL(t *testing.T) {
	t.Parallel()
	dir := pluginsDir(t, "echo", "plain")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "-test.run=^$")
	cmd.Env = append(os.Environ(), childHostEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var pids []int
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		if p, ok := strings.CutPrefix(line, "pid "); ok {
			n, _ := strconv.Atoi(p)
			pids = append(pids, n)
		}
		if line == "ready" || strings.HasPrefix(line, "error") {
			if line != "ready" {
				t.Error(line)
			}
			break
		}
	}
	t.Cleanup(func() {
		for _, p := range pids {
			_ = syscall.Kill(p, syscall.SIGKILL) // only if the test failed: leave no orphans behind
		}
	})
	if len(pids) != 2 {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("child host reported pids %v", pids)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("child host: %v", err)
	}
	for _, pid := range pids {
		if !sdktest.WaitGone(pid, 15*time.Second) {
			t.Errorf("plugin process %d outlived its SIGKILLed host", pid)
		}
	}
}

// metricValue reads one series of set ("" when absent).
func metricValue(set *metrics.Set, series string) string {
	var b bytes.Buffer
	set.WritePrometheus(&b)
	for _, l := range strings.Split(b.String(), "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			return v
		}
	}
	return ""
}

func resultPID(t testing.TB, r resp) int {
	t.Helper()
	if r.status != 200 {
		t.Fatalf("call: %d %s", r.status, r.raw)
	}
	return int(r.body["result"].(map[string]any)["pid"].(float64))
}

// TestPluginAboveItsMemoryCeilingIsReplaced: a tool holds 80 MiB for good under a 64 MiB ceiling. The
// call itself succeeds; the host sees the resident memory above the ceiling, replaces the process,
// counts a restart for memory, and the next call runs in a fresh process.
func TestPluginAboveItsMemoryCeilingIsReplaced(t *testing.T) {
	t.Parallel()
	set := metrics.NewSet()
	e := newEnv(t, pluginsDir(t, "leaky"), opts{metrics: set, config: tooling.Config{PluginMemoryLimit: 64 << 20, MaxPluginMemoryLimit: 64 << 20}})
	pid := resultPID(t, e.exec("acme", "leaky", map[string]any{"mode": "hold", "mb": 80}))
	eventually(t, "the leaking process is replaced", func() bool { return !sdktest.Alive(pid) })
	if v := metricValue(set, `crispy_tool_plugin_restarts_total{tool="leaky",reason="memory"}`); v != "1" {
		t.Fatalf("restarts for memory: %q, want 1", v)
	}
	if !strings.Contains(e.logs.String(), "above its memory ceiling") {
		t.Fatalf("no log line names the ceiling:\n%s", e.logs)
	}
	if next := resultPID(t, e.exec("acme", "leaky", map[string]any{"mode": "ok"})); next == pid {
		t.Fatalf("the next call ran in the old process %d", pid)
	}
}

// TestPluginAllocatingFarPastItsCeilingIsStopped: a tool asks for 600 MiB at once under a 64 MiB
// ceiling. The kernel refuses it (RLIMIT_DATA), the plugin dies out of memory, that call fails, the
// restart is counted for memory, and the next call works.
func TestPluginAllocatingFarPastItsCeilingIsStopped(t *testing.T) {
	t.Parallel()
	set := metrics.NewSet()
	e := newEnv(t, pluginsDir(t, "leaky"), opts{metrics: set, config: tooling.Config{PluginMemoryLimit: 64 << 20, MaxPluginMemoryLimit: 64 << 20}})
	pid := resultPID(t, e.exec("acme", "leaky", map[string]any{"mode": "ok"}))
	wantProblem(t, e.exec("acme", "leaky", map[string]any{"mode": "hold", "mb": 600}), 502, "EXECUTION_ERROR")
	if sdktest.Alive(pid) {
		t.Fatalf("process %d survived allocating 600 MiB under a 64 MiB ceiling", pid)
	}
	if next := resultPID(t, e.exec("acme", "leaky", map[string]any{"mode": "ok"})); next == pid {
		t.Fatalf("the next call ran in the old process %d", pid)
	}
	eventually(t, "the restart is counted for memory", func() bool {
		return metricValue(set, `crispy_tool_plugin_restarts_total{tool="leaky",reason="memory"}`) == "1"
	})
}

// TestWedgedPluginIsReplaced: a process that stops answering altogether (here: SIGSTOPped) fails the
// call that times out on it, is replaced as wedged, and the next call runs in a fresh process.
func TestWedgedPluginIsReplaced(t *testing.T) {
	t.Parallel()
	set := metrics.NewSet()
	e := newEnv(t, pluginsDir(t, "echo"), opts{metrics: set, config: tooling.Config{CancelGrace: 300 * time.Millisecond}})
	pid := resultPID(t, e.exec("acme", "echo", map[string]any{"mode": "ok"}))
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	eventually(t, "the process is stopped", func() bool {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		return strings.Contains(string(b), "State:\tT")
	})
	wantProblem(t, e.exec("acme", "echo", map[string]any{"mode": "ok"}), 504, "EXECUTION_TIMEOUT")
	eventually(t, "the wedged process is replaced", func() bool {
		return metricValue(set, `crispy_tool_plugin_restarts_total{tool="echo",reason="wedged"}`) == "1"
	})
	if next := resultPID(t, e.exec("acme", "echo", map[string]any{"mode": "ok"})); next == pid {
		t.Fatalf("the next call ran in the wedged process %d", pid)
	}
}

// TestDeathOutOfMemoryIsCountedForMemoryWhenItsLastWordsComeLate: a plugin's last words ("out of
// memory") may be read after its connection broke; the restart is still counted for memory, not as a
// crash, whether it died during a call (which fails) or while the host checked that a timed-out call
// stops (not as wedged either).
func TestDeathOutOfMemoryIsCountedForMemoryWhenItsLastWordsComeLate(t *testing.T) {
	t.Parallel()
	t.Run("during a call", func(t *testing.T) {
		t.Parallel()
		deathCountedForMemory(t, map[string]any{"mode": "lastwords"}, 502, "EXECUTION_ERROR")
	})
	t.Run("after the call timed out", func(t *testing.T) {
		t.Parallel()
		deathCountedForMemory(t, map[string]any{"mode": "lastwords", "ms": 1000}, 504, "EXECUTION_TIMEOUT")
	})
}

func deathCountedForMemory(t *testing.T, params map[string]any, status int, code string) {
	t.Helper()
	set := metrics.NewSet()
	// A grace far longer than the call ignores its cancellation: the host is still checking when it dies.
	e := newEnv(t, pluginsDir(t, "echo"), opts{metrics: set, config: tooling.Config{CancelGrace: 10 * time.Second}})
	wantProblem(t, e.exec("acme", "echo", params), status, code)
	restarts := func() map[string]string {
		out := map[string]string{}
		for _, reason := range []string{host.ReasonCrash, host.ReasonMemory, host.ReasonTimeout, host.ReasonWedged} {
			if v := metricValue(set, `crispy_tool_plugin_restarts_total{tool="echo",reason="`+reason+`"}`); v != "" {
				out[reason] = v
			}
		}
		return out
	}
	eventually(t, "the restart is counted", func() bool { return len(restarts()) > 0 })
	if got := restarts(); len(got) != 1 || got[host.ReasonMemory] != "1" {
		t.Fatalf("restarts by reason %v, want one for memory", got)
	}
}
