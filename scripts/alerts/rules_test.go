// Package alerts_test checks crispy.rules.yml without promtool: the file's structure, each rule's
// fields, balanced expressions, and that every metric a rule names is exported somewhere in the code.
package alerts_test

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

type ruleFile struct {
	Groups []struct {
		Name     string `yaml:"name"`
		Interval string `yaml:"interval"`
		Rules    []rule `yaml:"rules"`
	} `yaml:"groups"`
}

type rule struct {
	Alert       string            `yaml:"alert"`
	Record      string            `yaml:"record"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

var (
	promDuration = regexp.MustCompile(`^([0-9]+(ms|s|m|h|d|w|y))+$`)
	alertName    = regexp.MustCompile(`^[A-Z][A-Za-z0-9]+$`)
	metricRef    = regexp.MustCompile(`\bcrispy_[a-z0-9_]+`)
)

func load(t *testing.T) ruleFile {
	t.Helper()
	b, err := os.ReadFile("crispy.rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	var f ruleFile
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true) // a misspelt key (annotation:, expression:) is an error, as in promtool
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("crispy.rules.yml: %v", err)
	}
	return f
}

func TestRulesStructure(t *testing.T) {
	f := load(t)
	if len(f.Groups) == 0 {
		t.Fatal("no groups")
	}
	groups := map[string]bool{}
	alerts := map[string]bool{}
	for _, g := range f.Groups {
		if g.Name == "" || groups[g.Name] {
			t.Errorf("group name %q empty or repeated", g.Name)
		}
		groups[g.Name] = true
		if g.Interval != "" && !promDuration.MatchString(g.Interval) {
			t.Errorf("group %s: interval %q", g.Name, g.Interval)
		}
		if len(g.Rules) == 0 {
			t.Errorf("group %s has no rules", g.Name)
		}
		for _, r := range g.Rules {
			if r.Record != "" || !alertName.MatchString(r.Alert) {
				t.Errorf("group %s: %q is not an alerting rule with a CamelCase name", g.Name, r.Alert+r.Record)
				continue
			}
			if alerts[r.Alert] {
				t.Errorf("alert %s defined twice", r.Alert)
			}
			alerts[r.Alert] = true
			if strings.TrimSpace(r.Expr) == "" || !balanced(r.Expr) {
				t.Errorf("%s: empty or unbalanced expr %q", r.Alert, r.Expr)
			}
			if r.For != "" && !promDuration.MatchString(r.For) {
				t.Errorf("%s: for %q is not a Prometheus duration", r.Alert, r.For)
			}
			switch r.Labels["severity"] {
			case "critical", "warning", "info":
			default:
				t.Errorf("%s: severity %q", r.Alert, r.Labels["severity"])
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: needs summary and description annotations", r.Alert)
			}
			for k, v := range r.Annotations {
				if strings.Count(v, "{{") != strings.Count(v, "}}") {
					t.Errorf("%s: annotation %s has unbalanced template braces", r.Alert, k)
				}
			}
		}
	}
	// What the operator must be told about (issue 6): error rate, latency, breaker open, bus lag.
	for _, want := range []string{"CrispyHighErrorRate", "CrispyHighLatency", "CrispyModelBreakerOpen", "CrispyBusLag"} {
		if !alerts[want] {
			t.Errorf("missing alert %s", want)
		}
	}
}

func balanced(expr string) bool {
	var stack []rune
	pairs := map[rune]rune{')': '(', ']': '[', '}': '{'}
	inString := false
	for _, c := range expr {
		if c == '"' {
			inString = !inString
			continue
		}
		if inString {
			continue
		}
		switch c {
		case '(', '[', '{':
			stack = append(stack, c)
		case ')', ']', '}':
			if len(stack) == 0 || stack[len(stack)-1] != pairs[c] {
				return false
			}
			stack = stack[:len(stack)-1]
		}
	}
	return len(stack) == 0 && !inString
}

// TestRulesUseExportedMetrics: a rule on a metric nobody exports never fires. Every crispy_* name in
// an expression (less the _sum/_count/_bucket suffixes of histograms) must appear in the Go sources.
func TestRulesUseExportedMetrics(t *testing.T) {
	root := filepath.Join("..", "..")
	exported := map[string]bool{}
	for _, dir := range []string{"modules", "platform"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			for _, m := range metricRef.FindAllString(string(b), -1) {
				exported[m] = true
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, g := range load(t).Groups {
		for _, r := range g.Rules {
			for _, m := range metricRef.FindAllString(r.Expr, -1) {
				base := m
				for _, suf := range []string{"_bucket", "_sum", "_count"} {
					base = strings.TrimSuffix(base, suf)
				}
				if !exported[m] && !exported[base] {
					t.Errorf("%s uses %s, which no Go source exports", r.Alert, m)
				}
			}
		}
	}
}

// TestPromtool runs promtool when it is installed.
func TestPromtool(t *testing.T) {
	path, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool is not installed: the structure tests above stand in for it")
	}
	cmd := exec.Command(path, "check", "rules", "crispy.rules.yml")
	cmd.WaitDelay = 10 * time.Second
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool: %v\n%s", err, out)
	}
}
