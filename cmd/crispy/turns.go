package main

import (
	"context"
	"net/http"
	"time"
)

// closeInterrupted closes, as interrupted, the chat turns an earlier run of this replica left without
// an outcome (it crashed or was killed mid-turn), and any replica's turns past the longest a turn can
// run; another replica's recent turns are left alone (it may be streaming them). It runs once the
// read models have caught up, before the first request; a failure is logged, not fatal: the next
// turn of such a session closes it as well.
func (a *app) closeInterrupted(ctx context.Context) {
	n, err := a.conv.CloseInterrupted(ctx)
	if err != nil {
		a.log.Error("close chat turns interrupted by the last stop", "error", err, "closed", n)
		return
	}
	if n > 0 {
		a.log.Info("closed chat turns interrupted by the last stop", "count", n)
	}
}

// drain stops srv by ctx's deadline without cutting a chat turn short: requests may finish until
// shortly before the deadline; then the chat turns still open are ended (each client gets an error
// event shutting_down, each outcome is recorded while the store is open), and the turns no request
// waits for any more are ended too; only then is srv closed. It returns srv.Shutdown's error.
func (a *app) drain(ctx context.Context, srv *http.Server) error {
	end := func() {
		if err := a.conv.Shutdown(ctx); err != nil {
			a.log.Error("chat turns did not end before the shutdown deadline", "error", err)
		}
	}
	var early *time.Timer
	if deadline, ok := ctx.Deadline(); ok {
		left := time.Until(deadline)
		early = time.AfterFunc(left-drainMargin(left), end)
	}
	err := srv.Shutdown(ctx)
	if early != nil {
		early.Stop()
	}
	end()
	_ = srv.Close()
	return err
}

// drainMargin is how long before the shutdown deadline open chat turns are ended: time to record
// their outcomes and write their last events (a quarter of the grace period, at most 5 s).
func drainMargin(grace time.Duration) time.Duration {
	return min(grace/4, 5*time.Second)
}
