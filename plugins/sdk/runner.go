package sdk

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/hashicorp/go-plugin/runner"
)

// procRunner is go-plugin's runner.Runner for a plugin process, ours rather than go-plugin's own so
// that the process is started by a Starter (parent-death signal), gets its memory limit the moment it
// exists (before it can do anything), knows its pid, and reports whether it died of running out of
// memory.
type procRunner struct {
	cmd     *exec.Cmd
	starter *Starter // nil: start on the calling goroutine, without a parent-death signal
	limit   int64    // RLIMIT_DATA at start, bytes; 0: none
	stdout  io.ReadCloser
	stderr  *oomWatch
	// stderrW is the write end of the stderr pipe, the child's; the parent's copy is closed once
	// the child has it, so that the reader sees EOF when the child (and whatever inherited it) ends.
	stderrW *os.File
	pid     atomic.Int64
}

var _ runner.Runner = (*procRunner)(nil)

// newRunner is LaunchConfig's go-plugin RunnerFunc. go-plugin hands it a template command carrying the
// environment of the handshake; the plugin's own command is built from it here. The checksum is
// checked here too, right before the start, because go-plugin's SecureConfig needs its Cmd field,
// which cannot be combined with a runner.
func newRunner(cfg LaunchConfig, limit int64) func(hclog.Logger, *exec.Cmd, string) (runner.Runner, error) {
	return func(_ hclog.Logger, tmpl *exec.Cmd, _ string) (runner.Runner, error) {
		if cfg.Checksum != nil {
			ok, err := (&plugin.SecureConfig{Checksum: cfg.Checksum, Hash: sha256.New()}).Check(cfg.Path)
			if err != nil {
				return nil, fmt.Errorf("error verifying checksum: %w", err)
			}
			if !ok {
				return nil, plugin.ErrChecksumsDoNotMatch
			}
		}
		cmd := exec.Command(cfg.Path)
		// The last value of a variable wins: the host's pid must not be one inherited from our own
		// environment.
		cmd.Env = append(append([]string(nil), tmpl.Env...), hostPIDEnv+"="+strconv.Itoa(os.Getpid()))
		cmd.Stdin = tmpl.Stdin
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			return nil, err
		}
		// A pipe of our own rather than cmd.StderrPipe: exec.Cmd.Wait closes the pipes it made as soon
		// as the process is reaped, which can be before go-plugin's reader has read the process's
		// last words, and those are how a death against the memory limit is told from a crash (under
		// load the runtime's "out of memory" was lost that way, and the restart counted as a crash).
		stderrR, stderrW, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		cmd.Stderr = stderrW
		return &procRunner{cmd: cmd, starter: cfg.Starter, limit: limit, stdout: stdout, stderrW: stderrW,
			stderr: &oomWatch{r: stderrR, eof: make(chan struct{})}}, nil
	}
}

func (r *procRunner) Start(context.Context) error {
	var err error
	if r.starter != nil {
		err = r.starter.Start(r.cmd)
	} else {
		err = r.cmd.Start()
	}
	_ = r.stderrW.Close() // the child holds its own copy (or there is no child: the reader sees EOF)
	if err != nil {
		return err
	}
	r.pid.Store(int64(r.cmd.Process.Pid))
	if r.limit > 0 {
		if err := limitMemory(r.cmd.Process.Pid, r.limit); err != nil {
			_ = r.cmd.Process.Kill()
			_ = r.cmd.Wait()
			return err
		}
	}
	return nil
}

func (r *procRunner) Wait(context.Context) error { return r.cmd.Wait() }

func (r *procRunner) Kill(context.Context) error {
	if r.cmd.Process == nil {
		return nil
	}
	if err := r.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	return nil
}

func (r *procRunner) Stdout() io.ReadCloser { return r.stdout }
func (r *procRunner) Stderr() io.ReadCloser { return r.stderr }
func (r *procRunner) Name() string          { return r.cmd.Path }

func (r *procRunner) ID() string {
	if p := r.pid.Load(); p > 0 {
		return strconv.FormatInt(p, 10)
	}
	return ""
}

func (r *procRunner) Diagnose(context.Context) string {
	return "the binary is not a Crispy tool plugin (it must call sdk.Serve), was built for another system, or failed its handshake"
}

func (r *procRunner) PluginToHost(network, addr string) (string, string, error) {
	return network, addr, nil
}

func (r *procRunner) HostToPlugin(network, addr string) (string, string, error) {
	return network, addr, nil
}

// oomWatch passes the plugin's stderr on to go-plugin's logger and notes whether the Go runtime (or
// the C library) said it ran out of memory: the sign the process died against its memory limit.
type oomWatch struct {
	r       io.ReadCloser
	mu      sync.Mutex
	tail    []byte // the end of what was read, so a message split across reads is still seen
	oom     atomic.Bool
	eof     chan struct{} // closed once the reader got an error: everything the process wrote is read
	eofOnce sync.Once
}

var oomMarkers = [][]byte{[]byte("out of memory"), []byte("cannot allocate memory")}

func (w *oomWatch) Read(p []byte) (int, error) {
	n, err := w.r.Read(p)
	if err != nil {
		// The end (or the pipe broke): nothing more will come, and nobody else closes our end.
		defer w.eofOnce.Do(func() { _ = w.r.Close(); close(w.eof) })
	}
	if n > 0 && !w.oom.Load() {
		w.mu.Lock()
		buf := append(append([]byte(nil), w.tail...), p[:n]...)
		for _, m := range oomMarkers {
			if bytes.Contains(bytes.ToLower(buf), m) {
				w.oom.Store(true)
			}
		}
		const keep = 64
		if len(buf) > keep {
			buf = buf[len(buf)-keep:]
		}
		w.tail = buf
		w.mu.Unlock()
	}
	return n, err
}

func (w *oomWatch) Close() error { return w.r.Close() }

// drained reports whether the process's stderr has been read to its end.
func (w *oomWatch) drained() bool {
	select {
	case <-w.eof:
		return true
	default:
		return false
	}
}
