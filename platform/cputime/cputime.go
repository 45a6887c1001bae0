// Package cputime reads the CPU time this process has used, for the benchmarks and scripts that
// report a rate per CPU-second beside a rate per wall second: on a machine shared with other work
// the wall rate says what the code got of the machine, the CPU rate what it cost.
package cputime

import (
	"syscall"
	"time"
)

// Used is the process's user + system CPU time so far (0 if the system does not say).
func Used() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
