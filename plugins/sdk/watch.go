package sdk

import (
	"context"
	"strconv"
	"time"
)

// hostPIDEnv carries the host's process id to the plugin. The host sets it at launch, so a plugin that
// finds itself already re-parented when its watch begins knows its host is gone.
const hostPIDEnv = "CRISPY_PLUGIN_HOST_PID"

// parentPollInterval is how often a plugin checks that its host is still there: a getppid system call,
// so cheap enough to make an orphan's life short.
const parentPollInterval = 250 * time.Millisecond

// hostPID is the host's process id as the host named it at launch (0: not named, as by an older host
// or anything else that runs the plugin).
func hostPID(getenv func(string) string) int {
	if n, err := strconv.Atoi(getenv(hostPIDEnv)); err == nil && n > 0 {
		return n
	}
	return 0
}

// watchParent calls gone once the process's parent is no longer the one it started with, and returns
// then (or when ctx ends). When a parent dies its children are re-parented (to init or a subreaper), so
// getppid changing is the portable sign the host is gone, whatever killed it: this is the plugin's own
// guarantee against orphans, for hosts on systems without a parent-death signal and for hosts that
// could not set one.
//
// The parent watched is the one the plugin starts with, not host: a wrapper script that runs the plugin
// as its child (without exec) is the parent then, and dies with the host (its parent-death signal).
// host, the host's pid (0: unknown), only tells a plugin whose host was gone before the watch began: it
// starts as a child of init, which the host is not (a host that is pid 1, in a container, is the parent).
func watchParent(ctx context.Context, host int, every time.Duration, getppid func() int, gone func(parent int)) {
	parent := getppid()
	if host > 0 && host != 1 && parent == 1 {
		gone(host)
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if getppid() != parent {
			gone(parent)
			return
		}
	}
}
