package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"sort"

	"github.com/VictoriaMetrics/metrics"

	"github.com/crispy-enigma/crispy/modules/retrieval"
	"github.com/crispy-enigma/crispy/modules/tenancy"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/keystore"
	"github.com/crispy-enigma/crispy/platform/sealing"
	"github.com/crispy-enigma/crispy/platform/search"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// offline is the retrieval side of the CLI: the store, the index and the tenants, without a server.
type offline struct {
	store eventstore.Store
	keys  keystore.Store // the data keys the documents are sealed with
	index search.Index
	retr  *retrieval.Module
	t     tenant.ID
}

func (o *offline) close() {
	if o.index != nil {
		o.index.Close()
	}
	if o.store != nil {
		o.store.Close()
	}
	if o.keys != nil {
		o.keys.Close()
	}
}

// openOffline opens what ingest and reindex need and checks that the tenant exists.
func openOffline(ctx context.Context, cfg config, log *slog.Logger, id string) (_ *offline, err error) {
	// o is not the named result: every error return sets that to nil, and the deferred close must
	// still see what was opened.
	o := &offline{}
	defer func() {
		if err != nil {
			o.close()
		}
	}()
	if o.t, err = tenantFlag(id); err != nil {
		return nil, err
	}
	if o.store, err = openStore(ctx, cfg, log); err != nil {
		return nil, err
	}
	// The first events of a data folder may come from here: make the audit signing key with them,
	// so that serve finds it (serve refuses a store with events and no key).
	if err := ensureAuditKey(ctx, cfg, o.store); err != nil {
		return nil, err
	}
	keysMissing := keysFileMissing(cfg)
	if o.keys, err = openKeys(ctx, cfg, o.store, log); err != nil {
		return nil, err
	}
	if err := checkKeyStore(ctx, cfg, o.store, o.keys, keysMissing); err != nil {
		return nil, err
	}
	if err := checkSharedKeyStore(ctx, cfg, o.store, o.keys); err != nil {
		return nil, err
	}
	sealed := sealStore(o.store, sealing.New(o.keys).Report(log, nil)) // documents are sealed as serve seals them
	ten, err := tenancy.New(tenancy.Deps{Config: tenancy.Config{TenantsFile: cfg.Tenants}, Store: sealed, Log: log})
	if err != nil {
		return nil, err
	}
	if err := ten.Start(ctx); err != nil {
		return nil, tenantsFileError(cfg.Tenants, err)
	}
	if _, err := ten.Config(ctx, o.t); err != nil {
		return nil, unknownTenant(o.t, ten.Tenants(), err)
	}
	if o.index, err = openIndex(ctx, cfg, log); err != nil {
		return nil, err
	}
	if o.retr, err = buildRetrieval(cfg, log, sealed, o.index, metrics.NewSet(), ten, nil, nil); err != nil {
		return nil, err
	}
	return o, nil
}

// offlineCommand parses the flags ingest and reindex share and opens what they need; wantArgs says
// whether the command takes paths.
func offlineCommand(ctx context.Context, name, tenantHelp string, args []string, io stdio, env lookupEnv, wantArgs bool, more ...func(*flag.FlagSet)) (*offline, []string, error) {
	var cfg config
	f := newFlags(name, env, io.err)
	for _, m := range more {
		m(f.fs)
	}
	f.storeFlags(&cfg)
	f.keyGuardFlags(&cfg)
	f.str(&cfg.Tenants, "tenants", "", "tenants YAML file (as given to serve)")
	f.str(&cfg.Search, "search", "embedded", "vector index: embedded, or an Elasticsearch URL")
	var id string
	f.fs.StringVar(&id, "tenant", "", tenantHelp)
	if err := f.parse(args); err != nil {
		return nil, nil, err
	}
	if wantArgs && f.fs.NArg() == 0 {
		return nil, nil, usageError("usage: crispy %s PATH... --tenant T", name)
	}
	if !wantArgs && f.fs.NArg() > 0 {
		return nil, nil, usageError("%s takes no arguments, got %q", name, f.fs.Args())
	}
	cfg.providerEnv(env)
	if err := cfg.validate(); err != nil {
		return nil, nil, exitError{code: 2, msg: err.Error()}
	}
	if !wantArgs {
		// reindex rebuilds from the documents in the store; ingest may start a new one.
		if _, err := tenantFlag(id); err != nil {
			return nil, nil, err
		}
		if err := requireStore(cfg); err != nil {
			return nil, nil, err
		}
	}
	o, err := openOffline(ctx, cfg, newLogger(io.err, cfg.LogLevel), id)
	return o, f.fs.Args(), err
}

func cmdIngest(ctx context.Context, args []string, io stdio, env lookupEnv) error {
	var prune bool
	o, paths, err := offlineCommand(ctx, "ingest", "the tenant to ingest for", args, io, env, true, func(fs *flag.FlagSet) {
		fs.BoolVar(&prune, "prune", false, "delete the tenant's documents ingested from files that are no longer in the folders given")
	})
	if err != nil {
		return err
	}
	defer o.close()
	res, err := o.retr.IngestPaths(ctx, o.t, paths, retrieval.FilesOptions{Prune: prune}, fileProgress(io.err, "ingest"))
	if err != nil {
		return err
	}
	fmt.Fprintf(io.out, "tenant %s: %d files ingested, %d unchanged and skipped, %d deleted, %d failed\n", o.t, res.Ingested, res.Skipped, res.Deleted, len(res.Failed))
	if len(res.Failed) > 0 {
		paths := make([]string, 0, len(res.Failed))
		for p := range res.Failed {
			paths = append(paths, p)
		}
		sort.Strings(paths)
		for _, p := range paths {
			fmt.Fprintf(io.out, "  failed %s: %v\n", p, res.Failed[p])
		}
		if len(paths) == 1 {
			return exitError{code: 1, msg: fmt.Sprintf("%s could not be ingested: %v", paths[0], res.Failed[paths[0]])}
		}
		return exitError{code: 1, msg: fmt.Sprintf("%d files could not be ingested (the first, %s: %v); the list is above", len(paths), paths[0], res.Failed[paths[0]])}
	}
	return nil
}

func cmdReindex(ctx context.Context, args []string, io stdio, env lookupEnv) error {
	o, _, err := offlineCommand(ctx, "reindex", "the tenant whose index to rebuild", args, io, env, false)
	if err != nil {
		return err
	}
	defer o.close()
	res, err := o.retr.Reindex(ctx, o.t, fileProgress(io.err, "reindex"))
	if err != nil {
		return err
	}
	fmt.Fprintf(io.out, "tenant %s: index rebuilt from %d documents, %d chunks\n", o.t, res.Documents, res.Chunks)
	return nil
}
