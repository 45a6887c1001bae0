package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"gopkg.in/yaml.v3"

	"github.com/crispy-enigma/crispy/platform/exposition"
	"github.com/crispy-enigma/crispy/test/internal/serveproc"
)

// The operator's view of a real server (issue 15 items 1-3): after chat (with a provider that fails
// and a fallback), search and a tool call, GET /metrics passes `promtool check metrics`, has HELP
// and TYPE for every family and le buckets for every latency; every metric the Grafana dashboards
// and the Prometheus rules query is one the server exports; and every log line of a request carries
// its requestId and tenant, the provider failure included.
func TestOperatorSeesStandardMetricsDashboardsAndFollowableLogs(t *testing.T) {
	// An OpenAI-compatible upstream that is down: acme's chat model fails and falls back.
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, `{"error":{"message":"overloaded","type":"server_error"}}`, http.StatusServiceUnavailable)
	}))
	defer down.Close()
	dir := t.TempDir()
	tenants := filepath.Join(dir, "tenants.yaml")
	if err := os.WriteFile(tenants, []byte(`tenants:
  - id: acme
    apiKeys: ["sha256:`+sha("ce_acme_key")+`"]
    models: {chat: "openai:gpt-4o-mini", fallbacks: ["builtin:offline"]}
  - id: beta
    apiKeys: ["sha256:`+sha("ce_beta_key")+`"]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	metricsAddr := freeAddr(t)
	env := append(os.Environ(), "CRISPY_LOG_LEVEL=info", "CRISPY_OPENAI_BASE_URL="+down.URL, "CRISPY_OPENAI_API_KEY=sk-test")
	args := []string{"serve", "--addr", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "data"), "--plugins-dir", bin.plugins,
		"--tenants", tenants, "--metrics-addr", metricsAddr}
	srv := &server{serveproc.Start(t, "crispy serve", bin.crispy, args, env, 60*time.Second)}
	t.Cleanup(func() { srv.Stop() })

	call := func(tenantID, key, method, path string, body any) (int, http.Header, []byte) {
		t.Helper()
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
		req, _ := http.NewRequestWithContext(ctx(t), method, srv.BaseURL+path, rd)
		req.Header.Set("content-type", "application/json")
		req.Header.Set("x-tenant-id", tenantID)
		req.Header.Set("x-api-key", key)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, res.Header, b
	}
	code, hdr, body := call("acme", "ce_acme_key", "POST", "/chat", map[string]any{"sessionId": uuid.NewString(), "message": "hello", "stream": false})
	if code != 200 {
		t.Fatalf("chat: %d %s", code, body)
	}
	chatID := hdr.Get("x-request-id")
	if code, _, body := call("acme", "ce_acme_key", "POST", "/ingest", map[string]any{"docId": "handbook", "text": "Refunds are issued within 14 days."}); code != 200 {
		t.Fatalf("ingest: %d %s", code, body)
	}
	if code, _, body := call("acme", "ce_acme_key", "POST", "/search", map[string]any{"query": "refunds", "answer": false}); code != 200 {
		t.Fatalf("search: %d %s", code, body)
	}
	if code, _, body := call("acme", "ce_acme_key", "POST", "/search", map[string]any{"query": "refunds", "answer": false}); code != 200 {
		t.Fatalf("search again (a cache hit): %d %s", code, body)
	}
	if code, _, body := call("beta", "ce_beta_key", "POST", "/tools/execute", map[string]any{"tool_name": "summarize", "params": map[string]any{"text": "One. Two."}}); code != 200 {
		t.Fatalf("tool: %d %s", code, body)
	}
	call("beta", "ce_wrong", "GET", "/sessions", nil) // a refusal, for the error panels

	// Tokens and cost are counted by a bus processor, a moment after the call: scrape until they show.
	var exp []byte
	var res *http.Response
	for deadline := time.Now().Add(30 * time.Second); ; {
		var err error
		if res, err = http.Get("http://" + metricsAddr + "/metrics"); err != nil {
			t.Fatal(err)
		}
		exp, _ = io.ReadAll(res.Body)
		res.Body.Close()
		if bytes.Contains(exp, []byte("crispy_ai_tokens_total{")) || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if res.StatusCode != 200 || res.Header.Get("content-type") != exposition.ContentType {
		t.Fatalf("GET /metrics on --metrics-addr: %d %q", res.StatusCode, res.Header.Get("content-type"))
	}

	t.Run("exposition", func(t *testing.T) {
		fams, err := exposition.Parse(exp)
		if err != nil {
			t.Fatal(err)
		}
		var undocumented []string
		for name, f := range fams {
			if strings.HasPrefix(name, "crispy_") && !exposition.Documented(name) {
				undocumented = append(undocumented, name)
			}
			if strings.HasPrefix(name, "crispy_") && strings.HasSuffix(name, "_seconds") && f.Type != "histogram" {
				t.Errorf("latency %s is a %s, want an le-bucket histogram", name, f.Type)
			}
		}
		if len(undocumented) > 0 {
			sort.Strings(undocumented)
			t.Errorf("families missing from platform/exposition's catalog (HELP says 'Undocumented'): %v", undocumented)
		}
		if bytes.Contains(exp, []byte("vmrange")) {
			t.Errorf("a histogram still has vmrange buckets (histogram_quantile cannot read them): %s", grepLines(exp, "vmrange", 3))
		}
		// Every latency the issue names is an le histogram once traffic has passed.
		for _, name := range []string{
			"crispy_http_request_duration_seconds", "crispy_ai_upstream_duration_seconds", "crispy_chat_ttft_seconds",
			"crispy_eventstore_append_call_seconds", "crispy_tool_execution_duration_seconds", "crispy_retrieval_search_duration_seconds",
		} {
			if f := fams[name]; f == nil || f.Type != "histogram" || !f.Series[name+"_bucket"] {
				t.Errorf("%s: %+v, want a histogram with _bucket series", name, f)
			}
		}
		// The failed upstream attempt is counted with its model.
		if !bytes.Contains(exp, []byte(`crispy_ai_attempts_total{model="openai:gpt-4o-mini",outcome="unavailable"}`)) {
			t.Errorf("no failed attempt of openai:gpt-4o-mini counted: %s", grepLines(exp, "crispy_ai_attempts_total", 5))
		}
	})

	t.Run("promtool", func(t *testing.T) {
		promtool, err := exec.LookPath("promtool")
		if err != nil {
			t.Skip("promtool not installed (apt-get install -y prometheus); the format check needs it")
		}
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = bytes.NewReader(exp)
		if out, err := cmd.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
			t.Errorf("promtool check metrics: %v\n%s", err, out)
		}
		if out, err := exec.Command(promtool, "check", "config", "../../deploy/prometheus/prometheus.yml").CombinedOutput(); err != nil {
			t.Errorf("promtool check config: %v\n%s", err, out)
		}
		rules, _ := filepath.Glob("../../deploy/prometheus/*.rules.yml")
		for _, r := range rules {
			if out, err := exec.Command(promtool, "check", "rules", r).CombinedOutput(); err != nil {
				t.Errorf("promtool check rules %s: %v\n%s", r, err, out)
			}
		}
	})

	t.Run("dashboards and rules query exported metrics", func(t *testing.T) {
		fams, err := exposition.Parse(exp)
		if err != nil {
			t.Fatal(err)
		}
		exported := map[string]bool{}
		for _, f := range fams {
			for s := range f.Series {
				exported[s] = true
			}
		}
		queries := dashboardQueries(t)
		rules := ruleQueries(t)
		if len(queries) == 0 || len(rules) == 0 {
			t.Fatalf("found %d dashboard and %d rule queries under deploy/; want some of each", len(queries), len(rules))
		}
		for where, q := range merge(queries, rules) {
			names := metricNames(q)
			if len(names) == 0 && !strings.HasPrefix(q, "up{") { // up is Prometheus' own
				t.Errorf("%s: %q names no crispy metric", where, q)
			}
			for _, n := range names {
				if !exported[n] {
					t.Errorf("%s queries %s, which the server does not export (query %q)", where, n, q)
				}
			}
		}
	})

	t.Run("logs", func(t *testing.T) {
		lines := srv.Logs.Matching(chatID)
		if chatID == "" || len(lines) < 2 {
			t.Fatalf("chat request %q left %d log lines, want the failed attempt and the access line:\n%s", chatID, len(lines), srv.Logs)
		}
		var warned bool
		for _, l := range lines {
			var m map[string]any
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				t.Fatalf("not a JSON line: %s", l)
			}
			if m["requestId"] != chatID || m["tenant"] != "acme" {
				t.Errorf("line of acme's chat without its requestId or tenant: %s", l)
			}
			if m["level"] == "WARN" && m["msg"] == "model attempt failed" && m["model"] == "openai:gpt-4o-mini" {
				warned = true
			}
		}
		if !warned {
			t.Errorf("the failed upstream attempt left no WARN line with the request id:\n%s", strings.Join(lines, "\n"))
		}
		// Every access line carries a request id; a tenant's carries its tenant.
		for _, l := range srv.Logs.Matching(`"msg":"request"`) {
			var m map[string]any
			_ = json.Unmarshal([]byte(l), &m)
			if m["requestId"] == nil || m["requestId"] == "" {
				t.Errorf("access line without requestId: %s", l)
			}
		}
	})
}

// freeAddr is a loopback address nothing listens on (picked by the kernel, then released).
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func grepLines(b []byte, s string, n int) string {
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, s) && len(out) < n {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// dashboardQueries are the PromQL expressions of every panel target in deploy/grafana/*.json,
// keyed by "file: panel title".
func dashboardQueries(t *testing.T) map[string]string {
	t.Helper()
	files, _ := filepath.Glob("../../deploy/grafana/dashboards/*.json")
	out := map[string]string{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			Panels []struct {
				Title   string `json:"title"`
				Targets []struct {
					Expr string `json:"expr"`
				} `json:"targets"`
			} `json:"panels"`
			Templating struct {
				List []struct {
					Name  string `json:"name"`
					Query any    `json:"query"`
				} `json:"list"`
			} `json:"templating"`
		}
		if err := json.Unmarshal(raw, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, p := range d.Panels {
			for i, tg := range p.Targets {
				if tg.Expr != "" {
					out[fmt.Sprintf("%s: %s #%d", filepath.Base(f), p.Title, i)] = tg.Expr
				}
			}
		}
		for _, v := range d.Templating.List {
			if q, ok := v.Query.(string); ok && strings.Contains(q, "crispy_") {
				out[fmt.Sprintf("%s: variable %s", filepath.Base(f), v.Name)] = q
			}
		}
	}
	return out
}

// ruleQueries are the expressions of deploy/prometheus/*.rules.yml.
func ruleQueries(t *testing.T) map[string]string {
	t.Helper()
	files, _ := filepath.Glob("../../deploy/prometheus/*.rules.yml")
	out := map[string]string{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Groups []struct {
				Rules []struct {
					Alert, Record, Expr string
				} `yaml:"rules"`
			} `yaml:"groups"`
		}
		if err := yaml.Unmarshal(raw, &doc); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, g := range doc.Groups {
			for _, r := range g.Rules {
				out[filepath.Base(f)+": "+r.Alert+r.Record] = r.Expr
			}
		}
	}
	return out
}

func merge(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

var metricName = regexp.MustCompile(`\b(crispy|go|process)_[a-zA-Z0-9_]+`)

// metricNames are the metric names a PromQL expression selects (label names and values never
// start with crispy_ in these dashboards; recording-rule names are not used).
func metricNames(q string) []string {
	return metricName.FindAllString(q, -1)
}
