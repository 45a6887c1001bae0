package main

import (
	"context"
	"fmt"
	"runtime/debug"
	"strings"

	"github.com/VictoriaMetrics/metrics"
)

// buildInfo is what the binary knows of its own build: the module version ("(devel)" for a build
// from a work tree, a tag for `go install …@vX`) and the VCS stamp `go build` records.
type buildInfo struct {
	Module, Revision, Time, Go string
	Modified                   bool
}

func readBuildInfo() buildInfo {
	b := buildInfo{Module: "(unknown)", Revision: "unknown"}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	b.Go = bi.GoVersion
	if bi.Main.Version != "" {
		b.Module = bi.Main.Version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Revision = s.Value
		case "vcs.time":
			b.Time = s.Value
		case "vcs.modified":
			b.Modified = s.Value == "true"
		}
	}
	return b
}

// String is the one line `crispy version` prints.
func (b buildInfo) String() string {
	rev := b.Revision
	if b.Modified {
		rev += "+modified"
	}
	var s strings.Builder
	fmt.Fprintf(&s, "crispy %s commit %s", b.Module, rev)
	if b.Time != "" {
		fmt.Fprintf(&s, " (%s)", b.Time)
	}
	fmt.Fprintf(&s, " %s api %s", b.Go, version)
	return s.String()
}

// registerBuildInfo exposes crispy_build_info{version,revision} 1, so a dashboard can tell which
// build each replica runs.
func registerBuildInfo(set *metrics.Set) {
	b := readBuildInfo()
	rev := b.Revision
	if b.Modified {
		rev += "+modified"
	}
	set.GetOrCreateGauge(fmt.Sprintf(`crispy_build_info{version=%q,revision=%q,goversion=%q}`, b.Module, rev, b.Go), func() float64 { return 1 })
}

func cmdVersion(_ context.Context, args []string, io stdio, _ lookupEnv) error {
	if len(args) > 0 {
		if isHelp(args[0]) {
			fmt.Fprint(io.out, "Usage: crispy version\n\nPrints the module version, the VCS commit the binary was built from (+modified when the\nwork tree had changes), the commit time, the Go version and the HTTP API version.\n")
			return nil
		}
		return usageError("crispy version takes no arguments, got %q", args[0])
	}
	fmt.Fprintln(io.out, readBuildInfo().String())
	return nil
}

func isHelp(a string) bool { return a == "-h" || a == "--help" || a == "-help" || a == "help" }

// groupUsage is the usage's lines for a command that only groups others (audit, plugin), so
// `crispy audit --help` lists them instead of calling --help an unknown sub-command; "" for a
// command that parses its own flags (its flag set prints their help).
func groupUsage(cmd string) string {
	switch cmd {
	case "audit", "plugin":
	default:
		return ""
	}
	var out []string
	in := false
	for _, l := range strings.Split(usage, "\n") {
		switch {
		case strings.HasPrefix(l, "  crispy "+cmd+" "):
			in = true
			out = append(out, l)
		case in && strings.HasPrefix(l, "    "):
			out = append(out, l) // a wrapped description
		default:
			in = false
		}
	}
	return "Usage:\n" + strings.Join(out, "\n") + "\n\nRun 'crispy " + cmd + " COMMAND -h' for a command's flags.\n"
}
