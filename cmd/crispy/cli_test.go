package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/platform/readmodel"
)

// These tests run the real binary, as an operator would, against broken environments: every failure
// must be a non-zero exit whose stderr ends in ONE plain-text line "crispy: …" that names the cause
// and what to do. Commands log (JSON lines on stderr: serve at info, the operator commands at warn),
// so lines before the last one are accepted only when each is a JSON log record, or a progress line
// of a command that got as far as doing its work ("ingest [1/3] a.txt"); anything else (a second
// plain line, a usage dump, a stack trace) fails. No output may mention "panic" or carry a
// goroutine dump, and no case may hang: a connection to an engine that is down must give up on its
// own (the generous wait below only turns a hang into a failure; it asserts no speed).
//
// CRISPY_TEST_BINARY runs the table against a binary built elsewhere (how the before figures of
// issue 10 were measured); by default the package is built once.

var cliBinary struct {
	once sync.Once
	path string
	err  error
}

func crispyBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("CRISPY_TEST_BINARY"); p != "" {
		return p
	}
	cliBinary.once.Do(func() {
		dir, err := os.MkdirTemp("", "crispy-cli-")
		if err != nil {
			cliBinary.err = err
			return
		}
		cliBinary.path = filepath.Join(dir, "crispy")
		out, err := exec.Command("go", "build", "-o", cliBinary.path, ".").CombinedOutput()
		if err != nil {
			cliBinary.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if cliBinary.err != nil {
		t.Fatal(cliBinary.err)
	}
	return cliBinary.path
}

// result is one run of the binary.
type result struct {
	code           int
	stdout, stderr string
	hung           bool
}

// hangAfter is how long a command may take before the test calls it hung. It is far above any
// expected time (a refused connection fails in well under a second), so a loaded machine never
// trips it; it only stops a hang from blocking the suite.
const hangAfter = 90 * time.Second

func runCrispy(t *testing.T, dir string, env []string, args ...string) result {
	t.Helper()
	return runCrispyWithin(t, hangAfter, dir, env, args...)
}

func runCrispyWithin(t *testing.T, limit time.Duration, dir string, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, crispyBinary(t), args...)
	cmd.Dir = dir
	cmd.Env = append(cleanEnv(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		r.hung, r.code = true, -1
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("run crispy %v: %v", args, err)
	}
	return r
}

// cleanEnv is the test's environment without CRISPY_* variables, so a developer's settings cannot
// change what a case sees.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CRISPY_") {
			env = append(env, kv)
		}
	}
	return env
}

// problems lists what is wrong with r for a case that must fail with a line containing want.
func (r result) problems(wantCode int, want []string) []string {
	var p []string
	if r.hung {
		return []string{"hung: still running when the test gave up on it"}
	}
	all := r.stdout + r.stderr
	if strings.Contains(strings.ToLower(all), "panic") || strings.Contains(all, "goroutine ") {
		p = append(p, "panicked")
	}
	switch {
	case wantCode == 0 && r.code != 0:
		p = append(p, fmt.Sprintf("exit code %d, want 0", r.code))
	case wantCode == 0:
		return p
	case wantCode > 0 && r.code != wantCode:
		p = append(p, fmt.Sprintf("exit code %d, want %d", r.code, wantCode))
	case r.code == 0:
		p = append(p, "exit code 0, want a failure")
	}
	var lines []string
	for _, l := range strings.Split(r.stderr, "\n") {
		if strings.TrimSpace(l) != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) == 0 {
		return append(p, "nothing on stderr")
	}
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, "crispy: ") {
		p = append(p, "the last line of stderr is not a plain 'crispy: …' line")
	}
	for _, w := range want {
		if !strings.Contains(last, w) {
			p = append(p, fmt.Sprintf("the last line does not say %q", w))
		}
	}
	plain := 0
	for _, l := range lines[:len(lines)-1] {
		var m map[string]any
		if progressLine.MatchString(l) {
			continue
		}
		if json.Unmarshal([]byte(l), &m) != nil || m["level"] == nil {
			plain++
		}
	}
	if plain > 0 {
		p = append(p, fmt.Sprintf("%d more non-log lines before the last one", plain))
	}
	return p
}

// progressLine is how ingest and reindex report each file when stderr is not a terminal.
var progressLine = regexp.MustCompile(`^(ingest|reindex) \[\d+/\d+\] `)

// fixture is the shared state the cases use: a seeded data folder to copy, a server holding a
// data folder's lock, a port nothing listens on.
type fixture struct {
	root      string // a folder with doc.txt, and the seeded data folder "seeded"
	lockedDir string // a data folder a running crispy serve holds
	serverPID int
	stopLock  func()
}

// seed makes a data folder with the demo tenant's document in it: events, index snapshot and all.
func seed(t *testing.T, root string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(root, "doc.txt"), []byte("Refunds are issued within 14 days of a return.\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := runCrispy(t, root, nil, "ingest", "--tenant", "demo", "--data-dir", "seeded", "doc.txt")
	if r.code != 0 {
		t.Fatalf("seed: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// copyDir copies the seeded data folder to dst (cp -a keeps it simple and exact).
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	if out, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
}

// startLockHolder runs crispy serve on dir and waits until it listens: it then holds the data
// folder's lock, as a running server does.
func startLockHolder(t *testing.T, root, dir string) (pid int, stop func()) {
	t.Helper()
	cmd := exec.Command(crispyBinary(t), "serve", "--addr", "127.0.0.1:0", "--data-dir", dir, "--plugins-dir", filepath.Join(root, "no-plugins"))
	cmd.Dir = root
	cmd.Env = cleanEnv()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	listening := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		once := sync.Once{}
		for sc.Scan() {
			if strings.Contains(sc.Text(), `"msg":"listening"`) {
				once.Do(func() { close(listening) })
			}
		}
	}()
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-listening:
	case <-done:
		t.Fatal("the lock-holding server exited before listening")
	case <-time.After(hangAfter):
		_ = cmd.Process.Kill()
		t.Fatal("the lock-holding server did not listen")
	}
	return cmd.Process.Pid, func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(hangAfter):
			_ = cmd.Process.Kill()
			<-done
		}
	}
}

// corruptLog flips a byte inside the first record of dir's event log: a valid record follows, so
// it is corruption, not a torn tail.
func corruptLog(t *testing.T, dir string) {
	t.Helper()
	p := filepath.Join(dir, "events", "events.log")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 100 {
		t.Fatalf("the seeded log is only %d bytes", len(b))
	}
	b[20] ^= 0xff
	if err := os.WriteFile(p, b, 0o640); err != nil {
		t.Fatal(err)
	}
}

// replaceWithFile puts a regular file where the folder p should be: unusable even for root.
func replaceWithFile(t *testing.T, p string) {
	t.Helper()
	if err := os.RemoveAll(p); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("not a folder\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// mountReadOnly mounts an empty read-only tmpfs on p (a folder no process may write, root
// included); the case is skipped where mounting is not allowed.
func mountReadOnly(t *testing.T, p string) {
	t.Helper()
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", p, "tmpfs", syscall.MS_RDONLY, "size=1m"); err != nil {
		t.Skipf("cannot mount a read-only tmpfs here (%v)", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(p, syscall.MNT_DETACH) })
}

// closedPort is an address on which nothing listens: connections are refused at once.
const closedPort = "127.0.0.1:1"

// silentEngine listens on a free port and accepts connections but never answers, as a hung server
// or a black-holing proxy does. Start-up must give up on it by itself (crispy bounds each connect
// at 10 s); the cases using it get a 45 s hang detector instead of the default, which is still far
// above that bound on a loaded machine but below what an unbounded client retry took (EventStoreDB's
// discovery: 50 s).
func silentEngine(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

const silentHang = 45 * time.Second

// cliCase is one command line against one broken environment.
type cliCase struct {
	name  string
	args  []string // {data} is the case's data folder, {root} the shared root, {pid} the lock holder's pid
	env   []string
	setup func(t *testing.T, f *fixture, data string) // data is the case's own data folder (absent unless setup makes it)
	// code is the exit code: 0 success, >0 exactly that, -1 any failure.
	code int
	want []string // substrings of the last line
	// hangAfter, when set, is a tighter hang detector than the default for the case (see
	// silentEngine).
	hangAfter time.Duration
}

// seeded gives the case a copy of the seeded data folder.
func seeded(t *testing.T, f *fixture, data string) { copyDir(t, filepath.Join(f.root, "seeded"), data) }

func cliCases() []cliCase {
	corrupt := func(t *testing.T, f *fixture, data string) { seeded(t, f, data); corruptLog(t, data) }
	indexIsFile := func(t *testing.T, f *fixture, data string) {
		seeded(t, f, data)
		replaceWithFile(t, filepath.Join(data, "index"))
	}
	indexReadOnly := func(t *testing.T, f *fixture, data string) {
		seeded(t, f, data)
		if err := os.RemoveAll(filepath.Join(data, "index")); err != nil {
			t.Fatal(err)
		}
		mountReadOnly(t, filepath.Join(data, "index"))
	}
	dataIsFile := func(t *testing.T, f *fixture, data string) { replaceWithFile(t, data) }
	dataReadOnly := func(t *testing.T, f *fixture, data string) { mountReadOnly(t, data) }
	badSnapshot := func(t *testing.T, f *fixture, data string) {
		seeded(t, f, data)
		if err := os.MkdirAll(filepath.Join(data, "index", "demo.ix"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(data, "index", "demo.ix", "MANIFEST"), []byte("garbage"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tornTail := func(t *testing.T, f *fixture, data string) {
		seeded(t, f, data)
		fh, err := os.OpenFile(filepath.Join(data, "events", "events.log"), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = fh.Write([]byte{0x40, 0, 0, 0, 1, 2})
		fh.Close()
	}
	notPlugin := func(t *testing.T, f *fixture, data string) {
		if err := os.WriteFile(filepath.Join(f.root, "plain.txt"), []byte("hello"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// A FIFO no one writes to: reading it blocks forever.
	fifo := func(t *testing.T, f *fixture, data string) {
		if err := syscall.Mkfifo(data+".txt", 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fifoInFolder := func(t *testing.T, f *fixture, data string) {
		if err := os.MkdirAll(data+"-docs", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Mkfifo(filepath.Join(data+"-docs", "pipe.md"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	binaryFile := func(t *testing.T, f *fixture, data string) {
		if err := os.WriteFile(data+".txt", []byte{0xff, 0xfe, 0, 1, 2}, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	esdbDown := "esdb://" + closedPort + "?tls=false"
	pgDown := "postgres://crispy:secret@" + closedPort + "/crispy?sslmode=disable"
	serve := func(extra ...string) []string {
		return append([]string{"serve", "--addr", "127.0.0.1:0", "--data-dir", "{data}", "--plugins-dir", "{root}/no-plugins"}, extra...)
	}
	const stopOrCopy = "stop the server or point --data-dir at a copy"

	return []cliCase{
		// The README's own command lines: flags after the paths, and before.
		{name: "ingest/flags after paths", args: []string{"ingest", "{root}/doc.txt", "--tenant", "demo", "--data-dir", "{data}"}, setup: seeded, code: 0},
		{name: "ingest/flags before paths", args: []string{"ingest", "--tenant", "demo", "--data-dir", "{data}", "{root}/doc.txt"}, code: 0},
		{name: "ingest/flags around paths", args: []string{"ingest", "--data-dir", "{data}", "{root}/doc.txt", "--tenant", "demo"}, code: 0},
		{name: "ingest/a FIFO", args: []string{"ingest", "{data}.txt", "--tenant", "demo", "--data-dir", "{data}"}, setup: fifo, code: 1, want: []string{"not a regular file"}},
		{name: "ingest/a folder with a FIFO", args: []string{"ingest", "{root}/doc.txt", "{data}-docs", "--tenant", "demo", "--data-dir", "{data}"}, setup: fifoInFolder, code: 0},
		{name: "ingest/a file that is not text", args: []string{"ingest", "{data}.txt", "--tenant", "demo", "--data-dir", "{data}"}, setup: binaryFile, code: 1, want: []string{".txt could not be ingested", "not UTF-8"}},
		{name: "ingest/no paths", args: []string{"ingest", "--tenant", "demo", "--data-dir", "{data}"}, code: 2, want: []string{"PATH"}},
		{name: "ingest/missing path", args: []string{"ingest", "{root}/nowhere.txt", "--tenant", "demo", "--data-dir", "{data}"}, code: 1, want: []string{"nowhere.txt"}},

		// Usage errors: one line, exit 2.
		{name: "usage/no command", args: nil, code: 2, want: []string{"crispy help"}},
		{name: "usage/unknown command", args: []string{"frobnicate"}, code: 2, want: []string{"frobnicate", "crispy help"}},
		{name: "usage/serve bad flag", args: []string{"serve", "--bogus"}, code: 2, want: []string{"-bogus", "crispy serve -h"}},
		{name: "usage/ingest bad flag after path", args: []string{"ingest", "a.txt", "--bogus"}, code: 2, want: []string{"-bogus"}},
		{name: "usage/flag without value", args: []string{"ingest", "a.txt", "--tenant"}, code: 2, want: []string{"-tenant"}},
		{name: "usage/replay bad time", args: []string{"replay", "--tenant", "demo", "--from", "yesterday"}, code: 2, want: []string{"RFC 3339"}},
		{name: "usage/verify without tenant", args: []string{"verify"}, code: 2, want: []string{"--tenant"}},
		{name: "usage/replay extra argument", args: []string{"replay", "extra", "--tenant", "demo"}, code: 2, want: []string{"extra"}},
		{name: "usage/openapi extra argument", args: []string{"openapi", "extra"}, code: 2, want: []string{"extra"}},
		{name: "usage/plugin without command", args: []string{"plugin"}, code: 2, want: []string{"plugin check"}},
		{name: "usage/plugin unknown command", args: []string{"plugin", "frob"}, code: 2, want: []string{"frob"}},
		{name: "usage/tenant bad id", args: []string{"tenant", "key", "new", "--tenant", "Not Valid"}, code: 2, want: []string{"--tenant"}},
		{name: "usage/tenant key new extra", args: []string{"tenant", "key", "new", "extra", "--tenant", "acme"}, code: 2, want: []string{"extra"}},
		{name: "tenant key new flags first", args: []string{"tenant", "--tenant", "acme", "key", "new"}, code: 0},
		{name: "usage/serve bad env duration", args: serve(), env: []string{"CRISPY_SHUTDOWN_TIMEOUT=soon"}, code: 2, want: []string{"CRISPY_SHUTDOWN_TIMEOUT"}},
		{name: "usage/serve negative memory budget", args: serve("--session-cache-mb", "-1"), code: 2, want: []string{"--session-cache-mb", "not negative"}},
		{name: "usage/serve bad env memory budget", args: serve(), env: []string{"CRISPY_RESUME_BUFFER_MB=64MB"}, code: 2, want: []string{"CRISPY_RESUME_BUFFER_MB", "whole number"}},

		// An unknown tenant.
		{name: "unknown tenant/ingest", args: []string{"ingest", "{root}/doc.txt", "--tenant", "nosuch", "--data-dir", "{data}"}, setup: seeded, code: 1, want: []string{"nosuch", "--tenants"}},
		{name: "unknown tenant/reindex", args: []string{"reindex", "--tenant", "nosuch", "--data-dir", "{data}"}, setup: seeded, code: 1, want: []string{"nosuch", "--tenants"}},
		{name: "unknown tenant/replay", args: []string{"replay", "--tenant", "nosuch", "--data-dir", "{data}"}, setup: seeded, code: 1, want: []string{"nosuch", "--tenant"}},
		{name: "unknown tenant/verify", args: []string{"verify", "--tenant", "nosuch", "--data-dir", "{data}"}, setup: seeded, code: 1, want: []string{"nosuch", "--tenant"}},

		// A missing data folder: the commands that read refuse (and create nothing); ingest starts one.
		{name: "missing data/reindex", args: []string{"reindex", "--tenant", "demo", "--data-dir", "{data}"}, code: 1, want: []string{"no event store", "--data-dir"}},
		{name: "missing data/replay", args: []string{"replay", "--tenant", "demo", "--data-dir", "{data}"}, code: 1, want: []string{"no event store", "--data-dir"}},
		{name: "missing data/verify", args: []string{"verify", "--tenant", "demo", "--data-dir", "{data}"}, code: -1, want: []string{"--data-dir"}},
		{name: "missing data/repair", args: []string{"repair", "--data-dir", "{data}"}, code: 1, want: []string{"no event store", "--data-dir"}},

		// A data folder in use by a running server.
		{name: "locked/serve", args: []string{"serve", "--addr", "127.0.0.1:0", "--data-dir", "{locked}", "--plugins-dir", "{root}/no-plugins"}, code: 1, want: []string{"in use", "pid {pid}", stopOrCopy}},
		{name: "locked/ingest", args: []string{"ingest", "{root}/doc.txt", "--tenant", "demo", "--data-dir", "{locked}"}, code: 1, want: []string{"in use", "pid {pid}", stopOrCopy}},
		{name: "locked/reindex", args: []string{"reindex", "--tenant", "demo", "--data-dir", "{locked}"}, code: 1, want: []string{"in use", "pid {pid}", stopOrCopy}},

		// A corrupt log (a damaged record followed by a valid one).
		{name: "corrupt log/serve", args: serve(), setup: corrupt, code: -1, want: []string{"corrupt", "backup"}},
		{name: "corrupt log/ingest", args: []string{"ingest", "{root}/doc.txt", "--tenant", "demo", "--data-dir", "{data}"}, setup: corrupt, code: -1, want: []string{"corrupt", "backup"}},
		{name: "corrupt log/reindex", args: []string{"reindex", "--tenant", "demo", "--data-dir", "{data}"}, setup: corrupt, code: -1, want: []string{"corrupt", "backup"}},
		{name: "corrupt log/replay", args: []string{"replay", "--tenant", "demo", "--data-dir", "{data}"}, setup: corrupt, code: -1, want: []string{"corrupt", "backup"}},
		{name: "corrupt log/verify", args: []string{"verify", "--tenant", "demo", "--data-dir", "{data}"}, setup: corrupt, code: -1, want: []string{"corrupt", "backup"}},
		// A torn tail (an interrupted last write) is no failure for a writer: it is cut on open.
		{name: "torn tail/ingest", args: []string{"ingest", "{root}/doc.txt", "--tenant", "demo", "--data-dir", "{data}"}, setup: tornTail, code: 0},

		// The data folder or the index folder is unusable.
		{name: "data is a file/serve", args: serve(), setup: dataIsFile, code: 1, want: []string{"--data-dir", "not a folder"}},
		{name: "data is a file/ingest", args: []string{"ingest", "{root}/doc.txt", "--tenant", "demo", "--data-dir", "{data}"}, setup: dataIsFile, code: 1, want: []string{"--data-dir", "not a folder"}},
		{name: "data is a file/replay", args: []string{"replay", "--tenant", "demo", "--data-dir", "{data}"}, setup: dataIsFile, code: 1, want: []string{"--data-dir", "not a folder"}},
		{name: "data is a file/repair", args: []string{"repair", "--data-dir", "{data}"}, setup: dataIsFile, code: 1, want: []string{"--data-dir", "not a folder"}},
		{name: "data read-only/serve", args: serve(), setup: dataReadOnly, code: 1, want: []string{"--data-dir", "read-only"}},
		{name: "data read-only/ingest", args: []string{"ingest", "{root}/doc.txt", "--tenant", "demo", "--data-dir", "{data}"}, setup: dataReadOnly, code: 1, want: []string{"--data-dir", "read-only"}},
		{name: "index is a file/serve", args: serve(), setup: indexIsFile, code: 1, want: []string{"index", "not a folder", "rebuilt"}},
		{name: "index is a file/ingest", args: []string{"ingest", "{root}/doc.txt", "--tenant", "demo", "--data-dir", "{data}"}, setup: indexIsFile, code: 1, want: []string{"index", "not a folder", "rebuilt"}},
		{name: "index is a file/reindex", args: []string{"reindex", "--tenant", "demo", "--data-dir", "{data}"}, setup: indexIsFile, code: 1, want: []string{"index", "not a folder", "rebuilt"}},
		{name: "index read-only/ingest", args: []string{"ingest", "{root}/doc.txt", "--tenant", "demo", "--data-dir", "{data}"}, setup: indexReadOnly, code: 1, want: []string{"index", "read-only"}},
		{name: "index read-only/reindex", args: []string{"reindex", "--tenant", "demo", "--data-dir", "{data}"}, setup: indexReadOnly, code: 1, want: []string{"index", "read-only"}},
		// A corrupt snapshot is set aside and the tenant rebuilt from the log: no failure.
		{name: "corrupt snapshot/reindex", args: []string{"reindex", "--tenant", "demo", "--data-dir", "{data}"}, setup: badSnapshot, code: 0},

		// Bad URLs.
		{name: "bad url/serve eventstore", args: serve("--eventstore", "esdb://%zz"), code: 2, want: []string{"--eventstore"}},
		{name: "bad url/serve search", args: serve("--search", "http://%zz"), code: 2, want: []string{"--search"}},
		{name: "bad url/serve bus", args: serve("--bus", "nats://%zz"), code: 2, want: []string{"--bus"}},
		{name: "bad url/serve redis", args: serve("--redis", "redis://127.0.0.1:abc"), code: 2, want: []string{"--redis"}},
		{name: "bad url/ingest eventstore", args: []string{"ingest", "{root}/doc.txt", "--tenant", "demo", "--data-dir", "{data}", "--eventstore", "esdb://%zz"}, code: 2, want: []string{"--eventstore"}},
		{name: "bad url/replay eventstore", args: []string{"replay", "--tenant", "demo", "--eventstore", "kurrentdb://%zz"}, code: 2, want: []string{"--eventstore"}},
		{name: "bad url/verify eventstore", args: []string{"verify", "--tenant", "demo", "--data-dir", "{data}", "--eventstore", "esdb://%zz"}, code: 2, want: []string{"--eventstore"}},
		{name: "bad url/serve postgres", args: serve("--eventstore", "postgresql://%zz"), code: 2, want: []string{"--eventstore", "not a valid URL", "postgres://"}},
		{name: "bad url/serve postgres schema", args: serve("--eventstore", "postgres://127.0.0.1/crispy?schema=No-Such"), code: 2, want: []string{"--eventstore", "schema"}},
		{name: "bad url/serve postgres not durable", args: serve("--eventstore", "postgres://127.0.0.1/crispy?synchronous_commit=off"), code: 2, want: []string{"--eventstore", "synchronous_commit", "durable"}},
		{name: "bad url/reindex search", args: []string{"reindex", "--tenant", "demo", "--data-dir", "{data}", "--search", "http://%zz"}, setup: seeded, code: 2, want: []string{"--search"}},

		// Engines that are down: a bounded wait, then one line naming the engine and the way out.
		{name: "down/serve eventstoredb", args: serve("--eventstore", esdbDown), code: 1, want: []string{"EventStoreDB", closedPort, "not answering", "--eventstore embedded"}},
		{name: "down/serve elasticsearch", args: serve("--search", "http://"+closedPort), code: 1, want: []string{"Elasticsearch", closedPort, "not answering", "--search embedded"}},
		{name: "down/serve nats", args: serve("--bus", "nats://"+closedPort), code: 1, want: []string{"NATS", closedPort, "not answering", "--bus gochannel"}},
		{name: "down/serve redis", args: serve("--redis", "redis://"+closedPort), code: 1, want: []string{"Redis", closedPort, "not answering", "--redis"}},
		{name: "down/ingest eventstoredb", args: []string{"ingest", "{root}/doc.txt", "--tenant", "demo", "--data-dir", "{data}", "--eventstore", esdbDown}, code: 1, want: []string{"EventStoreDB", "not answering", "--eventstore embedded"}},
		{name: "down/ingest elasticsearch", args: []string{"ingest", "{root}/doc.txt", "--tenant", "demo", "--data-dir", "{data}", "--search", "http://" + closedPort}, setup: seeded, code: 1, want: []string{"Elasticsearch", "not answering", "--search embedded"}},
		{name: "down/reindex elasticsearch", args: []string{"reindex", "--tenant", "demo", "--data-dir", "{data}", "--search", "http://" + closedPort}, setup: seeded, code: 1, want: []string{"Elasticsearch", "not answering"}},
		{name: "down/replay eventstoredb", args: []string{"replay", "--tenant", "demo", "--data-dir", "{data}", "--eventstore", esdbDown}, code: 1, want: []string{"EventStoreDB", "not answering"}},
		{name: "down/serve postgres", args: serve("--eventstore", pgDown), code: 1, want: []string{"PostgreSQL", closedPort, "not answering", "--eventstore embedded"}},
		{name: "down/replay postgres", args: []string{"replay", "--tenant", "demo", "--eventstore", pgDown}, code: 1, want: []string{"PostgreSQL", "not answering"}},
		{name: "down/verify eventstoredb", args: []string{"verify", "--tenant", "demo", "--data-dir", "{data}", "--eventstore", esdbDown}, code: 1, want: []string{"EventStoreDB", "not answering"}},

		// Engines that accept connections and never answer.
		{name: "silent/serve eventstoredb", args: serve("--eventstore", "esdb://{silent}?tls=false"), code: 1, want: []string{"EventStoreDB", "{silent}", "not answering"}, hangAfter: silentHang},
		{name: "silent/serve elasticsearch", args: serve("--search", "http://{silent}"), code: 1, want: []string{"Elasticsearch", "{silent}", "not answering"}, hangAfter: silentHang},
		{name: "silent/serve nats", args: serve("--bus", "nats://{silent}"), code: 1, want: []string{"NATS", "{silent}", "not answering"}, hangAfter: silentHang},
		{name: "silent/serve redis", args: serve("--redis", "redis://{silent}"), code: 1, want: []string{"Redis", "{silent}", "not answering"}, hangAfter: silentHang},
		{name: "silent/serve postgres", args: serve("--eventstore", "postgres://{silent}/crispy?sslmode=disable"), code: 1, want: []string{"PostgreSQL", "{silent}", "not answering"}, hangAfter: silentHang},
		{name: "silent/replay eventstoredb", args: []string{"replay", "--tenant", "demo", "--eventstore", "esdb://{silent}?tls=false"}, code: 1, want: []string{"EventStoreDB", "not answering"}, hangAfter: silentHang},

		// serve's own environment.
		{name: "serve/address in use", args: []string{"serve", "--addr", "{busy}", "--data-dir", "{data}", "--plugins-dir", "{root}/no-plugins"}, code: 1, want: []string{"{busy}", "in use", "--addr"}},
		{name: "serve/missing tenants file", args: serve("--tenants", "{root}/nowhere.yaml"), code: 1, want: []string{"nowhere.yaml"}},
		{name: "ingest/missing tenants file", args: []string{"ingest", "{root}/doc.txt", "--tenant", "demo", "--data-dir", "{data}", "--tenants", "{root}/nowhere.yaml"}, code: 1, want: []string{"nowhere.yaml"}},

		{name: "serve/bus folder is a file", args: serve(), setup: func(t *testing.T, f *fixture, data string) {
			seeded(t, f, data)
			replaceWithFile(t, filepath.Join(data, "bus"))
		}, code: 1, want: []string{"bus", "not a folder", "--data-dir"}},
		{name: "serve/read model folder is a file", args: serve(), setup: func(t *testing.T, f *fixture, data string) {
			seeded(t, f, data)
			replaceWithFile(t, filepath.Join(data, "readmodels"))
		}, code: 1, want: []string{"read models", "not a folder", "--data-dir"}},
		// A store restored from an older backup under read models that reflect more of it.
		{name: "serve/read model ahead of the store", args: serve(), setup: func(t *testing.T, f *fixture, data string) {
			seeded(t, f, data)
			// The projection's own format version (modules/tooling/module.go, 2 since c31fa68): any
			// other version empties the file at start instead of finding it ahead of the store.
			rm, err := readmodel.Open(filepath.Join(data, "readmodels", "tooling.execution-stats.db"), readmodel.Options{Version: 2})
			if err != nil {
				t.Fatal(err)
			}
			defer rm.Close()
			if err := rm.Update(func(tx *readmodel.Tx) error { return tx.SetPosition(1 << 40) }); err != nil {
				t.Fatal(err)
			}
		}, code: 1, want: []string{"tooling.execution-stats", "older backup", "delete " + "{data}/readmodels"}},
		{name: "serve/malformed tenants file", args: serve("--tenants", "{root}/bad.yaml"), setup: func(t *testing.T, f *fixture, data string) {
			if err := os.WriteFile(filepath.Join(f.root, "bad.yaml"), []byte("tenants:\n  - id: Bad Id\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, code: 1, want: []string{"bad.yaml:2", "tenants[0].id"}},
		{name: "serve/tenant model of an unconfigured provider", args: serve("--tenants", "{root}/unconfigured.yaml"), setup: func(t *testing.T, f *fixture, data string) {
			if err := os.WriteFile(filepath.Join(f.root, "unconfigured.yaml"), []byte("tenants:\n  - id: acme\n    models: {chat: \"openai:gpt-4o-mini\"}\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, code: 1, want: []string{"tenant acme", "models.chat openai:gpt-4o-mini", "\"openai\"", "configure openai"}},
		{name: "serve/tenant reranker of an unconfigured provider", args: serve("--tenants", "{root}/rerank.yaml"), setup: func(t *testing.T, f *fixture, data string) {
			if err := os.WriteFile(filepath.Join(f.root, "rerank.yaml"), []byte("tenants:\n  - id: acme\n    models: {rerank: \"workers-ai:@cf/baai/bge-reranker-base\"}\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, code: 1, want: []string{"tenant acme", "models.rerank workers-ai:@cf/baai/bge-reranker-base", "account id", "CRISPY_CF_ACCOUNT_ID"}},
		{name: "serve/bad default rerank model", args: serve(), env: []string{"CRISPY_RERANK_MODEL=bogus"}, code: 1, want: []string{"bogus", "CRISPY_RERANK_MODEL"}},
		{name: "serve/missing price file", args: serve(), env: []string{"CRISPY_PRICES={root}/nowhere.yaml"}, code: 1, want: []string{"nowhere.yaml", "CRISPY_PRICES"}},
		{name: "serve/bad default chat model", args: serve(), env: []string{"CRISPY_DEFAULT_CHAT_MODEL=bogus"}, code: 1, want: []string{"bogus", "CRISPY_DEFAULT_CHAT_MODEL"}},
		{name: "serve/bad OTLP endpoint", args: serve(), env: []string{"OTEL_EXPORTER_OTLP_ENDPOINT=%zz"}, code: 1, want: []string{"OTEL_EXPORTER_OTLP_ENDPOINT"}},
		{name: "ingest/bad default embeddings model", args: []string{"ingest", "{root}/doc.txt", "--tenant", "demo", "--data-dir", "{data}"}, env: []string{"CRISPY_DEFAULT_EMBEDDING_MODEL=bogus"}, code: 1, want: []string{"bogus", "CRISPY_DEFAULT_EMBEDDING_MODEL"}},

		// plugin and openapi.
		{name: "plugin check/missing binary", args: []string{"plugin", "check", "{root}/nowhere", "--call-timeout", "5s"}, code: 1, want: []string{"nowhere"}},
		{name: "plugin check/not a plugin", args: []string{"plugin", "check", "{root}/plain.txt"}, setup: notPlugin, code: 1, want: []string{"plain.txt"}},
		{name: "plugin lock/missing folder", args: []string{"plugin", "lock", "{root}/nowhere"}, code: 1, want: []string{"nowhere"}},
		{name: "plugin lock/a file", args: []string{"plugin", "lock", "{root}/doc.txt"}, code: 1, want: []string{"doc.txt", "not a folder"}},
		{name: "plugin lock/read-only", args: []string{"plugin", "lock", "{data}"}, setup: dataReadOnly, code: 1, want: []string{"read-only"}},
		{name: "openapi/no temporary folder", args: []string{"openapi"}, env: []string{"TMPDIR={root}/nowhere"}, code: 1, want: []string{"TMPDIR"}},
	}
}

func TestCommandsFailWithOneLineNamingTheCauseAndTheFix(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	crispyBinary(t)
	f := &fixture{root: t.TempDir()}
	seed(t, f.root)
	f.lockedDir = filepath.Join(f.root, "locked")
	copyDir(t, filepath.Join(f.root, "seeded"), f.lockedDir)
	pid, stop := startLockHolder(t, f.root, f.lockedDir)
	f.serverPID = pid
	defer stop()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	silent := silentEngine(t)

	var mu sync.Mutex
	var failed []string
	t.Run("cases", func(t *testing.T) {
		for i, c := range cliCases() {
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				data := filepath.Join(f.root, "case"+strconv.Itoa(i))
				if c.setup != nil {
					c.setup(t, f, data)
				}
				rep := strings.NewReplacer("{data}", data, "{root}", f.root, "{locked}", f.lockedDir,
					"{pid}", strconv.Itoa(f.serverPID), "{busy}", busy.Addr().String(), "{silent}", silent)
				args := make([]string, len(c.args))
				for i, a := range c.args {
					args[i] = rep.Replace(a)
				}
				env := make([]string, len(c.env))
				for i, e := range c.env {
					env[i] = rep.Replace(e)
				}
				want := make([]string, len(c.want))
				for i, w := range c.want {
					want[i] = rep.Replace(w)
				}
				limit := hangAfter
				if c.hangAfter > 0 {
					limit = c.hangAfter
				}
				r := runCrispyWithin(t, limit, f.root, env, args...)
				t.Logf("exit %d: %s", r.code, lastLine(r.stderr))
				if p := r.problems(c.code, want); len(p) > 0 {
					mu.Lock()
					failed = append(failed, c.name+": "+strings.Join(p, "; "))
					mu.Unlock()
					t.Errorf("crispy %s\n  %s\nexit %d\nstderr:\n%s\nstdout:\n%s", strings.Join(args, " "), strings.Join(p, "\n  "), r.code, tail(r.stderr, 3000), tail(r.stdout, 1000))
				}
			})
		}
	})
	if len(failed) > 0 {
		t.Logf("%d of %d cases fail:\n%s", len(failed), len(cliCases()), strings.Join(failed, "\n"))
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// TestREADMECommandsWorkAsPrinted runs every command of the README's Commands section in the form
// printed there (placeholders filled in, flags where the README puts them) and wants exit 0. A
// README line without a run here fails the test, so the two cannot drift apart.
func TestREADMECommandsWorkAsPrinted(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	crispyBinary(t)
	root := t.TempDir()
	doc := filepath.Join(root, "doc.txt")
	if err := os.WriteFile(doc, []byte("Refunds are issued within 14 days of a return.\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	plugins := filepath.Join(root, "plugins")
	if out, err := exec.Command("go", "build", "-o", plugins+"/", "../../plugins/summarize").CombinedOutput(); err != nil {
		t.Fatalf("build a plugin: %v\n%s", err, out)
	}
	data := filepath.Join(root, "data")

	// In README order; every command runs in root, where ./data is the data folder's default.
	runs := []struct {
		readme string // the README line's command, up to its first placeholder
		args   []string
	}{
		{"crispy ingest", []string{"ingest", doc, "--tenant", "demo"}},
		{"crispy ingest", []string{"ingest", root, "--tenant", "demo"}}, // a folder; the unchanged file is skipped
		{"crispy reindex", []string{"reindex", "--tenant", "demo"}},
		{"crispy replay", []string{"replay", "--tenant", "demo"}},
		{"crispy replay", []string{"replay", "--tenant", "demo", "--from", "2000-01-01T00:00:00Z", "--until", "2100-01-01T00:00:00Z", "--stream", "tenant", "--out", filepath.Join(root, "out.jsonl")}},
		{"crispy verify", []string{"verify", "--tenant", "demo"}},
		{"crispy repair", []string{"repair"}},
		{"crispy repair", []string{"repair", "--dry-run"}},
		{"crispy plugin check", []string{"plugin", "check", filepath.Join(plugins, "summarize")}},
		{"crispy plugin lock", []string{"plugin", "lock", plugins}},
		{"crispy openapi", []string{"openapi"}},
		{"crispy openapi", []string{"openapi", "--json"}},
		{"crispy tenant key new", []string{"tenant", "key", "new", "--tenant", "demo"}},
		{"crispy admin key new", []string{"admin", "key", "new"}},
		{"crispy version", []string{"version"}},
		{"crispy audit public-key", []string{"audit", "public-key"}},
		{"crispy audit public-key", []string{"audit", "public-key", "--pem"}},
		{"crispy audit checkpoint", []string{"audit", "checkpoint", "--tenant", "demo"}},
	}
	// crispy serve is run below, as a server; crispy audit prove needs a proof from a server's
	// GET /audit/events/{id}/proof: TestMissingAuditKeyRefusesToStartUnlessANewOneIsAskedFor runs it.
	// crispy tenant apply needs a running server with an admin key: TestSighupAndTenantApplyRecordTheTenantsFile runs it.
	covered := map[string]bool{"crispy serve": true, "crispy audit prove": true, "crispy tenant apply": true}
	for _, r := range runs {
		covered[r.readme] = true
		res := runCrispy(t, root, nil, r.args...)
		if p := res.problems(0, nil); len(p) > 0 {
			t.Errorf("crispy %s: %s\nstderr:\n%s\nstdout:\n%s", strings.Join(r.args, " "), strings.Join(p, "; "), tail(res.stderr, 2000), tail(res.stdout, 1000))
		}
	}
	if _, err := os.Stat(filepath.Join(data, "events")); err != nil {
		t.Errorf("the commands did not use ./data as the data folder: %v", err)
	}
	// crispy serve [flags]: listens, and stops cleanly on SIGTERM (the lock holder's helper).
	_, stop := startLockHolder(t, root, data)
	stop()

	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	section := string(readme)
	if i := strings.Index(section, "\n## Commands"); i >= 0 {
		section = section[i:]
	} else {
		t.Fatal("README.md has no Commands section")
	}
	if i := strings.Index(section[1:], "\n## "); i >= 0 {
		section = section[:i+1]
	}
	lines := 0
	for _, l := range strings.Split(section, "\n") {
		if !strings.HasPrefix(l, "crispy ") {
			continue
		}
		lines++
		// The command is the words before the first placeholder, flag or option.
		var words []string
		for _, w := range strings.Fields(l) {
			if strings.ToLower(w) != w || strings.HasPrefix(w, "-") || strings.HasPrefix(w, "[") {
				break
			}
			words = append(words, w)
		}
		if cmd := strings.Join(words, " "); !covered[cmd] {
			t.Errorf("README command %q (line %q) is not run by this test", cmd, l)
		}
	}
	if lines < 8 {
		t.Errorf("found only %d commands in the README's Commands section", lines)
	}
}

func TestAPanicOnTheMainGoroutineBecomesAnError(t *testing.T) {
	t.Parallel()
	err := recovered(func() error {
		var m map[string]int
		m["x"]++ // a nil map write: a runtime panic
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "internal error") || strings.Contains(oneLine(err.Error()), "\n") {
		t.Fatalf("err = %v", err)
	}
	if err := recovered(func() error { return nil }); err != nil {
		t.Fatalf("err = %v", err)
	}
}

func TestParseAcceptsFlagsAnywhere(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"a.txt", "b.md", "--tenant", "acme"},
		{"--tenant", "acme", "a.txt", "b.md"},
		{"a.txt", "--tenant=acme", "b.md"},
		{"--tenant", "acme", "--", "a.txt", "b.md"},
	} {
		f := newFlags("ingest", envOf(nil), &bytes.Buffer{})
		var id string
		f.fs.StringVar(&id, "tenant", "", "")
		if err := f.parse(args); err != nil {
			t.Fatalf("%q: %v", args, err)
		}
		if id != "acme" || strings.Join(f.fs.Args(), " ") != "a.txt b.md" {
			t.Errorf("%q: tenant %q, paths %q", args, id, f.fs.Args())
		}
	}
	// After "--", what looks like a flag is a path.
	f := newFlags("ingest", envOf(nil), &bytes.Buffer{})
	var id string
	f.fs.StringVar(&id, "tenant", "", "")
	if err := f.parse([]string{"--tenant", "acme", "--", "--odd-name.txt"}); err != nil || f.fs.Arg(0) != "--odd-name.txt" {
		t.Fatalf("err %v, args %q", err, f.fs.Args())
	}
}
