package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/crispy-enigma/crispy/platform/health"
	"github.com/crispy-enigma/crispy/platform/request"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// HealthCheckTimeout bounds each backend check of GET /health. The checks run concurrently, so
// /health answers within about this long whatever hangs (SPEC: within 500 ms); a check that has
// not answered by then is reported down with reason timeout.
const HealthCheckTimeout = 400 * time.Millisecond

// HealthzOutput is the liveness answer.
type HealthzOutput struct {
	Body struct {
		Status string `json:"status" example:"ok" doc:"ok when the process serves requests"`
	}
}

// Progress is how far a backend that is catching up has come.
type Progress struct {
	Done  uint64 `json:"done" doc:"Items (events, documents …) processed so far" example:"1200"`
	Total uint64 `json:"total" doc:"Items to process; 0 when not known yet" example:"5000"`
}

// BackendStatus is one backend's health.
type BackendStatus struct {
	Status   string    `json:"status" enum:"ok,catching_up,degraded,down" doc:"ok; catching_up (rebuilding derived state after a start: requests that need it answer 503 catching_up); degraded (works in part, e.g. reads but no writes); down (not answering, or no answer within 400 ms: timeout)"`
	Error    string    `json:"error,omitempty" doc:"Why the backend is not ok"`
	Progress *Progress `json:"progress,omitempty" doc:"How far a backend that is catching_up has come"`
}

// HealthOutput is the tenant-scoped health answer.
type HealthOutput struct {
	Body struct {
		Status    string                   `json:"status" enum:"ok,catching_up,degraded,down" doc:"The worst status of the backends (ok < catching_up < degraded < down)"`
		Tenant    string                   `json:"tenant" example:"acme"`
		Timestamp time.Time                `json:"timestamp"`
		RequestID string                   `json:"requestId"`
		Backends  map[string]BackendStatus `json:"backends"`
	}
}

func (s *Server) registerHealth() {
	op := huma.Operation{OperationID: "get-healthz", Method: http.MethodGet, Path: "/healthz", Tags: []string{"health"},
		Summary: "Liveness and readiness", Description: "For load balancers: no tenant, never rate-limited."}
	Public(&op)
	huma.Register(s.API, op, func(ctx context.Context, _ *struct{}) (*HealthzOutput, error) {
		out := &HealthzOutput{}
		out.Body.Status = "ok"
		return out, nil
	})
	checks := newHealthChecks(s.deps.Checks)
	huma.Register(s.API, huma.Operation{OperationID: "get-health", Method: http.MethodGet, Path: "/health", Tags: []string{"health"},
		Summary: "Tenant-scoped health",
		Description: "Resolved, authenticated and rate-limited like every tenant route; reports each backend (ok, catching_up with progress, " +
			"degraded or down) and the worst of them. The checks run concurrently and each is given 400 ms, so the answer comes within 500 ms " +
			"whatever hangs."},
		func(ctx context.Context, _ *struct{}) (*HealthOutput, error) {
			t, _ := tenant.FromContext(ctx)
			out := &HealthOutput{}
			out.Body.Tenant = t.String()
			out.Body.Timestamp = s.deps.Now().UTC()
			out.Body.RequestID = request.From(ctx).ID
			out.Body.Backends = checks.run(ctx, t)
			out.Body.Status = health.OK
			for _, b := range out.Body.Backends {
				if health.Worse(b.Status, out.Body.Status) {
					out.Body.Status = b.Status
				}
			}
			return out, nil
		})
}

// healthChecks runs the backend checks for /health. A check that ignores its context keeps running
// after its answer is given up on; while it does, later /health calls wait on that same call rather
// than start another, so a hung backend holds one goroutine per check and tenant, not one per
// request.
type healthChecks struct {
	checks   map[string]Check
	names    []string
	mu       sync.Mutex
	inflight map[string]*checkCall
}

type checkCall struct {
	done chan struct{}
	err  error
}

func newHealthChecks(checks map[string]Check) *healthChecks {
	h := &healthChecks{checks: checks, inflight: map[string]*checkCall{}}
	for n := range checks {
		h.names = append(h.names, n)
	}
	sort.Strings(h.names)
	return h
}

func (h *healthChecks) run(ctx context.Context, t tenant.ID) map[string]BackendStatus {
	wait, cancel := context.WithTimeout(ctx, HealthCheckTimeout)
	defer cancel()
	calls := make([]*checkCall, len(h.names))
	for i, n := range h.names {
		calls[i] = h.start(ctx, n, t)
	}
	out := make(map[string]BackendStatus, len(h.names))
	for i, n := range h.names {
		select {
		case <-calls[i].done:
		case <-wait.Done():
		}
		select {
		case <-calls[i].done:
			out[n] = backendStatus(calls[i].err)
		default:
			out[n] = BackendStatus{Status: health.Down, Error: fmt.Sprintf("timeout: no answer within %s", HealthCheckTimeout)}
		}
	}
	return out
}

// start runs check name for tenant t, or joins the call of it that is still running. The check
// gets its own deadline, detached from the request: a call may outlive the request that started it.
func (h *healthChecks) start(ctx context.Context, name string, t tenant.ID) *checkCall {
	key := name + "\x00" + t.String()
	h.mu.Lock()
	defer h.mu.Unlock()
	if c, ok := h.inflight[key]; ok {
		return c
	}
	c := &checkCall{done: make(chan struct{})}
	h.inflight[key] = c
	check := h.checks[name]
	go func() {
		defer func() {
			// A check runs on its own goroutine, out of reach of the recover middleware: a panic
			// here would end the process.
			if v := recover(); v != nil {
				c.err = fmt.Errorf("the check panicked: %v", v)
			}
			h.mu.Lock()
			delete(h.inflight, key)
			h.mu.Unlock()
			close(c.done)
		}()
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), HealthCheckTimeout)
		defer cancel()
		c.err = check(cctx)
	}()
	return c
}

func backendStatus(err error) BackendStatus {
	status, st := health.Classify(err)
	b := BackendStatus{Status: status}
	switch {
	case st != nil:
		b.Error = clip(st.Reason, maxDetailChars)
		// A catch-up of unknown extent (Total 0, as health.State has it) has no progress: "0 of
		// 0" read as a stuck or empty catch-up where the count is simply not known.
		if st.Status == health.CatchingUp && st.Total > 0 {
			b.Progress = &Progress{Done: st.Done, Total: st.Total}
		}
	case err != nil:
		b.Error = clip(err.Error(), maxDetailChars)
	}
	return b
}
