package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"

	"github.com/VictoriaMetrics/metrics"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"golang.org/x/sync/errgroup"

	"github.com/crispy-enigma/crispy/modules/conversation"
	"github.com/crispy-enigma/crispy/modules/observability"
	"github.com/crispy-enigma/crispy/modules/retrieval"
	"github.com/crispy-enigma/crispy/modules/tenancy"
	tenancyevents "github.com/crispy-enigma/crispy/modules/tenancy/events"
	"github.com/crispy-enigma/crispy/modules/tooling"
	"github.com/crispy-enigma/crispy/platform/ai"
	"github.com/crispy-enigma/crispy/platform/ai/embeddings"
	"github.com/crispy-enigma/crispy/platform/ai/providers"
	"github.com/crispy-enigma/crispy/platform/ai/rerank"
	"github.com/crispy-enigma/crispy/platform/auditlog"
	"github.com/crispy-enigma/crispy/platform/bus"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/eventstore/embedded"
	"github.com/crispy-enigma/crispy/platform/eventstore/esdb"
	"github.com/crispy-enigma/crispy/platform/eventstore/instrumented"
	"github.com/crispy-enigma/crispy/platform/eventstore/postgres"
	"github.com/crispy-enigma/crispy/platform/httpapi"
	"github.com/crispy-enigma/crispy/platform/sealing"
	"github.com/crispy-enigma/crispy/platform/search"
	"github.com/crispy-enigma/crispy/platform/search/elastic"
	searchembedded "github.com/crispy-enigma/crispy/platform/search/embedded"
	"github.com/crispy-enigma/crispy/platform/search/traced"
	"github.com/crispy-enigma/crispy/platform/tenant"
	"github.com/crispy-enigma/crispy/platform/tracing"
)

// buildOptions change what build assembles.
type buildOptions struct {
	// specOnly builds the API to print its spec: a throwaway embedded store, nothing started.
	specOnly bool
	// storeFaults injects storage faults into the embedded event store (tests of 503 and healing).
	storeFaults *embedded.Faults
	// spans, when set, receives every span instead of an OTLP exporter (tests: tracetest).
	spans sdktrace.SpanProcessor
}

// app is the assembled server: every component, built in dependency order, and how to run and close
// them.
type app struct {
	cfg     config
	log     *slog.Logger
	set     *metrics.Set
	tracer  *tracing.Provider
	store   eventstore.Store // raw behind the sealing decorator: what modules append and read
	raw     eventstore.Store // the store as written (ciphertext): for hashing and verification
	sealer  *sealing.Sealer
	bus     *bus.Bus
	models  providers.Built
	tenancy *tenancy.Module
	tooling *tooling.Module
	retr    *retrieval.Module
	conv    *conversation.Module
	obs     *observability.Module
	audit   *auditlog.Log
	server  *httpapi.Server
	closers []func() error
}

func build(ctx context.Context, cfg config, log *slog.Logger, o buildOptions) (_ *app, err error) {
	// a is not the named result: every error return sets that to nil, and the deferred close must
	// still see what was opened.
	a := &app{cfg: cfg, log: log, set: metrics.NewSet()}
	registerBuildInfo(a.set)
	defer func() {
		if err != nil {
			a.close()
		}
	}()
	tc := cfg.Tracing
	if tc.Endpoint == "" {
		tc.Endpoint = cfg.OTLPEndpoint
	}
	tc.ServiceVersion = version
	if o.spans != nil {
		a.tracer = tracing.NewWithProcessor(tc, o.spans)
	} else if a.tracer, err = tracing.New(ctx, tc); err != nil {
		return nil, within("tracing", err, "check OTEL_EXPORTER_OTLP_ENDPOINT")
	}
	a.closers = append(a.closers, func() error { return a.tracer.Shutdown(context.Background()) })

	raw, err := openStoreWith(ctx, cfg, log, o.storeFaults, a.set)
	if err != nil {
		return nil, err
	}
	a.closers = append(a.closers, raw.Close)
	keysMissing := keysFileMissing(cfg)
	keys, err := openKeys(ctx, cfg, raw, log)
	if err != nil {
		return nil, err
	}
	a.closers = append(a.closers, keys.Close)
	if err := checkKeyStore(ctx, cfg, raw, keys, keysMissing); err != nil {
		return nil, err
	}
	// A sealed event that does not open is logged once and counted, and read as unreadable.
	a.sealer = sealing.New(keys).Report(log, a.set)
	// a.raw is what is stored (ciphertext): the Merkle log and verification hash it. a.store seals
	// and opens content for the modules.
	a.raw = instrumented.New(raw, a.set, a.tracer.Tracer())
	a.store = sealStore(a.raw, a.sealer)

	// CatchUpGCPercent: the collector runs a quarter as often while the shared read models catch up
	// from far behind (a first start on a store with history: a fifth of its CPU was the GC at 100).
	// CatchUpCommitEvery: a catching-up read model commits every 16,384 events (default 8,192): half
	// the commits, and its rows and counters written once per commit (readmodel.Pending) are written
	// half as often; a crash meanwhile applies up to that many events again. (32,768 saved another
	// 5% of the CPU but held ~80 MB more at the peak of a 100k first start.)
	if a.bus, err = bus.New(bus.Config{Transport: cfg.Bus, Prefix: cfg.BusPrefix, CheckpointDir: busDir(cfg), ReadModelDir: readModelDir(cfg),
		CatchUpGCPercent: 400, CatchUpCommitEvery: 16384},
		// The bus reads what is stored and opens each event where it hands it to consumers, so a
		// broker (NATS) carries only sealed bytes.
		bus.Deps{Store: a.raw, Open: a.sealer.OpenEvent, Log: log, Metrics: a.set}); err != nil {
		return nil, fmt.Errorf("--bus %s: %w", redactURL(cfg.Bus), err)
	}

	if a.tenancy, err = tenancy.New(tenancy.Deps{Config: tenancy.Config{TenantsFile: cfg.Tenants, RedisURL: cfg.Redis, FailClosed: cfg.RateLimitFail == "closed",
		AdminKeySHA256: cfg.AdminKeySHA256},
		Store: a.store, Log: log, Metrics: a.set, Erase: a.eraseTenant,
		// a.models is built after tenancy; the check runs only on admin requests, once it exists.
		CheckConfig: func(c tenancyevents.TenantConfig) (string, error) {
			if f, err := unservedModel(a.models.Router, c); err != nil {
				return f, err
			}
			return unservedReranker(cfg, c)
		}}); err != nil {
		return nil, fmt.Errorf("tenancy: %w", err)
	}
	a.closers = append(a.closers, a.tenancy.Close)
	if check := a.tenancy.LimiterCheck(); check != nil && !o.specOnly {
		// Once running, the limiter rides out a Redis outage (--ratelimit-fail); at start, a Redis
		// that does not answer is most often a wrong --redis, which the operator should hear now.
		cctx, cancel := context.WithTimeout(ctx, connectTimeout)
		err = check(cctx)
		cancel()
		if err != nil {
			return nil, redisEngine(cfg).failed(err)
		}
	}

	models := newModelObserver(a.set, log)
	if a.models, err = providers.Build(providers.Config{
		OpenAIBaseURL: cfg.OpenAIBaseURL, OpenAIAPIKey: cfg.OpenAIAPIKey,
		CFAccountID: cfg.CFAccountID, CFAPIToken: cfg.CFAPIToken, CFGatewayID: cfg.CFGatewayID, CFBaseURL: cfg.CFBaseURL,
		Router: ai.RouterConfig{Tracer: a.tracer.Tracer(), OnBreakerChange: models.breaker, OnAttempt: models.attempt, OnFallback: models.fallback,
			FirstTokenTimeout: cfg.ModelFirstByte, IdleTimeout: cfg.ModelIdle,
			Retry: ai.RetryPolicy{Attempts: cfg.ModelRetries, Backoff: cfg.ModelRetryBackoff}},
	}); err != nil {
		return nil, within("model providers", err, "check the CRISPY_OPENAI_* and CRISPY_CF_* variables")
	}
	defaultChat := a.models.DefaultModel.String()
	aliases, err := parseModelAliases(cfg.ModelAliases)
	if err != nil {
		return nil, err
	}
	modelMaxTokens, err := parseModelMaxTokens(cfg.ModelMaxTokens)
	if err != nil {
		return nil, err
	}
	if cfg.DefaultChatModel != "" {
		defaultChat = cfg.DefaultChatModel
	}

	idx, err := openIndex(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	a.closers = append(a.closers, idx.Close)
	if a.retr, err = buildRetrieval(cfg, log, a.store, traced.New(idx, a.tracer.Tracer()), a.set, a.tenancy, ragCompleter{a}, convMeter{a}); err != nil {
		return nil, err
	}

	toolCfg := tooling.Config{PluginsDir: cfg.PluginsDir, PluginMemoryLimit: int64(cfg.PluginMemoryMB) << 20,
		MaxPluginMemoryLimit: int64(cfg.PluginMaxMemMB) << 20}
	if cfg.PluginMemoryMB == 0 {
		toolCfg.PluginMemoryLimit = -1 // 0 turns the ceiling off
	}
	if a.tooling, err = tooling.New(tooling.Deps{Config: toolCfg, Store: a.store, Keys: a.sealer.Keys(),
		Policy: a.tenancy, Completer: toolCompleter{a}, Embedder: a.retr, Ingester: toolIngester{a.retr},
		Log: log, Metrics: a.set, Tracer: a.tracer.Tracer()}); err != nil {
		return nil, within("tooling", err, "")
	}
	a.closers = append(a.closers, func() error { a.tooling.Close(); return nil })

	instance := "" // the replica's name, kept in its data folder: its chat turns record it, and a
	// start closes as interrupted only the turns its own earlier runs left open
	if !o.specOnly {
		if instance, err = conversation.InstanceID(filepath.Join(cfg.DataDir, "conversation", "instance")); err != nil {
			return nil, fmt.Errorf("--data-dir %s: %w", cfg.DataDir, err)
		}
	}
	if a.conv, err = conversation.New(conversation.Deps{
		Config: conversation.Config{DefaultModel: defaultChat, OverrideModel: cfg.ModelOverride, ModelAliases: aliases, ModelMaxTokens: modelMaxTokens,
			CacheBytes: mibOrNone(cfg.SessionCacheMB), ResumeBytes: mibOrNone(cfg.ResumeBufferMB), SweepInterval: cfg.RetentionEvery},
		Store: a.store, Router: a.models.Router, Speaker: a.models.Speaker, Policy: a.tenancy,
		Retriever: chatRetriever{a.retr}, Tools: a.tooling, Log: log, Metrics: a.set, Instance: instance, Sealer: a.sealer,
		Pricer: lazyPricer{a}, TokenWindow: windowOf(a.tenancy),
	}); err != nil {
		return nil, within("conversation", err, "check CRISPY_DEFAULT_CHAT_MODEL and CRISPY_MODEL_ID (provider:model)")
	}

	if a.audit, err = buildAuditLog(ctx, cfg, a.raw, log, o.specOnly); err != nil {
		return nil, err
	}
	if !o.specOnly {
		if err := checkDeploymentKey(ctx, cfg, a.raw, a.audit.PublicKey()); err != nil {
			return nil, err
		}
		// After the audit key (made on a first start only while the store is empty).
		if err := checkSharedKeyStore(ctx, cfg, a.raw, a.sealer.Keys()); err != nil {
			return nil, err
		}
	}

	allowInternal, _ := cfg.webhookAllowInternal() // validate refused a bad value
	if a.obs, err = observability.New(observability.Deps{
		Config: observability.Config{PriceFile: cfg.PricesFile, WebhookSecret: cfg.WebhookSecret,
			AlertInterval: cfg.AlertInterval, WebhookAllowInternal: allowInternal,
			DisableMetricsRoute: cfg.MetricsAddr != ""},
		Store: a.store, Metrics: a.set, KnownTenants: a.tenancy.Tenants,
		Sessions: observability.NewSessionAuditor(a.store), Search: searchStats{a.retr}, AuditLog: a.audit, Log: log,
	}); err != nil {
		return nil, within("observability", err, "check CRISPY_PRICES")
	}

	if a.server, err = httpapi.New(httpapi.Config{Version: version, Timeouts: cfg.httpTimeouts(), BodyLimits: a.retr.BodyLimits()}, httpapi.Deps{
		Log:   log,
		Guard: a.tenancy.Guard(),
		Checks: map[string]httpapi.Check{
			"eventstore": func(ctx context.Context) error { return eventstore.CheckHealth(ctx, a.store) }, // degraded while writes fail
			"bus":        a.bus.Check,
			"search":     a.retr.HealthCheck,
			"ratelimit":  a.tenancy.LimiterCheck(),
		},
		OnRequest: a.obs.RecordRequest,
		Tracer:    a.tracer.TracerProvider(),
	}); err != nil {
		return nil, fmt.Errorf("http api: %w", err)
	}
	// Before every operation (huma binds middleware at registration): key scopes, admin keys'
	// reach, and GET /metrics on --addr for admin keys only (--metrics-addr serves it elsewhere).
	a.server.API.UseMiddleware(a.tenancy.Middleware(a.server.API, "GET /metrics"))
	a.tenancy.Mount(a.server.API)
	a.tooling.Register(a.server.API, a.bus)
	a.retr.Register(a.server.API, a.bus)
	a.conv.Register(a.server.API, a.bus)
	a.obs.Register(a.server.API, a.bus)
	if pi := a.server.API.OpenAPI().Paths["/metrics"]; pi != nil && pi.Get != nil {
		pi.Get.Security = []map[string][]string{{tenancy.SchemeAdminKey: {}}}
	}
	a.audit.Register(a.bus)
	a.tenancy.Register(a.bus)
	return a, nil
}

// eraseTenant destroys a deleted tenant's data keys (its sealed sessions and documents read as
// erased from then on, in the log and the index files) and drops its index and cached answers.
func (a *app) eraseTenant(ctx context.Context, t tenant.ID) error {
	if err := a.sealer.Keys().DestroyTenant(ctx, t); err != nil {
		return fmt.Errorf("destroy the data keys of tenant %s: %w", t, err)
	}
	if a.retr != nil {
		if err := a.retr.ForgetTenant(ctx, t); err != nil {
			return fmt.Errorf("forget the index of tenant %s: %w", t, err)
		}
	}
	return nil
}

// version is the API version in the spec.
const version = "1.0.0"

func openStore(ctx context.Context, cfg config, log *slog.Logger) (eventstore.Store, error) {
	return openStoreWith(ctx, cfg, log, nil, nil)
}

// openStoreWith is openStore with faults injected into the embedded store's file (tests only) and
// the embedded store's own metrics (append latency, commit batches, write faults, degraded) on set.
func openStoreWith(ctx context.Context, cfg config, log *slog.Logger, faults *embedded.Faults, set *metrics.Set) (eventstore.Store, error) {
	if cfg.EventStore == "embedded" {
		dir := filepath.Join(cfg.DataDir, "events")
		s, err := embedded.Open(dir, embedded.Options{Logger: log, Faults: faults, Metrics: set})
		if err != nil {
			return nil, dataDirError(cfg.DataDir, dir, err)
		}
		return s, nil
	}
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	if isPostgres(cfg.EventStore) {
		s, err := postgres.Open(cctx, postgres.Config{URL: cfg.EventStore}, postgres.Options{Log: log})
		if err != nil {
			return nil, engine{name: "PostgreSQL", url: cfg.EventStore, instead: "pass --eventstore embedded"}.failed(err)
		}
		return s, nil
	}
	s, err := esdb.Open(cctx, esdb.Config{URL: cfg.EventStore}, esdb.Options{Log: log})
	if err != nil {
		return nil, engine{name: "EventStoreDB", url: cfg.EventStore, instead: "pass --eventstore embedded"}.failed(err)
	}
	return s, nil
}

// requireStore fails unless --data-dir holds an embedded event store, for the commands that only
// make sense on an existing one (opening would otherwise create an empty store and report on it).
func requireStore(cfg config) error {
	if cfg.EventStore != "embedded" {
		return nil
	}
	dir := filepath.Join(cfg.DataDir, "events")
	_, err := os.Stat(dir)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("no event store in --data-dir %s (%s does not exist); check --data-dir", cfg.DataDir, dir)
	}
	return dataDirError(cfg.DataDir, dir, err)
}

func redisEngine(cfg config) engine {
	return engine{name: "Redis", url: cfg.Redis, instead: "leave --redis empty to keep rate limits per process"}
}

// buildRetrieval builds the retrieval module on the index (the caller closes it) with the embedders
// of the configuration; serve, ingest and reindex share it.
func buildRetrieval(cfg config, log *slog.Logger, store eventstore.Store, idx search.Index, set *metrics.Set, ten *tenancy.Module, completer retrieval.Completer, meter retrieval.Meter) (*retrieval.Module, error) {
	emb, err := embeddings.NewResolver(embeddings.Config{
		Default:   cfg.DefaultEmbedModel,
		OpenAI:    embeddings.OpenAIConfig{BaseURL: cfg.OpenAIBaseURL, APIKey: cfg.OpenAIAPIKey},
		WorkersAI: embeddings.WorkersAIConfig{AccountID: cfg.CFAccountID, APIToken: cfg.CFAPIToken, GatewayID: cfg.CFGatewayID, BaseURL: cfg.CFBaseURL},
	})
	if err != nil {
		return nil, within("embeddings", err, "check CRISPY_DEFAULT_EMBEDDING_MODEL (provider:model)")
	}
	rr, err := rerank.NewResolver(rerankConfig(cfg))
	if err != nil {
		return nil, within("rerank", err, "check CRISPY_RERANK_MODEL (provider:model: cohere:…, openai:…, workers-ai:@cf/baai/bge-reranker-base)")
	}
	var sealer *sealing.Sealer // documents are sealed when the store is (serve, ingest, reindex)
	if ss, ok := store.(*sealing.Store); ok {
		sealer = ss.Sealer()
	}
	rc := retrieval.Config{RerankTimeout: cfg.RerankTimeout, MaxUploadBytes: int64(cfg.UploadMaxMB) << 20}
	m, err := retrieval.New(retrieval.Deps{Config: rc, Store: store, Index: idx, Embedders: emb, Rerankers: rr, Policy: ten, Completer: completer, Meter: meter,
		SharedIndex: cfg.Search != "" && cfg.Search != "embedded", Log: log, Metrics: set, Sealer: sealer})
	if err != nil {
		return nil, within("retrieval", err, "")
	}
	return m, nil
}

// openIndex opens the vector index that --search names, and makes sure it can be used now: an
// index folder that cannot be written, or an Elasticsearch that does not answer, is a start-up
// failure, not a surprise half way through the work.
func openIndex(ctx context.Context, cfg config, log *slog.Logger) (search.Index, error) {
	if cfg.Search == "" || cfg.Search == "embedded" {
		dir := filepath.Join(cfg.DataDir, "index")
		// The logger: a tenant's unreadable files removed, or lexical segments rebuilt from the
		// terms log, are said in the server's log, not dropped.
		idx, err := searchembedded.Open(searchembedded.Config{Dir: dir, Log: log})
		if err != nil {
			return nil, indexDirError(dir, err)
		}
		if err := checkWritable(dir); err != nil {
			idx.Close()
			return nil, indexDirError(dir, err)
		}
		return idx, nil
	}
	u, err := url.Parse(cfg.Search)
	if err != nil {
		return nil, fmt.Errorf("--search: %w", err)
	}
	ec := elastic.Config{}
	if u.User != nil {
		ec.Username = u.User.Username()
		ec.Password, _ = u.User.Password()
		u.User = nil
	}
	ec.Addresses = []string{u.String()}
	es := engine{name: "Elasticsearch", url: cfg.Search, instead: "pass --search embedded"}
	idx, err := elastic.New(ec)
	if err != nil {
		return nil, es.failed(err)
	}
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	if err := idx.Ping(cctx); err != nil {
		return nil, es.failed(err)
	}
	return idx, nil
}

// start does what must happen before the first request: the tenants file is recorded as events.
// (Tenants that left it are recorded as removed by tenancy's Run, from its tenant directory.)
func (a *app) start(ctx context.Context) error {
	if err := a.tenancy.Start(ctx); err != nil {
		return tenantsFileError(a.cfg.Tenants, err)
	}
	if err := checkTenantModels(ctx, a.tenancy, a.models.Router); err != nil {
		return err
	}
	return checkTenantRerankers(ctx, a.tenancy, a.cfg)
}

// runAll starts every background component in g.
func (a *app) runAll(g *errgroup.Group, ctx context.Context) {
	g.Go(func() error {
		err := a.bus.Run(ctx)
		if err != nil && a.cfg.Bus != "" && a.cfg.Bus != "gochannel" && unreachable(err) {
			// The bus connects to NATS when it starts running.
			return engine{name: "NATS", url: a.cfg.Bus, instead: "pass --bus gochannel"}.failed(err)
		}
		if errors.Is(err, bus.ErrReadModelDir) {
			if why, ok := unusableFolder(readModelDir(a.cfg), err); ok {
				return fmt.Errorf("--data-dir %s cannot hold the read models: %s; point --data-dir at a writable folder", a.cfg.DataDir, why)
			}
		} else if why, ok := unusableFolder(busDir(a.cfg), err); ok {
			return fmt.Errorf("--data-dir %s cannot hold the bus checkpoints: %s; point --data-dir at a writable folder", a.cfg.DataDir, why)
		}
		if err != nil && !errors.Is(err, context.Canceled) {
			return within("bus", err, "") // the bus's errors name it already
		}
		return nil
	})
	g.Go(func() error { return named("tenancy", a.tenancy.Run(ctx)) })
	g.Go(func() error { return named("tooling", a.tooling.Run(ctx)) })
	g.Go(func() error { return named("retrieval", a.retr.Run(ctx)) })
	g.Go(func() error { return named("conversation", a.conv.Run(ctx)) })
	g.Go(func() error { return named("observability", a.obs.Run(ctx)) })
	g.Go(func() error { return named("audit log", a.audit.Run(ctx)) })
}

// ready waits until the read models have caught up with the store, so the first answers are complete,
// and until the tenants that left the tenants file are recorded as removed.
func (a *app) ready(ctx context.Context) error {
	if err := a.bus.WaitCaughtUp(ctx); err != nil {
		return err
	}
	// The search index is a read model: its searches answer 503 catching_up until it has caught up.
	return a.tenancy.WaitSynced(ctx)
}

func named(what string, err error) error {
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// close releases everything build opened, last opened first.
func (a *app) close() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		if err := a.closers[i](); err != nil {
			a.log.Error("close", "error", err)
		}
	}
	a.closers = nil
}
