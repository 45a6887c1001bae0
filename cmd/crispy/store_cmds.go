package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/crispy-enigma/crispy/modules/observability"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/sealing"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// tenantFlag parses --tenant.
func tenantFlag(s string) (tenant.ID, error) {
	if s == "" {
		return tenant.ID{}, exitError{code: 2, msg: "--tenant is required"}
	}
	if len(s) > 100 {
		// The parser's message quotes the value: keep the line short whatever was passed.
		return tenant.ID{}, usageError("--tenant: a tenant id is at most 63 characters, got %d bytes", len(s))
	}
	t, err := tenant.Parse(s)
	if err != nil {
		return tenant.ID{}, exitError{code: 2, msg: fmt.Sprintf("--tenant: %v", err)}
	}
	return t, nil
}

func parseTime(flag, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, exitError{code: 2, msg: fmt.Sprintf("%s %q: want an RFC 3339 time such as 2026-11-25T10:00:00Z", flag, s)}
	}
	return t, nil
}

func cmdReplay(ctx context.Context, args []string, io stdio, env lookupEnv) error {
	var cfg config
	f := newFlags("replay", env, io.err)
	f.storeFlags(&cfg)
	var id, from, until, stream, out string
	f.fs.StringVar(&id, "tenant", "", "the tenant whose events to replay")
	f.fs.StringVar(&from, "from", "", "only events at or after this RFC 3339 time")
	f.fs.StringVar(&until, "until", "", "only events at or before this RFC 3339 time")
	f.fs.StringVar(&stream, "stream", "", "only this stream (full name, or the part after t-{tenant}.)")
	f.fs.StringVar(&out, "out", "", "write JSON lines to this file (default: standard output)")
	if err := f.parse(args); err != nil {
		return err
	}
	if f.fs.NArg() > 0 {
		return usageError("replay takes no arguments, got %q", f.fs.Args())
	}
	t, err := tenantFlag(id)
	if err != nil {
		return err
	}
	opts := observability.ReplayOptions{Stream: stream}
	if opts.From, err = parseTime("--from", from); err != nil {
		return err
	}
	if opts.Until, err = parseTime("--until", until); err != nil {
		return err
	}
	// Replay only reads: like verify it opens the store read-only, so a torn tail is left for
	// 'crispy repair' (and said once the replay is done) rather than cut.
	store, err := openStoreReadOnly(ctx, cfg, io)
	if err != nil {
		return err
	}
	defer store.Close()
	w := io.out
	if out != "" {
		fh, err := os.Create(out)
		if err != nil {
			return fmt.Errorf("--out: %w; point it at a file in a writable folder", err)
		}
		defer fh.Close()
		w = fh
	}
	// Each line keeps "data" as stored (what the hash and the audit log's proofs cover, so a line
	// is what `crispy audit prove --event` checks) and sealed content opened with the data keys
	// (read-only beside a running server) as "content" beside it; content whose key was destroyed
	// has no "content" and "erased":true.
	keysMissing := keysFileMissing(cfg)
	keys, err := openKeysReadOnly(ctx, cfg, store.Store, newLogger(io.err, cfg.LogLevel))
	if err != nil {
		return err
	}
	defer keys.Close()
	if err := checkKeysForReading(ctx, cfg, store.Store, keys, keysMissing); err != nil {
		return err
	}
	opts.Open = sealing.New(keys).OpenEvent
	bar := newProgress(io.err, "replay "+t.String(), out != "")
	n, err := observability.Replay(ctx, store.Store, t, opts, w, bar.set)
	bar.done()
	if err != nil {
		return err
	}
	if out != "" {
		fmt.Fprintf(io.err, "replayed %d events of %s to %s\n", n, t, out)
	}
	if torn := store.tornTail(); torn != nil {
		fmt.Fprintf(io.err, "note: the log ends in a torn tail of %d bytes (an interrupted write, not replayed); 'crispy verify' reports it and 'crispy repair' cuts it\n", torn.Bytes)
	}
	return nil
}

func cmdVerify(ctx context.Context, args []string, io stdio, env lookupEnv) error {
	var cfg config
	f := newFlags("verify", env, io.err)
	f.storeFlags(&cfg)
	var id, cpFile, keyFile string
	f.fs.StringVar(&id, "tenant", "", "the tenant whose hash chains to verify")
	f.fs.StringVar(&cpFile, "checkpoint", "", "a signed checkpoint you kept (GET /audit/checkpoint): prove the store still holds exactly its log plus appends")
	f.fs.StringVar(&keyFile, "public-key", "", "with --checkpoint: the server's public key kept outside it (default: the key file in --data-dir)")
	f.str(&cfg.AuditKey, "audit-key", "", "with --checkpoint and no --public-key: the signing key file (default <data-dir>/audit/signing.key)")
	if err := f.parse(args); err != nil {
		return err
	}
	if f.fs.NArg() > 0 {
		return usageError("verify takes no arguments, got %q", f.fs.Args())
	}
	t, err := tenantFlag(id)
	if err != nil {
		return err
	}
	// Verify never writes: a torn tail is reported (exit 4), not cut; 'crispy repair' cuts it.
	store, err := openStoreReadOnly(ctx, cfg, io)
	if err != nil {
		return err
	}
	defer store.Close()
	if cpFile != "" {
		return verifyCheckpoint(ctx, cfg, store, t, cpFile, keyFile, io)
	}
	if keyFile != "" {
		return usageError("--public-key checks a --checkpoint: pass the checkpoint file too")
	}
	bar := newProgress(io.err, "verify "+t.String(), true)
	res, err := observability.Verify(ctx, store, t, bar.set)
	bar.done()
	if errors.Is(err, eventstore.ErrCorrupt) {
		return exitError{code: exitCorrupt, msg: fmt.Sprintf("%v (restore the data folder from a backup)", err)}
	}
	if err != nil {
		return err
	}
	store.liveNote(io)
	if !res.OK {
		if b := res.FirstBadEvent; b != nil {
			fmt.Fprintf(io.out, "FAILED: first bad event %s (%s@%d): %s\n", b.ID, b.Stream, b.Revision, b.Reason)
		}
		_ = store.tornTailFinding(io, cfg.DataDir) // also said, but the broken chain decides the exit code
		return exitError{code: exitChainBroken, msg: fmt.Sprintf("tenant %s: hash chain broken after %d events checked", t, res.EventsChecked)}
	}
	fmt.Fprintf(io.out, "ok: %d events of tenant %s verified\n", res.EventsChecked, t)
	return store.tornTailFinding(io, cfg.DataDir)
}
