package httpapi

import (
	"context"
	"net/http"
	"sort"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/crispy-enigma/crispy/platform/request"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// HealthzOutput is the liveness answer.
type HealthzOutput struct {
	Body struct {
		Status string `json:"status" example:"ok" doc:"ok when the process serves requests"`
	}
}

// BackendStatus is one backend's health.
type BackendStatus struct {
	Status string `json:"status" enum:"ok,down" doc:"ok or down"`
	Error  string `json:"error,omitempty" doc:"Why the backend is down"`
}

// HealthOutput is the tenant-scoped health answer.
type HealthOutput struct {
	Body struct {
		Status    string                   `json:"status" enum:"ok,degraded" doc:"ok when every backend is ok"`
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
	huma.Register(s.API, huma.Operation{OperationID: "get-health", Method: http.MethodGet, Path: "/health", Tags: []string{"health"},
		Summary: "Tenant-scoped health", Description: "Resolved, authenticated and rate-limited like every tenant route; reports each backend."},
		func(ctx context.Context, _ *struct{}) (*HealthOutput, error) {
			t, _ := tenant.FromContext(ctx)
			out := &HealthOutput{}
			out.Body.Tenant = t.String()
			out.Body.Timestamp = s.deps.Now().UTC()
			out.Body.RequestID = request.From(ctx).ID
			out.Body.Backends = map[string]BackendStatus{}
			out.Body.Status = "ok"
			names := make([]string, 0, len(s.deps.Checks))
			for n := range s.deps.Checks {
				names = append(names, n)
			}
			sort.Strings(names)
			for _, n := range names {
				cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				err := s.deps.Checks[n](cctx)
				cancel()
				if err != nil {
					out.Body.Status = "degraded"
					out.Body.Backends[n] = BackendStatus{Status: "down", Error: err.Error()}
					continue
				}
				out.Body.Backends[n] = BackendStatus{Status: "ok"}
			}
			return out, nil
		})
}
