package e2e

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	crispy "github.com/crispy-enigma/crispy/openapi/clients/go"
	"github.com/crispy-enigma/crispy/plugins/sdk/sdktest"
)

// children lists the live processes whose parent is pid (from /proc).
func children(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", n))
		if err != nil {
			continue
		}
		// pid (comm) state ppid …; comm may hold spaces, so read after its closing parenthesis.
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) && f[0] != "Z" {
			out = append(out, n)
		}
	}
	return out
}

// TestToolPluginsDieWithTheServerOnKill9: the server's tool plugin processes end with it when it is
// killed with SIGKILL, which it cannot catch (issue 10: every plugin used to be left running).
func TestToolPluginsDieWithTheServerOnKill9(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("needs /proc")
	}
	srv := startServer(t, t.TempDir())
	res, err := as(t, srv.BaseURL, "demo", "").ExecuteToolWithResponse(ctx(t), &crispy.ExecuteToolParams{},
		crispy.ExecuteToolInput{ToolName: "summarize", Params: map[string]any{"text": "One sentence. Another one."}})
	if err != nil || res.JSON200 == nil {
		t.Fatalf("execute: %v %s", err, res.Body)
	}
	plugins := children(srv.Cmd.Process.Pid)
	if len(plugins) != 5 {
		t.Fatalf("the server runs %d child processes, want its 5 plugins", len(plugins))
	}
	t.Cleanup(func() {
		for _, p := range plugins {
			_ = syscall.Kill(p, syscall.SIGKILL) // only if the test failed: leave no orphans behind
		}
	})
	srv.Kill()
	var orphans []int
	for _, p := range plugins {
		if !sdktest.WaitGone(p, 15*time.Second) {
			orphans = append(orphans, p)
		}
	}
	if len(orphans) > 0 {
		t.Fatalf("%d of %d plugin processes outlived the SIGKILLed server: %v", len(orphans), len(plugins), orphans)
	}
}
