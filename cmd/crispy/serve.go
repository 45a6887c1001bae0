package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/crispy-enigma/crispy/platform/httpapi"
)

func cmdServe(ctx context.Context, args []string, io stdio, env lookupEnv) error {
	var cfg config
	f := newFlags("serve", env, io.err)
	f.serveFlags(&cfg)
	if err := f.parse(args); err != nil {
		return err
	}
	if f.fs.NArg() > 0 {
		return exitError{code: 2, msg: fmt.Sprintf("serve takes no arguments, got %q", f.fs.Args())}
	}
	cfg.providerEnv(env)
	if err := cfg.validate(); err != nil {
		return exitError{code: 2, msg: err.Error()}
	}
	if err := cfg.validateHTTPTimeouts(); err != nil {
		return exitError{code: 2, msg: err.Error()}
	}
	log := newLogger(io.err, cfg.LogLevel)
	started := time.Now()
	// SIGHUP re-reads the tenants file (its differences are recorded as events); without this
	// handler it would end the process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	a, err := build(ctx, cfg, log, buildOptions{})
	if err != nil {
		return err
	}
	defer a.close()
	if err := a.start(ctx); err != nil {
		return err
	}

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return listenError("--addr", cfg.Addr, err)
	}
	// Header, read, write and idle timeouts (--read-header-timeout …); SSE streams are not cut.
	srv := a.server.HTTPServer()
	srv.BaseContext = func(net.Listener) context.Context { return context.WithoutCancel(ctx) }
	var metricsSrv *http.Server
	var metricsLn net.Listener
	if cfg.MetricsAddr != "" {
		metricsLn, err = net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			ln.Close()
			return listenError("--metrics-addr", cfg.MetricsAddr, err)
		}
		metricsSrv = httpapi.NewHTTPServer(a.obs.MetricsHandler(), cfg.httpTimeouts())
	}

	// Background work stops with runCtx; the HTTP servers drain first so in-flight requests finish
	// against live modules, then the modules stop, then the store closes (deferred).
	runCtx, stopRun := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRun()
	g, gctx := errgroup.WithContext(runCtx)
	a.runAll(g, gctx)
	// Serve as soon as the bus runs (past its refusals to start), not once the read models have
	// caught up: meanwhile /health says catching_up with progress, and a request that needs a read
	// model not yet caught up is refused with 503 catching_up and retry-after (Projection.View, the
	// search index); routes reading the store directly answer.
	if err := a.bus.WaitRunning(gctx); err != nil {
		stopRun()
		runErr := g.Wait()
		ln.Close()
		if metricsLn != nil {
			metricsLn.Close()
		}
		if runErr != nil && !errors.Is(runErr, context.Canceled) {
			return runErr // the component that stopped says why ("Run returned before it was running" does not)
		}
		return fmt.Errorf("start the bus: %w", err)
	}
	g.Go(func() error {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve http: %w", err)
		}
		return nil
	})
	if metricsSrv != nil {
		g.Go(func() error {
			if err := metricsSrv.Serve(metricsLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("serve metrics: %w", err)
			}
			return nil
		})
	}
	log.Info("listening", "addr", ln.Addr().String(), "metricsAddr", cfg.MetricsAddr, "dataDir", cfg.DataDir,
		"eventstore", redactURL(cfg.EventStore), "search", redactURL(cfg.Search), "bus", redactURL(cfg.Bus))
	g.Go(func() error { return a.catchUp(gctx, started) })
	g.Go(func() error { a.reloadOnHangup(gctx, hup); return nil })

	select {
	case <-ctx.Done():
		log.Info("shutting down: draining in-flight requests", "timeout", cfg.ShutdownTimeout.String())
	case <-gctx.Done():
		log.Error("a component stopped; shutting down")
	}
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	shutdownErr := a.drain(sctx, srv) // open chat turns end with an error event and a recorded outcome
	if metricsSrv != nil {
		_ = metricsSrv.Shutdown(sctx)
	}
	stopRun()
	runErr := g.Wait()
	if shutdownErr != nil {
		log.Error("in-flight requests did not finish in time", "error", shutdownErr)
	}
	if runErr != nil && !errors.Is(runErr, context.Canceled) {
		return runErr
	}
	log.Info("stopped cleanly")
	return nil
}

// reloadOnHangup applies the tenants file again on every SIGHUP. A file that does not load is
// logged and changes nothing: the server keeps serving the tenants it had.
func (a *app) reloadOnHangup(ctx context.Context, hup <-chan os.Signal) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if err := a.tenancy.Start(ctx); err != nil {
				a.log.Error("SIGHUP: the tenants file was not applied; the tenants served are unchanged", "error", err.Error())
				continue
			}
			a.log.Info("SIGHUP: tenants file applied")
		}
	}
}

// catchUp waits until the read models have caught up with the store, then closes the chat turns an
// earlier run left open (it reads the conversation read model, so it must come after; a turn taken
// meanwhile closes its own session's, see conversation's closeInterrupted), and logs that every route
// answers. An error is returned only when the bus has not said why it stopped.
func (a *app) catchUp(ctx context.Context, started time.Time) error {
	if err := a.ready(ctx); err != nil {
		// The bus stopped before its read models caught up (its error stops the group and is the
		// one serve returns), or the server is stopping.
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(10 * time.Second):
			return fmt.Errorf("catch up read models: %w", err)
		}
	}
	a.closeInterrupted(ctx)
	a.log.Info("read models caught up: every route answers", "sinceStart", time.Since(started).Round(time.Millisecond).String())
	return nil
}
