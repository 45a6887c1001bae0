package main

import (
	"context"
	"fmt"
	"sort"

	"github.com/crispy-enigma/crispy/modules/tooling"
	"github.com/crispy-enigma/crispy/plugins/sdk/sdktest"
)

func cmdPlugin(ctx context.Context, args []string, io stdio, env lookupEnv) error {
	if len(args) == 0 {
		return exitError{code: 2, msg: "usage: crispy plugin check BINARY | crispy plugin lock DIR"}
	}
	switch args[0] {
	case "check":
		f := newFlags("plugin check", env, io.err)
		timeout := f.fs.Duration("call-timeout", 0, "bound each call (default: the tool's own timeout, at most 30s)")
		if err := f.parse(args[1:]); err != nil {
			return err
		}
		if f.fs.NArg() != 1 {
			return exitError{code: 2, msg: "usage: crispy plugin check BINARY"}
		}
		rep := sdktest.Run(ctx, f.fs.Arg(0), sdktest.Options{CallTimeout: *timeout})
		rep.Write(io.out)
		if !rep.OK() {
			return exitError{code: 1, msg: fmt.Sprintf("%s does not pass the conformance kit", f.fs.Arg(0))}
		}
		return nil
	case "lock":
		if len(args) != 2 {
			return exitError{code: 2, msg: "usage: crispy plugin lock DIR"}
		}
		lock, err := tooling.WriteLock(args[1])
		if err != nil {
			return fmt.Errorf("plugin lock %s: %w", args[1], err)
		}
		names := make([]string, 0, len(lock))
		for n := range lock {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			fmt.Fprintf(io.out, "%x  %s\n", lock[n], n)
		}
		fmt.Fprintf(io.out, "wrote %d checksums to %s/%s\n", len(lock), args[1], tooling.LockFileName)
		return nil
	}
	return exitError{code: 2, msg: fmt.Sprintf("unknown plugin command %q: want check or lock", args[0])}
}
