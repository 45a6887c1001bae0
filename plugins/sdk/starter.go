package sdk

import (
	"errors"
	"os/exec"
	"runtime"
	"sync"
)

// ErrStarterClosed: the Starter was closed before the process could be started.
var ErrStarterClosed = errors.New("plugin starter is closed")

// Starter starts plugin processes from one dedicated OS thread that lives as long as the Starter.
//
// Why a thread: on Linux a plugin is started with a parent-death signal (SIGKILL), so the kernel kills
// it when its host dies, even of SIGKILL, which no handler can catch. The kernel sends that signal
// when the *thread* that started the process ends, not the process; Go may end an OS thread whenever
// a goroutine locked to it returns, so a plugin started from an arbitrary goroutine could be killed
// at a random moment. Starting every plugin from one goroutine locked to its thread for the Starter's
// whole life avoids that. Close lets the thread end (Go ends a thread whose locked goroutine returns,
// except the main thread, which ends with the process): a host closes its Starter once it has shut its
// plugins down.
//
// On other systems the Starter only starts processes; the SDK's parent watch (see Serve) is then what
// ends a plugin whose host is gone.
type Starter struct {
	reqs chan startReq
	once sync.Once
	mu   sync.RWMutex
	shut bool
}

type startReq struct {
	cmd  *exec.Cmd
	done chan error
}

// NewStarter starts the Starter's thread. Close it when the plugins it started may die.
func NewStarter() *Starter {
	s := &Starter{reqs: make(chan startReq)}
	ready := make(chan struct{})
	go func() {
		// Never unlocked: no other goroutine may ever run on this thread, lest it end the thread and
		// with it the plugins (Go ends the thread when this goroutine returns, at Close).
		runtime.LockOSThread()
		close(ready)
		for r := range s.reqs {
			setParentDeathSignal(r.cmd)
			r.done <- r.cmd.Start()
		}
	}()
	<-ready
	return s
}

// Start starts cmd from the Starter's thread (with a parent-death signal where the system has one).
func (s *Starter) Start(cmd *exec.Cmd) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.shut {
		return ErrStarterClosed
	}
	done := make(chan error, 1)
	s.reqs <- startReq{cmd: cmd, done: done}
	return <-done
}

// Close ends the Starter's thread; on Linux the kernel then kills the processes it started that still
// run, unless the thread was the process's main thread. Later Starts fail with ErrStarterClosed.
func (s *Starter) Close() {
	s.once.Do(func() {
		s.mu.Lock()
		s.shut = true
		close(s.reqs)
		s.mu.Unlock()
	})
}
