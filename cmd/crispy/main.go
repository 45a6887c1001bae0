// Command crispy is the Crispy Enigma server and its operator tools: serve, ingest, reindex, replay,
// verify, repair, plugin check|lock, openapi and tenant key new. Wiring is plain Go in this package: the root
// configuration is parsed here (flags and CRISPY_* variables) and handed to each constructor in order.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/google/uuid"

	"github.com/crispy-enigma/crispy/platform/request"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// The first signal asks the command to stop (serve drains its requests); a second one ends the
	// process at once, even when the command is stuck where it cannot see its context.
	go func() { <-ctx.Done(); stop() }()
	err := runSafely(ctx, os.Args[1:], stdio{in: os.Stdin, out: os.Stdout, err: os.Stderr}, os.LookupEnv)
	stop()
	if err != nil {
		code := 1
		var ex exitError
		if errors.As(err, &ex) {
			code = ex.code
			if ex.msg == "" {
				os.Exit(code)
			}
		}
		// Every failure is ONE line, the last on stderr (commands may have logged JSON lines before).
		fmt.Fprintln(os.Stderr, "crispy:", oneLine(err.Error()))
		os.Exit(code)
	}
}

// runSafely is run with a last line of defence: a panic on the main goroutine becomes one line
// and exit 1 instead of a stack trace. Causes are fixed where they arise; this only keeps a bug
// that slipped through from burying its message under a goroutine dump.
func runSafely(ctx context.Context, args []string, io stdio, env lookupEnv) error {
	return recovered(func() error { return run(ctx, args, io, env) })
}

// recovered calls f and turns a panic in it into an error.
func recovered(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("internal error: %v; this is a bug, please report it with the command line you ran", r)
		}
	}()
	return f()
}

// stdio are the streams a command writes to; tests pass buffers.
type stdio struct {
	in       io.Reader
	out, err io.Writer
}

// exitError ends the process with a specific code (usage: 2; verify's findings: see repair.go).
type exitError struct {
	code int
	msg  string
}

func (e exitError) Error() string { return e.msg }

// lookupEnv is os.LookupEnv; tests pass a map.
type lookupEnv func(string) (string, bool)

const usage = `crispy — multi-tenant AI platform (chat, retrieval, tools, audit replay)

Usage:
  crispy serve [flags]                    start the server (embedded defaults: no other server needed)
  crispy ingest PATH... --tenant T        ingest .txt/.md files and folders (skips unchanged files)
  crispy reindex --tenant T               rebuild the tenant's search index from its document events
  crispy replay --tenant T [--from RFC3339] [--until RFC3339] [--stream S] [--out FILE.jsonl]
  crispy verify --tenant T                walk the tenant's hash chains; writes nothing, may run beside a
                                          server; exit 2 broken chain, 3 corrupt log, 4 torn tail
  crispy verify --tenant T --checkpoint FILE [--public-key FILE]
                                          prove the store holds exactly the log a kept signed checkpoint
                                          committed to, plus appends; names the first entry at fault
  crispy audit public-key [--pem]         the key that signs audit checkpoints
  crispy audit checkpoint --tenant T      the tenant's latest signed checkpoint (signs one if the log grew)
  crispy audit prove --proof FILE --event FILE --public-key FILE
                                          check an inclusion proof (GET /audit/events/{id}/proof) offline
  crispy repair [--dry-run]               cut the embedded log's torn tail (server stopped; a copy is kept)
  crispy plugin check BINARY              run the tool-plugin conformance kit against a binary
  crispy plugin lock DIR                  pin the SHA-256 of every plugin in DIR (DIR/plugins.lock)
  crispy openapi [--json]                 print the OpenAPI spec
  crispy tenant key new --tenant T        generate an API key (printed once) and its hash
  crispy tenant apply FILE --server URL --admin-key KEY
                                          apply a tenants file to a running server (POST /admin/apply)
  crispy admin key new                    generate an admin key (printed once) and its hash for
                                          CRISPY_ADMIN_KEY_SHA256
  crispy version                          the module version and VCS commit this binary was built from

Run 'crispy COMMAND -h' for a command's flags. Every flag of serve also reads CRISPY_<FLAG>
(for example --data-dir and CRISPY_DATA_DIR); a flag given on the command line wins.
`

func run(ctx context.Context, args []string, io stdio, env lookupEnv) error {
	if len(args) == 0 {
		fmt.Fprint(io.out, usage)
		return usageError("no command given; run 'crispy help' for the commands")
	}
	cmd, rest := args[0], args[1:]
	ctx = asOperator(ctx, cmd)
	if len(rest) > 0 && isHelp(rest[0]) {
		if u := groupUsage(cmd); u != "" { // a command group (audit, plugin): its lines of the usage
			fmt.Fprint(io.out, u)
			return nil
		}
	}
	switch cmd {
	case "serve":
		return cmdServe(ctx, rest, io, env)
	case "ingest":
		return cmdIngest(ctx, rest, io, env)
	case "reindex":
		return cmdReindex(ctx, rest, io, env)
	case "replay":
		return cmdReplay(ctx, rest, io, env)
	case "verify":
		return cmdVerify(ctx, rest, io, env)
	case "audit":
		return cmdAudit(ctx, rest, io, env)
	case "repair":
		return cmdRepair(ctx, rest, io, env)
	case "plugin":
		return cmdPlugin(ctx, rest, io, env)
	case "openapi":
		return cmdOpenAPI(ctx, rest, io, env)
	case "tenant":
		return cmdTenant(ctx, rest, io, env)
	case "admin":
		return cmdAdmin(ctx, rest, io, env)
	case "version", "--version":
		return cmdVersion(ctx, rest, io, env)
	case "help", "-h", "--help":
		fmt.Fprint(io.out, usage)
		return nil
	}
	return usageError("unknown command %q; run 'crispy help' for the commands", cmd)
}

// asOperator makes what a command records the operator's: a command run at the server's console
// holds no API credential, so the events it appends (an ingest, a re-index) name it as their actor,
// "system:cli/<command>", and one invocation is one request. serve keeps no request id: its work is
// attributed per request (the API's credentials) or per component (system:<component>), and this
// actor only marks work that names neither.
func asOperator(ctx context.Context, cmd string) context.Context {
	info := request.Info{Actor: "system:cli/" + cmd}
	if cmd != "serve" {
		info.ID = "cli-" + uuid.NewString()
	}
	return request.With(ctx, info)
}
