package main

import (
	"bytes"
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"
)

// commandsOfUsage are the command paths the usage lists ("serve", "audit prove", "tenant key new"):
// the leading lower-case words of each "  crispy …" line.
func commandsOfUsage() [][]string {
	seen := map[string]bool{}
	var out [][]string
	word := regexp.MustCompile(`^[a-z][a-z-]*$`)
	for _, l := range strings.Split(usage, "\n") {
		if !strings.HasPrefix(l, "  crispy ") {
			continue
		}
		var path []string
		cmdPart := regexp.MustCompile(`\s{2,}`).Split(strings.TrimSpace(l), 2)[0] // before the description
		for _, w := range strings.Fields(cmdPart)[1:] {
			if !word.MatchString(w) {
				break
			}
			path = append(path, w)
		}
		if k := strings.Join(path, " "); len(path) > 0 && !seen[k] {
			seen[k] = true
			out = append(out, path)
		}
	}
	return out
}

// Every command the usage lists, and every group of commands, answers --help with its usage and
// exit 0 (issue 15 item 7: `crispy audit --help` used to be "unknown audit command").
func TestEveryCommandAnswersHelp(t *testing.T) {
	cmds := commandsOfUsage()
	if len(cmds) < 15 {
		t.Fatalf("found %d commands in the usage, want the whole list: %v", len(cmds), cmds)
	}
	groups := map[string]bool{}
	for _, c := range cmds {
		if len(c) > 1 {
			groups[c[0]] = true
		}
	}
	for g := range groups {
		cmds = append(cmds, []string{g})
	}
	for _, c := range cmds {
		for _, h := range []string{"--help", "-h"} {
			args := append(append([]string(nil), c...), h)
			var out, errb bytes.Buffer
			err := run(context.Background(), args, stdio{in: strings.NewReader(""), out: &out, err: &errb}, envOf(nil))
			var ex exitError
			if err != nil && !(errors.As(err, &ex) && ex.code == 0) {
				t.Errorf("crispy %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, out.String(), errb.String())
				continue
			}
			if got := out.String() + errb.String(); !strings.Contains(got, "Usage") {
				t.Errorf("crispy %s printed no usage: %q", strings.Join(args, " "), got)
			}
		}
	}
}

func TestVersionNamesTheModuleVersionAndCommit(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"version"}, stdio{out: &out, err: &out}, envOf(nil)); err != nil {
		t.Fatal(err)
	}
	// A test binary has no VCS stamp, so the commit reads "unknown"; the binary built by go build
	// -buildvcs=true (the Dockerfile) names it.
	if !regexp.MustCompile(`^crispy \S+ commit \S+( \(\S+\))? go1\.\S+ api \S+\n$`).MatchString(out.String()) {
		t.Fatalf("crispy version = %q", out.String())
	}
	b := buildInfo{Module: "v1.2.3", Revision: "abc123", Time: "2026-11-29T15:00:00Z", Go: "go1.26", Modified: true}
	if got := b.String(); got != "crispy v1.2.3 commit abc123+modified (2026-11-29T15:00:00Z) go1.26 api "+version {
		t.Fatalf("String() = %q", got)
	}
	var again bytes.Buffer
	if err := run(context.Background(), []string{"version", "extra"}, stdio{out: &again, err: &again}, envOf(nil)); err == nil {
		t.Fatal("crispy version extra: want a usage error")
	}
}
