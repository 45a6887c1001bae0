// Package replicas runs two real crispy serve processes on one PostgreSQL event store, one NATS
// JetStream bus and one Redis (each with a data folder of its own), and checks that they agree, as a
// deployment of several replicas behind a load balancer must (issue 11, item 7).
//
// The tests need CRISPY_POSTGRES_URL, CRISPY_NATS_URL and CRISPY_REDIS_URL (.ci/run starts the three
// servers and sets them); without them they skip and say which is missing. Each test works in a
// PostgreSQL schema and a JetStream stream (--bus-prefix) of its own, both dropped after it, and a
// tenant id of its own in Redis.
package replicas

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/platform/auditlog"
	"github.com/crispy-enigma/crispy/platform/bus/bustest"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/postgres"
	"github.com/crispy-enigma/crispy/platform/eventstore/postgres/pgtest"
	keyspostgres "github.com/crispy-enigma/crispy/platform/keystore/postgres"
	"github.com/crispy-enigma/crispy/platform/sealing"
	"github.com/crispy-enigma/crispy/platform/tenant"
	"github.com/crispy-enigma/crispy/test/internal/serveproc"
)

// services are the variables the tests need, each naming a server every replica shares.
var services = []string{"CRISPY_POSTGRES_URL", "CRISPY_NATS_URL", "CRISPY_REDIS_URL"}

func missingServices() []string {
	var missing []string
	for _, v := range services {
		if os.Getenv(v) == "" {
			missing = append(missing, v)
		}
	}
	return missing
}

// crispyBin is the binary built once for the whole run (only when the services are configured: the
// tests skip otherwise).
var crispyBin string

func TestMain(m *testing.M) {
	os.Exit(func() int {
		if len(missingServices()) > 0 {
			return m.Run() // every test skips, saying why
		}
		dir, err := os.MkdirTemp("", "crispy-replicas-")
		if err != nil {
			fmt.Println(err)
			return 1
		}
		defer os.RemoveAll(dir)
		crispyBin = filepath.Join(dir, "crispy")
		cmd := exec.Command("go", "build", "-o", crispyBin, "./cmd/crispy")
		cmd.Dir = "../.."
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Printf("go build ./cmd/crispy: %v\n%s", err, out)
			return 1
		}
		return m.Run()
	}())
}

// deployment is what the replicas of one test share: a PostgreSQL schema, a JetStream stream, a
// Redis, a tenants file. store is the test's own connection to the event store, to seed and count
// events.
type deployment struct {
	t          *testing.T
	eventStore string // --eventstore
	natsURL    string
	redisURL   string
	prefix     string // --bus-prefix
	tenant     tenant.ID
	other      tenant.ID // a second tenant, for isolation checks
	tenants    string    // the tenants file
	store      *postgres.Store
	opened     eventstore.Store // store with sealed content opened by the deployment's keys
	extraArgs  []string
	keyDir     string // holds the audit signing key every replica shares
	extraEnv   []string
}

func randHex(t testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// newDeployment skips the test, naming what is missing, unless the three servers are configured.
// tenantYAML adds fields to the main tenant's entry (indented as its other fields).
func newDeployment(t *testing.T, tenantYAML string) *deployment {
	t.Helper()
	if missing := missingServices(); len(missing) > 0 {
		t.Skipf("replica integration test skipped: set %s (.ci/run starts PostgreSQL, NATS with JetStream and Redis on 127.0.0.1 and sets all three)",
			strings.Join(missing, ", "))
	}
	pgURL := pgtest.URL(t)
	d := &deployment{t: t, redisURL: os.Getenv("CRISPY_REDIS_URL"), keyDir: t.TempDir()}
	// The operator provisions the audit signing key the replicas share: some tests write to the
	// store before the first replica starts, and a start refuses a store with events and no key.
	if _, err := auditlog.CreateKey(filepath.Join(d.keyDir, "audit-signing.key")); err != nil {
		t.Fatal(err)
	}
	d.natsURL, d.prefix = bustest.NATS(t, "replicas")
	d.eventStore = pgtest.WithSchema(t, pgURL, pgtest.Schema(t, pgURL))
	id := randHex(t, 4)
	d.tenant, d.other = tenant.MustParse("rep-"+id), tenant.MustParse("rep-"+id+"-other")
	d.tenants = filepath.Join(t.TempDir(), "tenants.yaml")
	yaml := "tenants:\n  - id: " + d.tenant.String() + "\n    rateLimit: {perMinute: 1000000, burst: 100000, tenantPerMinute: 1000000}\n" + tenantYAML +
		"  - id: " + d.other.String() + "\n"
	if err := os.WriteFile(d.tenants, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := postgres.Open(ctx, postgres.Config{URL: d.eventStore}, postgres.Options{})
	if err != nil {
		t.Fatalf("open the PostgreSQL event store: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	d.store = s
	// Sessions and documents are sealed: the test reads them as a replica does, with the keys the
	// replicas share (the data_keys table of the store's schema).
	keys, err := keyspostgres.Open(ctx, d.eventStore, s.Schema(), nil)
	if err != nil {
		t.Fatalf("open the key store: %v", err)
	}
	t.Cleanup(func() { keys.Close() })
	d.opened = sealing.NewStore(s, sealing.New(keys))
	return d
}

// replica is one running crispy serve process.
type replica struct {
	*serveproc.Process
	t       *testing.T
	name    string
	dataDir string
}

// start runs a replica on dataDir (a new folder when empty) and waits until it listens. It is
// stopped with SIGTERM when the test ends, unless the test stops or kills it first.
func (d *deployment) start(name, dataDir string, extra ...string) *replica {
	t := d.t
	t.Helper()
	if dataDir == "" {
		dataDir = t.TempDir()
	}
	args := []string{"serve", "--addr", "127.0.0.1:0", "--data-dir", dataDir, "--plugins-dir", filepath.Join(dataDir, "no-plugins"),
		"--eventstore", d.eventStore, "--bus", d.natsURL, "--bus-prefix", d.prefix, "--redis", d.redisURL, "--tenants", d.tenants,
		"--shutdown-timeout", "5s",
		// Replicas sharing a store share its audit signing key: the first start creates it, the
		// others would refuse a store with events and no key.
		"--audit-key", filepath.Join(d.keyDir, "audit-signing.key")}
	args = append(append(args, d.extraArgs...), extra...)
	env := append(append(os.Environ(), "CRISPY_LOG_LEVEL=info", "CRISPY_WEBHOOK_SECRET=replicas"), d.extraEnv...)
	r := &replica{Process: serveproc.Start(t, "replica "+name, crispyBin, args, env, 90*time.Second), t: t, name: name, dataDir: dataDir}
	t.Cleanup(func() {
		if err := r.Stop(); err != nil && !t.Failed() {
			t.Errorf("replica %s stopped with %v\n%s", name, err, r.Logs)
		}
		if t.Failed() {
			t.Logf("replica %s log, warnings and errors:\n%s", name, strings.Join(append(r.Logs.Matching(`"level":"WARN"`), r.Logs.Matching(`"level":"ERROR"`)...), "\n"))
		}
	})
	return r
}

// answer is one HTTP response.
type answer struct {
	status int
	body   map[string]any
	raw    string
	header http.Header
	err    error // transport error (status 0)
}

var client = &http.Client{Timeout: 30 * time.Second}

// call sends a JSON request for tenant t.
func (r *replica) call(t tenant.ID, method, path string, body any) answer {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			r.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, r.BaseURL+path, rd)
	if err != nil {
		r.t.Fatal(err)
	}
	req.Header.Set("x-tenant-id", t.String())
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{err: err}
	}
	a := answer{status: resp.StatusCode, raw: string(raw), header: resp.Header}
	_ = json.Unmarshal(raw, &a.body)
	return a
}

// must fails the test unless the answer has status want.
func (a answer) must(t *testing.T, what string, want int) answer {
	t.Helper()
	if a.err != nil || a.status != want {
		t.Fatalf("%s: %v %d %s, want %d", what, a.err, a.status, a.raw, want)
	}
	return a
}

// chat takes one non-streaming chat turn.
func (r *replica) chat(t tenant.ID, session, message string) answer {
	return r.call(t, "POST", "/chat", map[string]any{"sessionId": session, "message": message, "stream": false})
}

// history is the session's messages as role:content, or nil with the status when it is not 200.
func (r *replica) history(t tenant.ID, session string) ([]string, answer) {
	a := r.call(t, "GET", "/chat/"+session+"/history", nil)
	if a.status != 200 {
		return nil, a
	}
	var out []string
	msgs, _ := a.body["messages"].([]any)
	for _, m := range msgs {
		mm, _ := m.(map[string]any)
		out = append(out, fmt.Sprint(mm["role"], ":", mm["content"]))
	}
	return out, a
}

// sessionCount is the session's messageCount in the tenant's session list (-1: not listed).
func (r *replica) sessionCount(t tenant.ID, session string) (int, answer) {
	a := r.call(t, "GET", "/sessions?limit=100", nil)
	if a.status != 200 {
		return -1, a
	}
	list, _ := a.body["sessions"].([]any)
	for _, s := range list {
		m, _ := s.(map[string]any)
		if m["sessionId"] == session {
			n, _ := m["messageCount"].(float64)
			return int(n), a
		}
	}
	return -1, a
}

// usageRequests is the tenant's request count in /usage over the last hour.
func (r *replica) usageRequests(t tenant.ID) (int, answer) {
	a := r.call(t, "GET", "/usage?period=1h", nil)
	if a.status != 200 {
		return -1, a
	}
	n, _ := a.body["requests"].(float64)
	return int(n), a
}

// search runs a sources-only search and returns the texts of the sources of document docID (every
// document when docID is empty) and whether the answer came from the cache.
func (r *replica) search(t tenant.ID, query, docID string) (texts []string, cached bool, a answer) {
	body := map[string]any{"query": query, "topK": 5, "answer": false}
	if docID != "" {
		body["filter"] = map[string]any{"docId": docID}
	}
	a = r.call(t, "POST", "/search", body)
	if a.status != 200 {
		return nil, false, a
	}
	cached, _ = a.body["cached"].(bool)
	srcs, _ := a.body["sources"].([]any)
	for _, s := range srcs {
		m, _ := s.(map[string]any)
		if docID == "" || m["docId"] == docID {
			texts = append(texts, fmt.Sprint(m["text"]))
		}
	}
	return texts, cached, a
}

// waitSearchReady waits until the replica's index answers the tenant's searches (a new replica's
// index may answer 503 catching_up for a moment).
func (r *replica) waitSearchReady(t tenant.ID) {
	r.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, _, a := r.search(t, "warm up", "")
		if a.status == 200 {
			return
		}
		if a.status != 503 || time.Now().After(deadline) {
			r.t.Fatalf("replica %s: search never ready: %v %d %s", r.name, a.err, a.status, a.raw)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// requirement is the bound for what one replica wrote to show on the other.
const requirement = time.Second

// patience bounds every wait for something that must happen eventually: past the requirement, the
// test keeps looking this long so that a failure reports how late it came (or that it never did).
const patience = 15 * time.Second

// until polls cond every 5 ms from start until it holds or patience has passed, and returns how
// long after start it first held (ok false: never).
func until(start time.Time, cond func() bool) (time.Duration, bool) {
	for {
		if cond() {
			return time.Since(start), true
		}
		if time.Since(start) > patience {
			return time.Since(start), false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// lags are measured delays, reported and held to the requirement.
type lags struct {
	what string
	d    []time.Duration
}

func (l *lags) add(d time.Duration) { l.d = append(l.d, d) }

// check logs the delays and fails the test for each above the requirement.
func (l *lags) check(t *testing.T) {
	t.Helper()
	if len(l.d) == 0 {
		return
	}
	s := append([]time.Duration(nil), l.d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	t.Logf("%s: %d measured, min %s, median %s, max %s (requirement %s)", l.what, len(s),
		s[0].Round(time.Millisecond), s[len(s)/2].Round(time.Millisecond), s[len(s)-1].Round(time.Millisecond), requirement)
	if late := s[len(s)-1]; late > requirement {
		t.Errorf("%s: the slowest took %s, over the %s the issue requires", l.what, late.Round(time.Millisecond), requirement)
	}
}

// events reads every readable event of the tenant from the store.
func (d *deployment) events(t tenant.ID) []eventstore.Event {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []eventstore.Event
	from := eventstore.Position(0)
	for {
		evs, err := d.opened.ReadTenant(ctx, t, from, 1000)
		if err != nil {
			d.t.Fatalf("read %s's events: %v", t, err)
		}
		out = append(out, evs...)
		if len(evs) < 1000 {
			return out
		}
		from = evs[len(evs)-1].Position + 1
	}
}

// field decodes one top-level string field of an event's data.
func field(e eventstore.Event, name string) string {
	var m map[string]any
	if e.Decode(&m) != nil {
		return ""
	}
	s, _ := m[name].(string)
	return s
}
