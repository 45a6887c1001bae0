package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/embedded"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// An operator who starts a command against a broken environment gets ONE line that names the cause
// and what to do, and a non-zero exit: never a stack trace, never a chain of wrapped prefixes that
// hides which knob to turn. The helpers below turn the errors of opening things (the data folder,
// the index folder, an engine behind a URL) into such lines; main prints the line.

// connectTimeout bounds connecting to an engine at start: a refused connection fails at once, an
// address that swallows packets would otherwise hold the command for the client's own retries.
const connectTimeout = 10 * time.Second

// usageError is a command line that cannot work as given (exit 2).
func usageError(format string, a ...any) error {
	return exitError{code: 2, msg: fmt.Sprintf(format, a...)}
}

// engine names a server the configuration points at, for the line that says it failed.
type engine struct {
	name string // "EventStoreDB"
	url  string // as configured (redacted before it is shown)
	// instead is what the operator can do without it ("pass --bus gochannel").
	instead string
}

// failed explains err from connecting to e: "is not answering" when nothing answered at the
// address (refused, unreachable, timed out), else what went wrong once it did answer.
func (e engine) failed(err error) error {
	if unreachable(err) {
		return fmt.Errorf("%s at %s is not answering (%s); start it or %s", e.name, redactURL(e.url), cause(err), e.instead)
	}
	return fmt.Errorf("%s at %s cannot be used (%s); check its URL and the server, or %s", e.name, redactURL(e.url), cause(err), e.instead)
}

// unreachable reports whether err means that nothing answered at the address.
func unreachable(err error) bool {
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH) ||
		errors.Is(err, syscall.ETIMEDOUT) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrNoServers) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return true
	}
	// Some clients (gRPC, for EventStoreDB) carry the dial error as text only.
	s := err.Error()
	for _, t := range []string{"connection refused", "no such host", "i/o timeout", "network is unreachable", "deadline exceeded", "code = Unavailable"} {
		if strings.Contains(s, t) {
			return true
		}
	}
	return false
}

// cause is the part of err worth showing: the dial error when there is one ("dial tcp 127.0.0.1:1:
// connect: connection refused"), else the innermost message, without the wrappers' prefixes.
func cause(err error) string {
	var op *net.OpError
	if errors.As(err, &op) {
		return op.Error()
	}
	// A client that resolves names itself (pgx) reports the lookup outside a dial error, once per
	// connection attempt.
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return dns.Error()
	}
	s := err.Error()
	if i := strings.Index(s, "dial tcp "); i >= 0 {
		s = s[i:]
		if j := strings.IndexAny(s, "\"\\"); j > 0 {
			s = s[:j]
		}
		return strings.TrimSpace(s)
	}
	for {
		u := errors.Unwrap(err)
		if u == nil {
			break
		}
		err = u
	}
	return err.Error()
}

// dataDirError explains why the event store in --data-dir (its folder dir) cannot be opened.
func dataDirError(dataDir, dir string, err error) error {
	switch {
	case errors.Is(err, embedded.ErrInUse):
		who := "another process"
		if pid := lockHolder(dir); pid > 0 {
			who = fmt.Sprintf("another process (pid %d)", pid)
		}
		return fmt.Errorf("the data folder %s is in use by %s; stop the server or point --data-dir at a copy", dataDir, who)
	case errors.Is(err, eventstore.ErrCorrupt):
		msg := fmt.Sprintf("the event store in %s cannot be opened: %v", dir, err)
		if !strings.Contains(msg, "backup") {
			msg += "; restore the data folder from a backup"
		}
		return exitError{code: 1, msg: msg}
	}
	if why, ok := unusableFolder(dir, err); ok {
		return fmt.Errorf("--data-dir %s cannot hold the event store: %s; point --data-dir at a writable folder", dataDir, why)
	}
	return fmt.Errorf("open the event store in %s: %w", dir, err)
}

// indexDirError explains why the embedded index folder dir cannot be used. The index is derived
// from the event log, so removing it is always safe.
func indexDirError(dir string, err error) error {
	if why, ok := unusableFolder(dir, err); ok {
		return fmt.Errorf("the index folder %s cannot be used: %s; remove it or make it a writable folder (the index is rebuilt from the event log)", dir, why)
	}
	return fmt.Errorf("the index folder %s cannot be used: %v; remove it (the index is rebuilt from the event log)", dir, err)
}

// unusableFolder says what keeps a folder from being used, when err is about the file system
// rather than the content: a file where a folder should be, a read-only file system, no permission.
func unusableFolder(dir string, err error) (string, bool) {
	switch {
	case errors.Is(err, syscall.ENOTDIR), errors.Is(err, syscall.EEXIST):
		if f := fileInTheWay(dir); f != "" {
			return fmt.Sprintf("%s is a file, not a folder", f), true
		}
		return fmt.Sprintf("a file is in the way (%s): not a folder", cause(err)), true
	case errors.Is(err, syscall.EROFS):
		return "it is on a read-only file system", true
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return fmt.Sprintf("permission denied (%s)", cause(err)), true
	case errors.Is(err, syscall.ENOSPC):
		return "the disk is full", true
	}
	return "", false
}

// fileInTheWay is the first path from dir upwards that exists and is not a folder ("" if none).
func fileInTheWay(dir string) string {
	for p := filepath.Clean(dir); ; p = filepath.Dir(p) {
		if fi, err := os.Stat(p); err == nil {
			if fi.IsDir() {
				return ""
			}
			return p
		}
		if filepath.Dir(p) == p {
			return ""
		}
	}
}

// checkWritable fails when nothing can be created in dir (a read-only mount, a full disk): a
// folder that opens but cannot be written would otherwise fail later, half way through the work.
func checkWritable(dir string) error {
	f, err := os.CreateTemp(dir, ".crispy-write-check-*")
	if err != nil {
		return err
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}

// lockHolder is the pid recorded in the embedded store's lock file by the process that holds it
// (0 when none is recorded).
func lockHolder(dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, "LOCK"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// oneLine makes a message fit on one line: main prints exactly one line per failure, and a cause
// that carries newlines (a multi-line error from a library) must not break that.
func oneLine(s string) string {
	s = strings.TrimSpace(s)
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	fields := strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' })
	for i, f := range fields {
		fields[i] = strings.TrimSpace(f)
	}
	return strings.Join(fields, "; ")
}

// listenError explains a listen address that cannot be used.
func listenError(flag, addr string, err error) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("%s %s is in use by another process (%s); stop it or pass another %s", flag, addr, cause(err), flag)
	}
	return fmt.Errorf("%s %s cannot be listened on (%s); pass another %s, such as :8080 or 127.0.0.1:8080", flag, addr, cause(err), flag)
}

// tenantsFileError explains a tenants file that cannot be loaded; a malformed file's error already
// names the file, line and field.
func tenantsFileError(file string, err error) error {
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("--tenants %s: no such file; pass the tenants YAML file (or no --tenants for the keyless demo tenant)", file)
	}
	return err
}

// unknownTenant explains a --tenant the tenants file does not list, naming those it does.
func unknownTenant(t tenant.ID, known []tenant.ID, err error) error {
	if apperr.KindOf(err) != apperr.KindNotFound {
		return fmt.Errorf("tenant %s: %w", t, err)
	}
	names := make([]string, 0, len(known))
	for i, k := range known {
		if i == 10 {
			names = append(names, fmt.Sprintf("and %d more", len(known)-10))
			break
		}
		names = append(names, k.String())
	}
	return fmt.Errorf("tenant %s is not among the tenants (%s); check --tenant, and pass the --tenants file the server uses", t, strings.Join(names, ", "))
}

// within says which component failed, once: modules already start their errors with their name
// ("observability: read price file: …"), and "observability: observability: …" reads as noise.
// hint, when given, is what to check.
func within(component string, err error, hint string) error {
	if !strings.HasPrefix(err.Error(), component+":") {
		err = fmt.Errorf("%s: %w", component, err)
	}
	if hint != "" {
		err = fmt.Errorf("%w; %s", err, hint)
	}
	return err
}

// busDir is where the embedded bus keeps its checkpoints.
func busDir(cfg config) string { return filepath.Join(cfg.DataDir, "bus") }

// readModelDir is where the projections keep their checkpointed read models (one bbolt file each).
func readModelDir(cfg config) string { return filepath.Join(cfg.DataDir, "readmodels") }
