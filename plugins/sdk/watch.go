package sdk

import (
	"context"
	"strconv"
	"time"
)

// hostPIDEnv carries the host's process id to the plugin. The host sets it at launch; the plugin
// watches that its parent is still that process.
const hostPIDEnv = "CRISPY_PLUGIN_HOST_PID"

// parentPollInterval is how often a plugin checks that its host is still there: a getppid system call,
// so cheap enough to make an orphan's life short.
const parentPollInterval = 250 * time.Millisecond

// hostPID is the process the plugin must outlive no longer than a poll: the one the host named, or,
// launched by something else, the parent it started with.
func hostPID(getenv func(string) string, getppid func() int) int {
	if n, err := strconv.Atoi(getenv(hostPIDEnv)); err == nil && n > 0 {
		return n
	}
	return getppid()
}

// watchParent calls gone(pid) once the process's parent is no longer pid, and returns then (or when
// ctx ends). When a parent dies its children are re-parented (to init or a subreaper), so getppid
// changing is the portable sign the host is gone, whatever killed it: this is the plugin's own
// guarantee against orphans, for hosts on systems without a parent-death signal and for hosts that
// could not set one. It also ends a plugin whose host was gone before the watch began.
func watchParent(ctx context.Context, pid int, every time.Duration, getppid func() int, gone func(pid int)) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if getppid() != pid {
			gone(pid)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
