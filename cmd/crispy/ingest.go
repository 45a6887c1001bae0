package main

import (
	"context"
	"fmt"
	"log/slog"
	"sort"

	"github.com/VictoriaMetrics/metrics"

	"github.com/crispy-enigma/crispy/modules/retrieval"
	"github.com/crispy-enigma/crispy/modules/tenancy"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/search"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// offline is the retrieval side of the CLI: the store, the index and the tenants, without a server.
type offline struct {
	store eventstore.Store
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
}

// openOffline opens what ingest and reindex need and checks that the tenant exists.
func openOffline(ctx context.Context, cfg config, log *slog.Logger, id string) (o *offline, err error) {
	o = &offline{}
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
	ten, err := tenancy.New(tenancy.Deps{Config: tenancy.Config{TenantsFile: cfg.Tenants}, Store: o.store, Log: log})
	if err != nil {
		return nil, err
	}
	if err := ten.Start(ctx); err != nil {
		return nil, err
	}
	if _, err := ten.Config(ctx, o.t); err != nil {
		return nil, exitError{code: 1, msg: fmt.Sprintf("tenant %s: %v (check --tenants and --data-dir)", o.t, err)}
	}
	if o.index, err = openIndex(cfg); err != nil {
		return nil, err
	}
	if o.retr, err = buildRetrieval(cfg, log, o.store, o.index, metrics.NewSet(), ten, nil); err != nil {
		return nil, err
	}
	return o, nil
}

func cmdIngest(ctx context.Context, args []string, io stdio, env lookupEnv) error {
	var cfg config
	f := newFlags("ingest", env, io.err)
	f.storeFlags(&cfg)
	f.str(&cfg.Tenants, "tenants", "", "tenants YAML file (as given to serve)")
	f.str(&cfg.Search, "search", "embedded", "vector index: embedded, or an Elasticsearch URL")
	var id string
	f.fs.StringVar(&id, "tenant", "", "the tenant to ingest for")
	if err := f.parse(args); err != nil {
		return err
	}
	if f.fs.NArg() == 0 {
		return exitError{code: 2, msg: "usage: crispy ingest PATH... --tenant T (flags go before the paths)"}
	}
	cfg.providerEnv(env)
	if err := cfg.validate(); err != nil {
		return exitError{code: 2, msg: err.Error()}
	}
	log := newLogger(io.err, cfg.LogLevel)
	o, err := openOffline(ctx, cfg, log, id)
	if err != nil {
		return err
	}
	defer o.close()
	res, err := o.retr.IngestPaths(ctx, o.t, f.fs.Args(), fileProgress(io.err, "ingest"))
	if err != nil {
		return err
	}
	fmt.Fprintf(io.out, "tenant %s: %d files ingested, %d unchanged and skipped, %d failed\n", o.t, res.Ingested, res.Skipped, len(res.Failed))
	if len(res.Failed) > 0 {
		paths := make([]string, 0, len(res.Failed))
		for p := range res.Failed {
			paths = append(paths, p)
		}
		sort.Strings(paths)
		for _, p := range paths {
			fmt.Fprintf(io.out, "  failed %s: %v\n", p, res.Failed[p])
		}
		return exitError{code: 1, msg: fmt.Sprintf("%d files could not be ingested", len(res.Failed))}
	}
	return nil
}

func cmdReindex(ctx context.Context, args []string, io stdio, env lookupEnv) error {
	var cfg config
	f := newFlags("reindex", env, io.err)
	f.storeFlags(&cfg)
	f.str(&cfg.Tenants, "tenants", "", "tenants YAML file (as given to serve)")
	f.str(&cfg.Search, "search", "embedded", "vector index: embedded, or an Elasticsearch URL")
	var id string
	f.fs.StringVar(&id, "tenant", "", "the tenant whose index to rebuild")
	if err := f.parse(args); err != nil {
		return err
	}
	cfg.providerEnv(env)
	if err := cfg.validate(); err != nil {
		return exitError{code: 2, msg: err.Error()}
	}
	log := newLogger(io.err, cfg.LogLevel)
	o, err := openOffline(ctx, cfg, log, id)
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
