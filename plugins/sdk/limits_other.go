//go:build !linux

package sdk

import (
	"errors"
	"os/exec"
)

var errNoMemoryLimits = errors.New("memory limits of plugin processes need Linux")

// setParentDeathSignal: there is none here; the SDK's parent watch ends orphaned plugins.
func setParentDeathSignal(*exec.Cmd) {}

// limitMemory: without prlimit the host relies on the SDK's soft limit only.
func limitMemory(int, int64) error { return nil }

func residentMemory(int) (int64, error) { return 0, errNoMemoryLimits }
