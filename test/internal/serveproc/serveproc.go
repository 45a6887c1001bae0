// Package serveproc runs the real crispy serve binary for the end-to-end and replica tests: it keeps
// the server's JSON log lines, waits for its "listening" line to learn the address, and stops it with
// SIGTERM or kills it as a crash would.
package serveproc

import (
	"bufio"
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Logs are a server's log lines, as they arrive.
type Logs struct {
	mu    sync.Mutex
	lines []string
}

func (l *Logs) add(s string) { l.mu.Lock(); l.lines = append(l.lines, s); l.mu.Unlock() }

// Matching returns the lines that contain every one of parts.
func (l *Logs) Matching(parts ...string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, line := range l.lines {
		ok := true
		for _, p := range parts {
			if !strings.Contains(line, p) {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, line)
		}
	}
	return out
}

// Find returns the first line that contains every one of parts.
func (l *Logs) Find(parts ...string) (string, bool) {
	if m := l.Matching(parts...); len(m) > 0 {
		return m[0], true
	}
	return "", false
}

func (l *Logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// Process is one running server.
type Process struct {
	Cmd     *exec.Cmd
	BaseURL string // http://host:port, from its "listening" line
	Logs    *Logs
	// Done receives the process's exit once; a test that takes it puts it back for Stop.
	Done chan error

	t        testing.TB
	what     string
	stopOnce sync.Once
	stopErr  error
}

// Start runs bin with args (which should listen on port 0) and env, and waits up to within for the
// server to say where it listens; what names it in failures ("crispy serve", "replica A").
func Start(t testing.TB, what, bin string, args, env []string, within time.Duration) *Process {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &Process{Cmd: cmd, Logs: &Logs{}, Done: make(chan error, 1), t: t, what: what}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			p.Logs.add(line)
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == "listening" {
				if a, ok := m["addr"].(string); ok {
					select {
					case addr <- a:
					default:
					}
				}
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	go func() { p.Done <- cmd.Wait() }()
	select {
	case a := <-addr:
		p.BaseURL = "http://" + a
	case err := <-p.Done:
		t.Fatalf("%s exited before listening: %v\n%s", what, err, p.Logs)
	case <-time.After(within):
		_ = cmd.Process.Kill()
		t.Fatalf("%s did not listen within %s\n%s", what, within, p.Logs)
	}
	return p
}

// Stop sends SIGTERM and waits for the exit; it returns the process error (nil on exit 0).
func (p *Process) Stop() error {
	p.stopOnce.Do(func() {
		_ = p.Cmd.Process.Signal(syscall.SIGTERM)
		select {
		case p.stopErr = <-p.Done:
		case <-time.After(60 * time.Second):
			_ = p.Cmd.Process.Kill()
			p.t.Errorf("%s did not stop within 60s after SIGTERM\n%s", p.what, p.Logs)
			p.stopErr = <-p.Done
		}
	})
	return p.stopErr
}

// Kill ends the process with SIGKILL, as a crash would; the exit it causes is no failure (a Stop
// after it returns nil).
func (p *Process) Kill() {
	p.stopOnce.Do(func() {
		_ = p.Cmd.Process.Kill()
		<-p.Done
	})
}
