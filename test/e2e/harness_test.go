// Package e2e runs the real crispy binary on embedded defaults and talks to it through the generated
// client in openapi/clients/go, as an API consumer would.
package e2e

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// bin holds the binaries built once for the whole test run.
var bin struct {
	crispy  string
	plugins string
}

func TestMain(m *testing.M) {
	os.Exit(func() int {
		dir, err := os.MkdirTemp("", "crispy-e2e-")
		if err != nil {
			fmt.Println(err)
			return 1
		}
		defer os.RemoveAll(dir)
		bin.crispy = filepath.Join(dir, "crispy")
		bin.plugins = filepath.Join(dir, "plugins")
		steps := [][]string{
			{"go", "build", "-o", bin.crispy, "./cmd/crispy"},
			{"go", "build", "-o", bin.plugins + "/", "./plugins/summarize", "./plugins/classifyintent", "./plugins/extractentities", "./plugins/tagchunkdocs", "./plugins/ingestdocs"},
		}
		for _, s := range steps {
			cmd := exec.Command(s[0], s[1:]...)
			cmd.Dir = "../.."
			if out, err := cmd.CombinedOutput(); err != nil {
				fmt.Printf("%s: %v\n%s", strings.Join(s, " "), err, out)
				return 1
			}
		}
		return m.Run()
	}())
}

// server is one running crispy serve process.
type server struct {
	t       *testing.T
	cmd     *exec.Cmd
	BaseURL string
	logs    *logBuf
	done    chan error

	stopOnce sync.Once
	stopErr  error
}

type logBuf struct {
	mu    sync.Mutex
	lines []string
}

func (l *logBuf) add(s string) { l.mu.Lock(); l.lines = append(l.lines, s); l.mu.Unlock() }

// Find returns the first log line that contains every one of parts.
func (l *logBuf) Find(parts ...string) (string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range l.lines {
		ok := true
		for _, p := range parts {
			if !strings.Contains(line, p) {
				ok = false
				break
			}
		}
		if ok {
			return line, true
		}
	}
	return "", false
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// startServer runs crispy serve on a free port with dataDir and extra flags, and waits until it
// listens. The process is stopped (SIGTERM) at the end of the test unless the test stops it.
func startServer(t *testing.T, dataDir string, extra ...string) *server {
	t.Helper()
	args := append([]string{"serve", "--addr", "127.0.0.1:0", "--data-dir", dataDir, "--plugins-dir", bin.plugins}, extra...)
	cmd := exec.Command(bin.crispy, args...)
	cmd.Env = append(os.Environ(), "CRISPY_LOG_LEVEL=info")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{t: t, cmd: cmd, logs: &logBuf{}, done: make(chan error, 1)}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			s.logs.add(line)
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
	go func() { s.done <- cmd.Wait() }()
	select {
	case a := <-addr:
		s.BaseURL = "http://" + a
	case err := <-s.done:
		t.Fatalf("crispy serve exited before listening: %v\n%s", err, s.logs)
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("crispy serve did not listen within 60s\n%s", s.logs)
	}
	t.Cleanup(func() { s.Stop() })
	return s
}

// Stop sends SIGTERM and waits for a clean exit; it returns the process error (nil on exit 0).
func (s *server) Stop() error {
	s.stopOnce.Do(func() {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case s.stopErr = <-s.done:
		case <-time.After(60 * time.Second):
			_ = s.cmd.Process.Kill()
			s.t.Errorf("crispy serve did not stop within 60s after SIGTERM\n%s", s.logs)
			s.stopErr = <-s.done
		}
	})
	return s.stopErr
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

// Kill ends the process with SIGKILL, as a crash would.
func (s *server) Kill() {
	s.stopOnce.Do(func() {
		_ = s.cmd.Process.Kill()
		s.stopErr = <-s.done
	})
}

func sha(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}
