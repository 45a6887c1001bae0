package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/crispy-enigma/crispy/modules/tooling"
	"github.com/crispy-enigma/crispy/plugins/sdk/sdktest"
)

func cmdPlugin(ctx context.Context, args []string, io stdio, env lookupEnv) error {
	if len(args) == 0 {
		return usageError("usage: crispy plugin check BINARY | crispy plugin lock DIR")
	}
	switch args[0] {
	case "check":
		f := newFlags("plugin check", env, io.err)
		timeout := f.fs.Duration("call-timeout", 0, "bound each call (default: the tool's own timeout, at most 30s)")
		if err := f.parse(args[1:]); err != nil {
			return err
		}
		if f.fs.NArg() != 1 {
			return usageError("usage: crispy plugin check BINARY")
		}
		if err := checkPluginBinary(f.fs.Arg(0)); err != nil {
			return err
		}
		rep := sdktest.Run(ctx, f.fs.Arg(0), sdktest.Options{CallTimeout: *timeout})
		rep.Write(io.out)
		if !rep.OK() {
			return exitError{code: 1, msg: fmt.Sprintf("%s does not pass the conformance kit (%s); the report above lists every check", f.fs.Arg(0), firstFailure(rep))}
		}
		return nil
	case "lock":
		f := newFlags("plugin lock", env, io.err)
		if err := f.parse(args[1:]); err != nil {
			return err
		}
		if f.fs.NArg() != 1 {
			return usageError("usage: crispy plugin lock DIR")
		}
		dir := f.fs.Arg(0)
		if fi, err := os.Stat(dir); err != nil {
			return fmt.Errorf("plugin lock: %w; pass the folder of plugin binaries", err)
		} else if !fi.IsDir() {
			return fmt.Errorf("plugin lock: %s is not a folder; pass the folder of plugin binaries", dir)
		}
		lock, err := tooling.WriteLock(dir)
		if err != nil {
			if why, ok := unusableFolder(dir, err); ok {
				return fmt.Errorf("plugin lock: cannot write %s in %s: %s", tooling.LockFileName, dir, why)
			}
			return fmt.Errorf("plugin lock %s: %w", dir, err)
		}
		names := make([]string, 0, len(lock))
		for n := range lock {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			fmt.Fprintf(io.out, "%x  %s\n", lock[n], n)
		}
		fmt.Fprintf(io.out, "wrote %d checksums to %s\n", len(lock), filepath.Join(dir, tooling.LockFileName))
		return nil
	}
	return usageError("unknown plugin command %q: want check or lock", args[0])
}

// checkPluginBinary says plainly what is wrong with a path that cannot be a plugin, before the kit
// tries to launch it.
func checkPluginBinary(path string) error {
	fi, err := os.Stat(path)
	switch {
	case err != nil:
		return fmt.Errorf("plugin check: %w; pass the path of a plugin binary (go build -o bin/plugins/ ./plugins/...)", err)
	case fi.IsDir():
		return fmt.Errorf("plugin check: %s is a folder; pass the path of a plugin binary in it", path)
	case fi.Mode()&0o111 == 0:
		return fmt.Errorf("plugin check: %s is not executable; chmod +x it, or pass the plugin binary", path)
	}
	return nil
}

// firstFailure names the first failed check of rep and why, in one short line.
func firstFailure(rep sdktest.Report) string {
	failed := 0
	first := ""
	for _, c := range rep.Checks {
		if !c.Passed {
			failed++
			if first == "" {
				first = c.Name + ": " + oneLine(c.Detail)
			}
		}
	}
	if first == "" {
		return "no check ran"
	}
	if r := []rune(first); len(r) > 200 {
		first = string(r[:200]) + "…"
	}
	return fmt.Sprintf("%d of %d checks failed, first %s", failed, len(rep.Checks), first)
}
