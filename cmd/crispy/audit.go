package main

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/crispy-enigma/crispy/modules/observability"
	"github.com/crispy-enigma/crispy/platform/auditlog"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/tenant"
	"github.com/transparency-dev/merkle/proof"

	"github.com/crispy-enigma/crispy/platform/atomicfile"
)

// auditFlags are serve's flags of the signed audit log.
func (f *flags) auditFlags(c *config) {
	f.str(&c.AuditKey, "audit-key", "", "Ed25519 key file that signs audit checkpoints (default <data-dir>/audit/signing.key; replicas sharing a store share it)")
	f.fs.BoolVar(&c.NewAuditKey, "new-audit-key", false, "create a new audit signing key although the store has events (the key was lost); recorded as an event in every tenant's log")
	f.str(&c.AuditWitnessFile, "audit-witness-file", "", "append every signed checkpoint as a JSON line to this file (a witness beyond the data folder)")
	f.str(&c.AuditWitnessURL, "audit-witness-url", "", "POST every signed checkpoint as JSON to this URL (retried; internal addresses need CRISPY_WEBHOOK_ALLOW_INTERNAL=true)")
	f.dur(&c.AuditInterval, "audit-interval", 30*time.Second, "how often a tenant whose log grew gets a new signed checkpoint")
}

func auditKeyPath(cfg config) string {
	if cfg.AuditKey != "" {
		return cfg.AuditKey
	}
	return auditlog.DefaultKeyFile(cfg.DataDir)
}

// auditKeyPendingPath marks a key rotation (--new-audit-key over a store with events) not yet
// recorded in every tenant's log. It is written before the key is created and removed once the
// audit log has recorded the key everywhere, so a stop in between (a crash, a restart during the
// catch-up, a failed append) is finished by the next start rather than forgotten.
func auditKeyPendingPath(cfg config) string {
	return filepath.Join(cfg.DataDir, "audit", "new-key.pending")
}

// auditKeyRotationPending says a --new-audit-key rotation started on this data folder is not yet
// recorded in every tenant's log: starts treat the key in use as the new one until it is.
func auditKeyRotationPending(cfg config) bool {
	_, err := os.Stat(auditKeyPendingPath(cfg))
	return err == nil
}

// markAuditKeyPending writes the marker durably (file and folder fsynced) before the key exists.
func markAuditKeyPending(cfg config) error {
	path := auditKeyPendingPath(cfg)
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	return atomicfile.Write(path, []byte("a new audit signing key (--new-audit-key) is being recorded in every tenant's log; removed once it is\n"), 0o640)
}

// clearAuditKeyPending removes the marker once the new key is recorded everywhere.
func clearAuditKeyPending(cfg config) error {
	path := auditKeyPendingPath(cfg)
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return atomicfile.SyncDir(filepath.Dir(path))
}

// openAuditKey loads the signing key, or creates it on a first start (empty store). A key missing
// while the store has events is refused: a new key would re-sign a history the kept checkpoints no
// longer vouch for, so it takes --new-audit-key, which is recorded in every tenant's log. It says
// whether the key is such a new one (also when an earlier start created it and stopped before it
// was recorded everywhere).
func openAuditKey(ctx context.Context, cfg config, store eventstore.Store) (ed25519.PrivateKey, bool, error) {
	path := auditKeyPath(cfg)
	pending := auditKeyRotationPending(cfg)
	key, err := auditlog.LoadKey(path)
	if err == nil {
		if pending {
			// A rotation an earlier start began and did not finish recording: finish it, whether
			// or not --new-audit-key is passed again.
			return key, true, nil
		}
		if cfg.NewAuditKey {
			return nil, false, fmt.Errorf("--new-audit-key: an audit signing key exists at %s; start without --new-audit-key (move the file away first to really replace it)", path)
		}
		return key, false, nil
	}
	if !errors.Is(err, auditlog.ErrNoKey) {
		return nil, false, fmt.Errorf("%w; fix or restore the file, or point --audit-key at the right one", err)
	}
	last, err := store.LastPosition(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("audit signing key: read the store: %w", err)
	}
	if last > 0 && !cfg.NewAuditKey {
		return nil, false, fmt.Errorf("audit signing key %s not found but the event store already has events: restore the key file or pass --audit-key FILE (the key the other replicas use), or start once with --new-audit-key to create a new one (recorded in every tenant's log)", path)
	}
	if last > 0 {
		// Marked before the key exists: from here on, until the key is recorded in every tenant's
		// log, each start records it (idempotently).
		if err := markAuditKeyPending(cfg); err != nil {
			return nil, false, fmt.Errorf("audit signing key: mark the new key as pending: %w; point --data-dir at a writable folder", err)
		}
	}
	key, err = auditlog.CreateKey(path)
	if errors.Is(err, os.ErrExist) {
		// Another replica sharing --audit-key created it first.
		key, err = auditlog.LoadKey(path)
		return key, last > 0, err
	}
	if err != nil {
		return nil, false, fmt.Errorf("%w; point --data-dir (or --audit-key) at a writable folder", err)
	}
	return key, last > 0, nil
}

// ensureAuditKey creates the key when the store is still empty, for the commands that write the
// first events of a data folder (ingest): serve then finds it. A store with events and no key is
// left for serve to refuse with its fix.
func ensureAuditKey(ctx context.Context, cfg config, store eventstore.Store) error {
	path := auditKeyPath(cfg)
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	last, err := store.LastPosition(ctx)
	if err != nil || last > 0 {
		return nil //nolint:nilerr // serve reports it
	}
	_, err = auditlog.CreateKey(path)
	if err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("%w; point --data-dir at a writable folder", err)
	}
	return nil
}

// buildAuditLog makes the signed audit log of serve.
func buildAuditLog(ctx context.Context, cfg config, store eventstore.Store, log *slog.Logger, specOnly bool) (*auditlog.Log, error) {
	var key ed25519.PrivateKey
	var isNew bool
	var err error
	if specOnly {
		_, key, _ = ed25519.GenerateKey(nil)
	} else if key, isNew, err = openAuditKey(ctx, cfg, store); err != nil {
		return nil, err
	}
	allowInternal, _ := cfg.webhookAllowInternal()
	var sinks []auditlog.Sink
	if cfg.AuditWitnessFile != "" {
		sinks = append(sinks, &auditlog.FileSink{Path: cfg.AuditWitnessFile})
	}
	if cfg.AuditWitnessURL != "" {
		sinks = append(sinks, &auditlog.WebhookSink{URL: cfg.AuditWitnessURL, Client: observability.NewWebhookClient(5*time.Second, allowInternal)})
	}
	if len(sinks) == 0 && !specOnly {
		// The signing key and the kept checkpoints are in the data folder by default: only a copy
		// kept elsewhere catches a history rewritten and re-signed by someone who can write it.
		log.Warn("audit: no witness configured (--audit-witness-file on another disk, --audit-witness-url): a rewrite of the data folder by someone who can also read the signing key would go unnoticed")
	}
	dir := filepath.Join(cfg.DataDir, "audit", "checkpoints")
	if specOnly {
		dir = filepath.Join(os.TempDir(), "crispy-spec-checkpoints")
	}
	l, err := auditlog.New(auditlog.Deps{Key: key, Store: store, Dir: dir, Interval: cfg.AuditInterval, Sinks: sinks, NewKey: isNew, Log: log,
		NewKeyRecorded: func() error { return clearAuditKeyPending(cfg) }})
	if err != nil {
		return nil, fmt.Errorf("%w; point --data-dir at a writable folder", err)
	}
	if isNew {
		log.Warn("audit: a new signing key over a store that has events (--new-audit-key), to be recorded in every tenant's log; checkpoints signed by the old key no longer verify against this server's key", "keyId", auditlog.KeyID(key.Public().(ed25519.PublicKey)))
	}
	return l, nil
}

// cmdAudit: crispy audit public-key | checkpoint --tenant T | prove --proof FILE --event FILE.
func cmdAudit(ctx context.Context, args []string, io stdio, env lookupEnv) error {
	if len(args) == 0 {
		return usageError("usage: crispy audit public-key | checkpoint --tenant T | prove --proof FILE --event FILE --public-key FILE")
	}
	switch args[0] {
	case "public-key":
		return cmdAuditPublicKey(ctx, args[1:], io, env)
	case "checkpoint":
		return cmdAuditCheckpoint(ctx, args[1:], io, env)
	case "prove":
		return cmdAuditProve(ctx, args[1:], io, env)
	}
	return usageError("unknown audit command %q: want public-key, checkpoint or prove", args[0])
}

func cmdAuditPublicKey(_ context.Context, args []string, io stdio, env lookupEnv) error {
	var cfg config
	f := newFlags("audit public-key", env, io.err)
	f.storeFlags(&cfg)
	f.str(&cfg.AuditKey, "audit-key", "", "the signing key file (default <data-dir>/audit/signing.key)")
	var pemOut bool
	f.fs.BoolVar(&pemOut, "pem", false, "print only the PEM public key (for crispy verify --public-key)")
	if err := f.parse(args); err != nil {
		return err
	}
	if f.fs.NArg() > 0 {
		return usageError("audit public-key takes no arguments, got %q", f.fs.Args())
	}
	key, err := auditlog.LoadKey(auditKeyPath(cfg))
	if err != nil {
		return fmt.Errorf("%v; check --data-dir or --audit-key (the server creates the key on its first start)", err)
	}
	d := auditlog.Describe(key.Public().(ed25519.PublicKey))
	if pemOut {
		fmt.Fprint(io.out, d.PEM)
		return nil
	}
	return printJSON(io, d)
}

func printJSON(io stdio, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(io.out, string(b))
	return err
}

// cmdAuditCheckpoint prints the tenant's latest checkpoint, signing a fresh one over the store
// when the log grew since (it recomputes the tree from the raw events, checks every chain, and
// refuses to sign a log that is not an extension of the kept checkpoint).
func cmdAuditCheckpoint(ctx context.Context, args []string, io stdio, env lookupEnv) error {
	var cfg config
	f := newFlags("audit checkpoint", env, io.err)
	f.storeFlags(&cfg)
	f.str(&cfg.AuditKey, "audit-key", "", "the signing key file (default <data-dir>/audit/signing.key)")
	var id string
	f.fs.StringVar(&id, "tenant", "", "the tenant whose checkpoint to print")
	if err := f.parse(args); err != nil {
		return err
	}
	if f.fs.NArg() > 0 {
		return usageError("audit checkpoint takes no arguments, got %q", f.fs.Args())
	}
	t, err := tenantFlag(id)
	if err != nil {
		return err
	}
	key, err := auditlog.LoadKey(auditKeyPath(cfg))
	if err != nil {
		return fmt.Errorf("%v; check --data-dir or --audit-key (the server creates the key on its first start)", err)
	}
	store, err := openStoreReadOnly(ctx, cfg, io)
	if err != nil {
		return err
	}
	defer store.Close()
	size, root, err := auditlog.Compute(ctx, store, t)
	if err != nil {
		return checkpointStoreError(t, err)
	}
	if size == 0 {
		return exitError{code: 1, msg: fmt.Sprintf("tenant %s has no events in this store, so no checkpoint (check --tenant and --data-dir)", t)}
	}
	keptPath := filepath.Join(cfg.DataDir, "audit", "checkpoints", t.String()+".json")
	kept, err := auditlog.ReadCheckpointFile(keptPath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		// A kept checkpoint that cannot be read is not a reason to sign whatever the store holds:
		// it may be exactly what someone rewriting the store altered.
		return exitError{code: exitChainBroken, msg: fmt.Sprintf("tenant %s: the kept checkpoint cannot be read (%v); not signing. Check it against a witness's copy, then move it away to sign afresh", t, err)}
	}
	pub := key.Public().(ed25519.PublicKey)
	if kept != nil && kept.KeyID == auditlog.KeyID(pub) {
		if kept.Size == size && kept.RootHash == b64(root) {
			return printJSON(io, kept)
		}
		rep, err := auditlog.Verify(ctx, store, auditlog.VerifyOptions{Checkpoint: *kept, PublicKey: pub, Tenant: t, Now: time.Now()})
		if err != nil {
			return exitError{code: exitChainBroken, msg: fmt.Sprintf("tenant %s: the store cannot be checked against the kept checkpoint %s (%v); not signing. Run 'crispy verify --tenant %s --checkpoint %s'",
				t, keptPath, err, t, keptPath)}
		}
		if !rep.OK {
			return exitError{code: exitChainBroken, msg: fmt.Sprintf("tenant %s: the store does not extend the kept checkpoint of %d events (%s); not signing. Run 'crispy verify --tenant %s --checkpoint %s'",
				t, kept.Size, rep.Fault, t, keptPath)}
		}
	}
	c := auditlog.Sign(key, t, size, root, time.Now())
	if err := os.MkdirAll(filepath.Dir(keptPath), 0o750); err == nil {
		if b, err := json.MarshalIndent(c, "", "  "); err == nil {
			_ = os.WriteFile(keptPath+".tmp", append(b, '\n'), 0o640)
			_ = os.Rename(keptPath+".tmp", keptPath)
		}
	}
	return printJSON(io, c)
}

func checkpointStoreError(t tenant.ID, err error) error {
	var ce *eventstore.ChainError
	if errors.As(err, &ce) {
		return exitError{code: exitChainBroken, msg: fmt.Sprintf("tenant %s: %v; not signing a broken log (run 'crispy verify --tenant %s')", t, ce, t)}
	}
	if errors.Is(err, eventstore.ErrCorrupt) {
		return exitError{code: exitCorrupt, msg: fmt.Sprintf("%v (restore the data folder from a backup)", err)}
	}
	return err
}

// verifyCheckpoint is crispy verify --checkpoint FILE: the store against a kept checkpoint.
func verifyCheckpoint(ctx context.Context, cfg config, store readOnlyStore, t tenant.ID, cpFile, keyFile string, io stdio) error {
	b, err := os.ReadFile(cpFile)
	if err != nil {
		return fmt.Errorf("--checkpoint: %w; give the JSON file that GET /audit/checkpoint or crispy audit checkpoint printed", err)
	}
	var cp auditlog.Checkpoint
	if err := json.Unmarshal(b, &cp); err != nil {
		return exitError{code: 2, msg: fmt.Sprintf("--checkpoint %s: not a checkpoint JSON (%v); give the file GET /audit/checkpoint returned", cpFile, err)}
	}
	pub, err := loadPublicKey(cfg, keyFile)
	if err != nil {
		return err
	}
	var tree func() (auditlog.StoredTree, error)
	closeTree := func() {}
	defer func() { closeTree() }()
	tree = func() (auditlog.StoredTree, error) {
		tr, c, err := auditlog.FileTree(filepath.Join(readModelDir(cfg), auditlog.ProjectionName+".db"), t)
		closeTree = c
		return tr, err
	}
	bar := newProgress(io.err, "verify "+t.String(), true)
	rep, err := auditlog.Verify(ctx, store, auditlog.VerifyOptions{Checkpoint: cp, PublicKey: pub, Tenant: t, Now: time.Now(), Tree: tree,
		Progress: func(n uint64) { bar.set(int(n)) }})
	bar.done()
	switch {
	case errors.Is(err, auditlog.ErrBadCheckpoint):
		return exitError{code: 2, msg: fmt.Sprintf("--checkpoint %s: %v", cpFile, err)}
	case errors.Is(err, eventstore.ErrCorrupt):
		return exitError{code: exitCorrupt, msg: fmt.Sprintf("%v (restore the data folder from a backup)", err)}
	case err != nil:
		return err
	}
	if !rep.OK {
		fmt.Fprintf(io.out, "FAILED: %s\n", rep.Fault)
		return exitError{code: exitChainBroken, msg: fmt.Sprintf("tenant %s: the store is not the log checkpoint %d (signed %s) committed to: %s",
			t, cp.Size, cp.Time.Format(time.RFC3339), rep.Fault)}
	}
	fmt.Fprintf(io.out, "ok: tenant %s holds the %d events checkpoint %s committed to, plus %d appended after it (%d events verified, consistency proof of %d hashes)\n",
		t, cp.Size, cp.Time.Format(time.RFC3339), rep.StoreSize-cp.Size, rep.EventsChecked, len(rep.ConsistencyProof))
	return store.tornTailFinding(io, cfg.DataDir)
}

// loadPublicKey reads --public-key, or the public half of the server's key file.
func loadPublicKey(cfg config, keyFile string) (ed25519.PublicKey, error) {
	if keyFile == "" {
		k, err := auditlog.LoadKey(auditKeyPath(cfg))
		if err != nil {
			return nil, fmt.Errorf("%v; pass --public-key FILE (from GET /audit/public-key or crispy audit public-key --pem, kept outside the server)", err)
		}
		return k.Public().(ed25519.PublicKey), nil
	}
	b, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("--public-key: %w", err)
	}
	pub, err := auditlog.ParsePublicKey(b)
	if err != nil {
		return nil, exitError{code: 2, msg: fmt.Sprintf("--public-key %s: %v", keyFile, err)}
	}
	return pub, nil
}

// cmdAuditProve checks an inclusion proof offline: the event's hash from its own fields, its leaf
// in the proof's tree, the root against the signed checkpoint, and the checkpoint's signature.
func cmdAuditProve(_ context.Context, args []string, io stdio, env lookupEnv) error {
	f := newFlags("audit prove", env, io.err)
	var proofFile, eventFile, keyFile, cpFile string
	f.fs.StringVar(&proofFile, "proof", "", "the JSON of GET /audit/events/{id}/proof")
	f.fs.StringVar(&eventFile, "event", "", "the event as JSON (a line of crispy replay, or an event of GET /audit/events)")
	f.fs.StringVar(&keyFile, "public-key", "", "the server's public key (GET /audit/public-key, or crispy audit public-key --pem)")
	f.fs.StringVar(&cpFile, "checkpoint", "", "a kept checkpoint to check the proof against (default: the one in the proof)")
	if err := f.parse(args); err != nil {
		return err
	}
	if proofFile == "" || eventFile == "" || keyFile == "" {
		return usageError("usage: crispy audit prove --proof FILE --event FILE --public-key FILE [--checkpoint FILE]")
	}
	var p auditlog.InclusionProof
	if err := readJSON(proofFile, "--proof", &p); err != nil {
		return err
	}
	var e eventstore.Event
	if err := readJSON(eventFile, "--event", &e); err != nil {
		return err
	}
	if st, err := tenant.ParseStream(e.Stream); err == nil && e.Tenant.IsZero() {
		e.Tenant = st.Tenant()
	}
	cp := p.Checkpoint
	if cpFile != "" {
		cp = &auditlog.Checkpoint{}
		if err := readJSON(cpFile, "--checkpoint", cp); err != nil {
			return err
		}
	}
	if cp == nil {
		return usageError("the proof carries no checkpoint (it was asked for a given size): pass --checkpoint FILE, the checkpoint of that size you kept")
	}
	b, err := os.ReadFile(keyFile)
	if err != nil {
		return fmt.Errorf("--public-key: %w", err)
	}
	pub, err := auditlog.ParsePublicKey(b)
	if err != nil {
		return exitError{code: 2, msg: fmt.Sprintf("--public-key %s: %v", keyFile, err)}
	}
	fail := func(format string, a ...any) error {
		return exitError{code: exitChainBroken, msg: "proof FAILED: " + fmt.Sprintf(format, a...)}
	}
	if err := cp.Check(pub, e.Tenant, time.Now()); err != nil {
		return fail("%v", err)
	}
	if cp.Size != p.TreeSize {
		return fail("the proof is for a tree of %d events, the checkpoint of %d", p.TreeSize, cp.Size)
	}
	if p.EventID != e.ID {
		return fail("the proof is of event %s, the event given is %s", p.EventID, e.ID)
	}
	h, err := eventstore.ComputeHash(e.Prev, &e)
	if err != nil || h != e.Hash {
		return fail("event %s does not hash to its hash: its contents were changed (or the JSON is not the event as stored)", e.ID)
	}
	leaf, err := auditlog.LeafHash(e.Hash)
	if err != nil {
		return fail("%v", err)
	}
	root, err := cp.Root()
	if err != nil {
		return fail("%v", err)
	}
	hashes := make([][]byte, len(p.Proof))
	for i, s := range p.Proof {
		if hashes[i], err = unb64(s); err != nil {
			return fail("proof hash %d is not base64", i)
		}
	}
	if err := proof.VerifyInclusion(auditlog.Hasher, p.LeafIndex, p.TreeSize, leaf, hashes, root); err != nil {
		return fail("event %s is not entry %d of the log of %d events the checkpoint signed: %v", e.ID, p.LeafIndex, p.TreeSize, err)
	}
	fmt.Fprintf(io.out, "ok: event %s (%s@%d) is entry %d of tenant %s's log of %d events, checkpoint signed %s by key %s\n",
		e.ID, e.Stream, e.Revision, p.LeafIndex, cp.Tenant, cp.Size, cp.Time.Format(time.RFC3339), cp.KeyID)
	return nil
}

func readJSON(path, flag string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("%s: %w", flag, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return exitError{code: 2, msg: fmt.Sprintf("%s %s: not the expected JSON (%v)", flag, path, err)}
	}
	return nil
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func unb64(s string) ([]byte, error) { return base64.StdEncoding.DecodeString(s) }
