package sdktest

import (
	"bytes"
	"fmt"
	"os"
	"time"
)

// Alive reports whether pid is a live process, for tests that check a plugin process ended: a zombie
// waiting for its reaper counts as ended. It reads /proc (Linux); elsewhere no process counts as alive.
func Alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) state …: comm may hold spaces and parentheses, so the state follows the last ')'.
	f := bytes.Fields(b[bytes.LastIndexByte(b, ')')+1:])
	return len(f) > 0 && f[0][0] != 'Z' && f[0][0] != 'X'
}

// WaitGone waits up to within for pid to end and reports whether it did.
func WaitGone(pid int, within time.Duration) bool {
	deadline := time.Now().Add(within)
	for Alive(pid) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}
