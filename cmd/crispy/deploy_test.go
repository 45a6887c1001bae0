package main

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/crispy-enigma/crispy/modules/tenancy"
)

// serveFlagNames are the flags `crispy serve --help` lists.
func serveFlagNames(t *testing.T) map[string]bool {
	t.Helper()
	var out, errb bytes.Buffer
	_ = run(context.Background(), []string{"serve", "--help"}, stdio{in: strings.NewReader(""), out: &out, err: &errb}, envOf(nil))
	names := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^  -([a-z0-9-]+)`).FindAllStringSubmatch(out.String()+errb.String(), -1) {
		names[m[1]] = true
	}
	if len(names) < 20 {
		t.Fatalf("serve --help listed %d flags:\n%s%s", len(names), out.String(), errb.String())
	}
	return names
}

// crispyEnvNames are the CRISPY_* variables the server reads: one per serve flag, and those
// config.go reads with get("CRISPY_…") (provider keys and the like, which have no flag).
func crispyEnvNames(t *testing.T, flags map[string]bool) map[string]bool {
	t.Helper()
	env := map[string]bool{}
	for f := range flags {
		env["CRISPY_"+strings.ToUpper(strings.ReplaceAll(f, "-", "_"))] = true
	}
	src, err := os.ReadFile("config.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`get\("(CRISPY_[A-Z0-9_]+)"\)`).FindAllStringSubmatch(string(src), -1) {
		env[m[1]] = true
	}
	return env
}

// flagsOf returns the --flag names of a serve command line (["serve", "--a=1", "--b", "2"]).
func flagsOf(args []string) []string {
	var out []string
	for _, a := range args {
		if strings.HasPrefix(a, "-") {
			name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
			out = append(out, name)
		}
	}
	return out
}

// Every crispy flag and CRISPY_ variable the deploy files use exists (a renamed flag would
// otherwise stop the compose replicas or the systemd unit at start); compose has the services
// the issue names; the example tenants file is valid (issue 15 item 7).
func TestDeployFiles(t *testing.T) {
	flags := serveFlagNames(t)
	env := crispyEnvNames(t, flags)
	check := func(where string, args []string, vars []string) {
		t.Helper()
		if len(args) == 0 || args[0] != "serve" {
			t.Errorf("%s: command %q does not start with serve", where, args)
			return
		}
		for _, f := range flagsOf(args[1:]) {
			if !flags[f] {
				t.Errorf("%s uses --%s, which crispy serve does not have", where, f)
			}
		}
		for _, v := range vars {
			if strings.HasPrefix(v, "CRISPY_") && !env[v] {
				t.Errorf("%s sets %s, which crispy does not read", where, v)
			}
		}
	}

	raw, err := os.ReadFile("../../deploy/compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var compose struct {
		Services map[string]struct {
			Image       string            `yaml:"image"`
			Build       any               `yaml:"build"`
			Command     []string          `yaml:"command"`
			Environment map[string]string `yaml:"environment"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(raw, &compose); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	var replicas []string
	for name, s := range compose.Services {
		if s.Build == nil && s.Image != "crispy:local" {
			continue
		}
		replicas = append(replicas, name)
		var vars []string
		for k := range s.Environment {
			vars = append(vars, k)
		}
		check("compose.yaml service "+name, s.Command, vars)
	}
	sort.Strings(replicas)
	if len(replicas) < 2 {
		t.Errorf("compose.yaml runs crispy replicas %v, want two", replicas)
	}
	for _, svc := range []string{"kurrentdb", "postgres", "elasticsearch", "nats", "redis", "prometheus", "grafana"} {
		if _, ok := compose.Services[svc]; !ok {
			t.Errorf("compose.yaml has no %s service", svc)
		}
	}
	prom, err := os.ReadFile("../../deploy/prometheus/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range replicas {
		if !bytes.Contains(prom, []byte(`"`+r+`:9464"`)) {
			t.Errorf("prometheus.yml does not scrape %s:9464 (its --metrics-addr)", r)
		}
	}

	unit, err := os.ReadFile("../../deploy/systemd/crispy.service")
	if err != nil {
		t.Fatal(err)
	}
	var exec []string
	var unitVars []string
	sc := bufio.NewScanner(bytes.NewReader(unit))
	for sc.Scan() {
		l := sc.Text()
		if v, ok := strings.CutPrefix(l, "ExecStart="); ok {
			exec = strings.Fields(v)
		}
		if v, ok := strings.CutPrefix(l, "Environment="); ok {
			name, _, _ := strings.Cut(strings.Trim(v, `"`), "=")
			unitVars = append(unitVars, name)
		}
	}
	if len(exec) < 2 || !strings.HasSuffix(exec[0], "/crispy") {
		t.Fatalf("crispy.service ExecStart = %q", exec)
	}
	check("crispy.service ExecStart", exec[1:], unitVars)

	docker, err := os.ReadFile("../../deploy/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`\b(CRISPY_[A-Z0-9_]+)=`).FindAllStringSubmatch(string(docker), -1) {
		if !env[m[1]] {
			t.Errorf("Dockerfile sets %s, which crispy does not read", m[1])
		}
	}
	for _, want := range []string{"CGO_ENABLED=0", "USER 65532", "distroless/static", "./plugins/summarize"} {
		if !bytes.Contains(docker, []byte(want)) {
			t.Errorf("Dockerfile lacks %q (static binary, non-root, distroless, plugins)", want)
		}
	}

	if err := tenancy.ValidateTenantsFile("../../deploy/tenants.example.yaml"); err != nil {
		t.Errorf("deploy/tenants.example.yaml: %v", err)
	}
}
