package sdktest_test

import (
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/plugins/sdk/sdktest"
)

func TestAliveUntilReaped(t *testing.T) {
	t.Parallel()
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	if !sdktest.Alive(os.Getpid()) {
		t.Fatal("this process is not alive")
	}
	cmd := exec.Command("sleep", "300")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	if !sdktest.Alive(pid) {
		t.Fatal("a running child is not alive")
	}
	_ = cmd.Process.Kill()
	// Not yet waited for: a zombie, which has ended.
	if !sdktest.WaitGone(pid, 10*time.Second) {
		t.Fatal("a killed child is still alive")
	}
	_ = cmd.Wait()
	if sdktest.Alive(pid) {
		t.Fatal("a reaped child is alive")
	}
}
