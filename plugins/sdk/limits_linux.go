package sdk

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// setParentDeathSignal makes the kernel SIGKILL the process when the thread that starts it ends (see
// Starter).
func setParentDeathSignal(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}

// limitMemory has the kernel refuse the process private writable memory (RLIMIT_DATA) beyond limit
// bytes, soft and hard, so the plugin cannot raise it again. RLIMIT_AS would not do: a Go program
// reserves far more address space than it uses (1.7 GB for the test plugin at rest), while its data
// limit tracks the memory it has mapped for use (128 MB at rest, 445 MB holding 300 MB).
func limitMemory(pid int, limit int64) error {
	l := uint64(limit)
	if err := unix.Prlimit(pid, unix.RLIMIT_DATA, &unix.Rlimit{Cur: l, Max: l}, nil); err != nil {
		return fmt.Errorf("set the memory limit of process %d: %w", pid, err)
	}
	return nil
}

// residentMemory is the process's resident set size in bytes (VmRSS of /proc/PID/status).
func residentMemory(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := bytes.CutPrefix(sc.Bytes(), []byte("VmRSS:")); ok {
			f := bytes.Fields(v)
			if len(f) == 0 {
				break
			}
			kb, err := strconv.ParseInt(string(f[0]), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("VmRSS of process %d: %w", pid, err)
			}
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("process %d: no VmRSS in /proc (a zombie?)", pid)
}
