package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/crispy-enigma/crispy/modules/tooling/events"
	"github.com/crispy-enigma/crispy/modules/tooling/internal/domain"
	"github.com/crispy-enigma/crispy/modules/tooling/internal/host"
	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/exposition"
	"github.com/crispy-enigma/crispy/platform/request"
	"github.com/crispy-enigma/crispy/platform/tenant"
	"github.com/crispy-enigma/crispy/platform/tracing"
	"github.com/crispy-enigma/crispy/plugins/sdk"
	"github.com/crispy-enigma/crispy/plugins/sdk/schema"
)

// Execute is one tool call.
type Execute struct {
	Tenant    tenant.ID
	Tool      string
	Params    json.RawMessage // nil: {}
	UserID    string
	RequestID string
}

// Executed is a successful call.
type Executed struct {
	Tool     string
	Version  string
	Result   json.RawMessage
	Duration time.Duration
}

// Execute checks the tenant's permissions and the input schema, runs the tool, checks the output
// schema, and records ToolInvoked then ToolSucceeded or ToolFailed in t-{tenant}.tool-audit. Once the
// tool is known every outcome is audited, refusals included.
func (s *Service) Execute(ctx context.Context, cmd Execute) (Executed, error) {
	if s.Tracer == nil {
		return s.execute(ctx, cmd)
	}
	ctx, span := tracing.StartToolSpan(ctx, s.Tracer, cmd.Tool, cmd.Tenant.String())
	res, err := s.execute(ctx, cmd)
	tracing.End(span, err, apperr.CodeOf(err))
	return res, err
}

func (s *Service) execute(ctx context.Context, cmd Execute) (Executed, error) {
	if cmd.Tenant.IsZero() {
		return Executed{}, errors.New("execute tool: no tenant")
	}
	if len(cmd.Params) == 0 || string(cmd.Params) == "null" {
		cmd.Params = json.RawMessage(`{}`)
	}
	if cmd.RequestID == "" {
		cmd.RequestID = request.From(ctx).ID
	}
	tool, err := s.Host.Lookup(ctx, cmd.Tool)
	if errors.Is(err, host.ErrNotFound) {
		return Executed{}, apperr.NotFound(domain.CodeNotFound, fmt.Sprintf("no tool named %q; GET /schema/tools lists the tools", cmd.Tool))
	}
	if err != nil {
		return Executed{}, apperr.Wrap(err, apperr.KindUnavailable, "tools_unavailable", "the tool host is not available")
	}
	stream, err := tenant.NewStream(cmd.Tenant, events.AuditCategory, "")
	if err != nil {
		return Executed{}, err
	}
	inv, err := uuid.NewV7()
	if err != nil {
		return Executed{}, fmt.Errorf("invocation id: %w", err)
	}
	fp, err := s.paramsHMAC(ctx, cmd.Tenant, cmd.Params)
	if err != nil {
		return Executed{}, err
	}
	base := events.ToolInvoked{InvocationID: inv.String(), Tenant: cmd.Tenant.String(), Tool: tool.Desc.Name,
		Version: tool.Desc.Version, RequestID: cmd.RequestID, UserID: cmd.UserID, ParamsHMAC: fp}
	if err := s.append(ctx, stream, events.TypeToolInvoked, base); err != nil {
		return Executed{}, err
	}
	start := s.Now()
	rctx, refusals := domain.WithRefusals(ctx)
	out, err := s.run(rctx, cmd, tool)
	if r := refusals.Err(); r != nil {
		// A model callback was refused by the tenant's token budget: the call answers with that
		// (429 budget_exceeded), not with what the tool made without the model.
		out, err = nil, r
	}
	dur := s.Now().Sub(start)
	// The outcome is recorded even when the caller has gone away.
	actx := context.WithoutCancel(ctx)
	if err != nil {
		code := apperr.CodeOf(err)
		if code == "" {
			code = "INTERNAL"
			if errors.Is(err, context.Canceled) {
				code = "CANCELLED"
			}
		}
		s.observe(cmd.Tenant, tool.Desc.Name, code, dur)
		if aerr := s.append(actx, stream, events.TypeToolFailed, events.ToolFailed{InvocationID: base.InvocationID, Tenant: base.Tenant,
			Tool: base.Tool, Version: base.Version, RequestID: base.RequestID, UserID: base.UserID, ParamsHMAC: base.ParamsHMAC,
			Success: false, DurationMs: ms(dur), ErrorCode: code}); aerr != nil {
			s.Log.ErrorContext(ctx, "tool audit append failed", "tool", tool.Desc.Name, "error", aerr)
		}
		return Executed{}, err
	}
	s.observe(cmd.Tenant, tool.Desc.Name, "OK", dur)
	if aerr := s.append(actx, stream, events.TypeToolSucceeded, events.ToolSucceeded{InvocationID: base.InvocationID, Tenant: base.Tenant,
		Tool: base.Tool, Version: base.Version, RequestID: base.RequestID, UserID: base.UserID, ParamsHMAC: base.ParamsHMAC,
		Success: true, DurationMs: ms(dur)}); aerr != nil {
		s.Log.ErrorContext(ctx, "tool audit append failed", "tool", tool.Desc.Name, "error", aerr)
	}
	return Executed{Tool: tool.Desc.Name, Version: tool.Desc.Version, Result: out, Duration: dur}, nil
}

// paramsHMAC fingerprints params with the tenant's secret, which the key store creates on the
// tenant's first call. Without it the call cannot be audited as it must be, so it is refused (before
// anything is recorded: this is the server's fault, not an outcome of the tool) rather than recorded
// with a guessable hash or none.
func (s *Service) paramsHMAC(ctx context.Context, t tenant.ID, params []byte) (string, error) {
	secret, err := s.Keys.Create(ctx, t, domain.ParamsKeyID)
	if err != nil {
		return "", apperr.Wrap(fmt.Errorf("tenant %s params secret: %w", t, err), apperr.KindUnavailable, "tool_audit_unavailable",
			"the tenant's audit secret could not be read, so the call was not run; retry shortly")
	}
	return domain.ParamsHMAC(secret, params), nil
}

func (s *Service) run(ctx context.Context, cmd Execute, tool host.Tool) (json.RawMessage, error) {
	cfg, err := s.policy(ctx, cmd.Tenant)
	if err != nil {
		return nil, fmt.Errorf("tenant policy: %w", err)
	}
	if !cfg.ToolAllowed(tool.Desc.Name) {
		return nil, apperr.New(apperr.KindForbidden, domain.CodeDenied, fmt.Sprintf("tenant %s does not allow tool %q", cmd.Tenant, tool.Desc.Name))
	}
	granted, revoked := domain.Grants(cfg, tool.Desc.Permissions)
	if len(revoked) > 0 {
		return nil, apperr.New(apperr.KindForbidden, domain.CodeDenied, fmt.Sprintf("tool %q needs %s, which tenant %s does not grant",
			tool.Desc.Name, strings.Join(revoked, ", "), cmd.Tenant))
	}
	if v := tool.Input.Validate(cmd.Params); len(v) > 0 {
		return nil, validationError("params do not match the tool's input schema", "body.params", v, apperr.KindInvalid, domain.CodeValidation)
	}
	out, err := s.Host.Call(ctx, tool.Desc.Name, sdk.Call{Params: cmd.Params, TenantID: cmd.Tenant.String(), RequestID: cmd.RequestID,
		UserID: cmd.UserID, Granted: granted, Capabilities: s.Capabilities})
	if err != nil {
		return nil, callError(tool, err)
	}
	if v := tool.Output.Validate(out); len(v) > 0 {
		return nil, validationError(fmt.Sprintf("tool %q returned output that does not match its output schema", tool.Desc.Name), "result", v,
			apperr.KindBadGateway, domain.CodeExecution)
	}
	return out, nil
}

func callError(tool host.Tool, err error) error {
	var te *sdk.Error
	switch {
	case errors.Is(err, host.ErrTimeout):
		return apperr.Wrap(err, apperr.KindTimeout, domain.CodeTimeout,
			fmt.Sprintf("tool %q did not finish within %s; it was stopped", tool.Desc.Name, tool.Desc.EffectiveTimeout()))
	case errors.Is(err, host.ErrCrashed):
		return apperr.Wrap(err, apperr.KindBadGateway, domain.CodeExecution,
			fmt.Sprintf("tool %q failed during the call; it will be restarted for the next call", tool.Desc.Name))
	case errors.As(err, &te):
		return apperr.Wrap(err, apperr.KindBadGateway, domain.CodeExecution, fmt.Sprintf("tool %q refused: %s (%s)", tool.Desc.Name, te.Message, te.Code))
	case errors.Is(err, host.ErrClosed):
		return apperr.Wrap(err, apperr.KindUnavailable, "tools_unavailable", "the tool host is shutting down")
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	}
	return apperr.Wrap(err, apperr.KindBadGateway, domain.CodeExecution, fmt.Sprintf("tool %q failed", tool.Desc.Name))
}

func validationError(msg, prefix string, vs []schema.Violation, kind apperr.Kind, code string) error {
	e := apperr.New(kind, code, msg)
	fields := make([]apperr.FieldError, 0, len(vs))
	for _, v := range vs {
		loc := prefix
		if v.Path != "" {
			loc += strings.ReplaceAll(v.Path, "/", ".")
		}
		fields = append(fields, apperr.FieldError{Location: loc, Message: v.Message})
	}
	return e.WithFields(fields...)
}

func (s *Service) append(ctx context.Context, stream tenant.Stream, typ string, v any) error {
	ed, err := eventstore.NewEventData(typ, v)
	if err != nil {
		return err
	}
	if _, err := s.Store.Append(ctx, stream, eventstore.Any, ed); err != nil {
		return fmt.Errorf("append %s to %s: %w", typ, stream, err)
	}
	return nil
}

func (s *Service) observe(t tenant.ID, tool, code string, d time.Duration) {
	if s.Metrics == nil {
		return
	}
	s.Metrics.GetOrCreateCounter(fmt.Sprintf(`crispy_tool_executions_total{tenant=%q,tool=%q,code=%q}`, t.String(), tool, code)).Inc()
	s.Metrics.GetOrCreatePrometheusHistogramExt(fmt.Sprintf(`crispy_tool_execution_duration_seconds{tool=%q}`, tool), exposition.LatencyBuckets).Update(d.Seconds())
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
