package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/embedded"
)

// Exit codes of verify and repair, beyond 0 (ok), 1 (an error) and 2 (usage). Each finding has its
// own, so a script can tell a tampered chain from damaged bytes from an interrupted write.
const (
	exitChainBroken = 2 // a hash chain does not verify (kept at 2: it was verify's code before the others)
	exitCorrupt     = 3 // a record before the end of the log does not read back as written: restore a backup
	exitTornTail    = 4 // the log ends in an interrupted write: crispy repair cuts it
)

// readOnlyStore is the store an operator's read-only command opens, and what the open found.
type readOnlyStore struct {
	eventstore.Store
	embedded *embedded.Store // nil for EventStoreDB
	dir      string
}

// openStoreReadOnly opens the store for a command that must not write: the embedded log is opened
// with embedded.OpenReadOnly (no truncation, no lock-file rewrite; it may run beside a server).
// EventStoreDB is opened as usual: its reads write nothing.
func openStoreReadOnly(ctx context.Context, cfg config, io stdio) (readOnlyStore, error) {
	if err := cfg.validate(); err != nil {
		return readOnlyStore{}, exitError{code: 2, msg: err.Error()}
	}
	if err := requireStore(cfg); err != nil {
		return readOnlyStore{}, err
	}
	if cfg.EventStore != "embedded" {
		s, err := openStore(ctx, cfg, newLogger(io.err, cfg.LogLevel))
		return readOnlyStore{Store: s}, err
	}
	dir := filepath.Join(cfg.DataDir, "events")
	s, err := embedded.OpenReadOnly(dir, embedded.Options{Logger: newLogger(io.err, cfg.LogLevel)})
	if err != nil {
		return readOnlyStore{}, storeOpenError(cfg.DataDir, dir, err)
	}
	return readOnlyStore{Store: s, embedded: s, dir: dir}, nil
}

// storeOpenError gives a corrupt log its exit code (its message already says what to do) and explains
// the other failures as a writer's open does (a file where the folder should be, no permission…).
func storeOpenError(dataDir, dir string, err error) error {
	if errors.Is(err, eventstore.ErrCorrupt) {
		return exitError{code: exitCorrupt, msg: fmt.Sprintf("event store in %s is corrupt: %v", dir, err)}
	}
	return dataDirError(dataDir, dir, err)
}

// tornTail is the torn tail a read-only open of the embedded log found (nil: none, or another store).
func (s readOnlyStore) tornTail() *embedded.TornTail {
	if s.embedded == nil {
		return nil
	}
	return s.embedded.TornTail()
}

// tornTailFinding reports a torn tail found by a read-only open (nil: none).
func (s readOnlyStore) tornTailFinding(io stdio, dataDir string) error {
	torn := s.tornTail()
	if torn == nil {
		return nil
	}
	fmt.Fprintf(io.out, "TORN TAIL: the last %d bytes of %s (from offset %d) are an interrupted write (%s); the events before them were checked\n",
		torn.Bytes, s.embedded.Path(), torn.Offset, torn.Reason)
	return exitError{code: exitTornTail, msg: fmt.Sprintf("event store in %s ends in a torn tail (%d bytes at offset %d); verify changed nothing. Stop the server, then run 'crispy repair --data-dir %s' to cut it (a copy is kept)",
		s.dir, torn.Bytes, torn.Offset, dataDir)}
}

// liveNote says that verification read a live store's consistent prefix.
func (s readOnlyStore) liveNote(io stdio) {
	if s.embedded != nil && s.embedded.Live() {
		fmt.Fprintf(io.out, "note: a server is writing this store; checked its log up to offset %d\n", s.embedded.Size())
	}
}

func cmdRepair(ctx context.Context, args []string, io stdio, env lookupEnv) error {
	var cfg config
	f := newFlags("repair", env, io.err)
	f.storeFlags(&cfg)
	var dryRun bool
	f.fs.BoolVar(&dryRun, "dry-run", false, "only say what would be cut")
	if err := f.parse(args); err != nil {
		return err
	}
	if f.fs.NArg() > 0 {
		return exitError{code: 2, msg: fmt.Sprintf("repair takes no arguments, got %q", f.fs.Args())}
	}
	if err := cfg.validate(); err != nil {
		return exitError{code: 2, msg: err.Error()}
	}
	if cfg.EventStore != "embedded" {
		return exitError{code: 2, msg: "repair works on the embedded event store (--data-dir); EventStoreDB and PostgreSQL repair themselves"}
	}
	if err := requireStore(cfg); err != nil {
		return err
	}
	dir := filepath.Join(cfg.DataDir, "events")
	rep, err := embedded.Repair(dir, embedded.Options{Logger: newLogger(io.err, cfg.LogLevel)}, dryRun)
	if errors.Is(err, embedded.ErrInUse) {
		return fmt.Errorf("%w; repair needs the store to itself: stop the server first", err)
	}
	if err != nil {
		return storeOpenError(cfg.DataDir, dir, err)
	}
	switch {
	case rep.Torn == nil:
		fmt.Fprintf(io.out, "nothing to repair: %s is intact (%d bytes, %d events)\n", rep.Path, rep.Size, rep.Events)
	case dryRun:
		fmt.Fprintf(io.out, "would cut %d bytes from offset %d of %s (%s); %d events before them stay. Nothing was changed.\n",
			rep.Torn.Bytes, rep.Torn.Offset, rep.Path, rep.Torn.Reason, rep.Events)
	default:
		fmt.Fprintf(io.out, "cut %d bytes from offset %d of %s (%s); %d events before them stay. The cut bytes are kept in %s\n",
			rep.Torn.Bytes, rep.Torn.Offset, rep.Path, rep.Torn.Reason, rep.Events, rep.Kept)
	}
	return nil
}
