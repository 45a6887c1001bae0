// Package arch checks the import rules of DESIGN.md §6: modules talk to each other only through their
// events packages, events packages use only the standard library, the platform imports no module, and
// plugins (what vendors copy) import no module either.
package arch

import (
	"bytes"
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const mod = "github.com/crispy-enigma/crispy/"

type pkg struct {
	ImportPath string
	Imports    []string
	Standard   bool
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-e", "-json", mod+"...")
	cmd.Dir = "../.."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 10 {
		t.Fatalf("go list found only %d packages; the test is not looking at the tree", len(pkgs))
	}
	return pkgs
}

// moduleOf returns the module name of a package path under modules/, or "".
func moduleOf(path string) string {
	rest, ok := strings.CutPrefix(path, mod+"modules/")
	if !ok {
		return ""
	}
	name, _, _ := strings.Cut(rest, "/")
	return name
}

func isEvents(path string) bool {
	m := moduleOf(path)
	return m != "" && path == mod+"modules/"+m+"/events"
}

// violations applies the rules to one package's imports.
func violations(p pkg, std func(string) bool) []string {
	var out []string
	from := p.ImportPath
	for _, imp := range p.Imports {
		target := moduleOf(imp)
		switch {
		case isEvents(from) && !std(imp):
			out = append(out, from+" imports "+imp+": an events package may use only the standard library")
		case strings.HasPrefix(from, mod+"platform/") && target != "":
			out = append(out, from+" imports "+imp+": the platform imports no module")
		case strings.HasPrefix(from, mod+"plugins/") && target != "":
			out = append(out, from+" imports "+imp+": plugins import no module")
		case moduleOf(from) != "" && target != "" && target != moduleOf(from) && !isEvents(imp):
			out = append(out, from+" imports "+imp+": modules meet only through events packages and ports")
		}
	}
	return out
}

func TestImportRules(t *testing.T) {
	t.Parallel()
	pkgs := listPackages(t)
	std := func(path string) bool {
		first, _, _ := strings.Cut(path, "/")
		return !strings.Contains(first, ".")
	}
	for _, p := range pkgs {
		for _, v := range violations(p, std) {
			t.Error(v)
		}
	}
}

// TestRulesCatchViolations keeps the rules honest: each forbidden import is reported.
func TestRulesCatchViolations(t *testing.T) {
	t.Parallel()
	std := func(path string) bool { return !strings.Contains(path, ".") }
	cases := []struct {
		p    pkg
		want bool
	}{
		{pkg{ImportPath: mod + "modules/conversation/internal/app", Imports: []string{mod + "modules/tooling/internal/app"}}, true},
		{pkg{ImportPath: mod + "modules/conversation", Imports: []string{mod + "modules/tooling"}}, true},
		{pkg{ImportPath: mod + "modules/conversation", Imports: []string{mod + "modules/tenancy/events"}}, false},
		{pkg{ImportPath: mod + "modules/conversation/internal/app", Imports: []string{mod + "modules/conversation/internal/domain"}}, false},
		{pkg{ImportPath: mod + "modules/tooling/events", Imports: []string{"github.com/google/uuid"}}, true},
		{pkg{ImportPath: mod + "modules/tooling/events", Imports: []string{"time"}}, false},
		{pkg{ImportPath: mod + "platform/bus", Imports: []string{mod + "modules/tenancy/events"}}, true},
		{pkg{ImportPath: mod + "plugins/summarize", Imports: []string{mod + "modules/tooling"}}, true},
		{pkg{ImportPath: mod + "cmd/crispy", Imports: []string{mod + "modules/tooling", mod + "modules/tenancy"}}, false},
	}
	for _, c := range cases {
		if got := len(violations(c.p, std)) > 0; got != c.want {
			t.Errorf("%s importing %v: violation = %v, want %v", c.p.ImportPath, c.p.Imports, got, c.want)
		}
	}
}
