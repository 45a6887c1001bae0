// Package logging builds the process logger: JSON lines through log/slog, where every record logged
// with a request's context carries that request's id and tenant, so one grep of a request id finds
// every line a request caused, in any module.
package logging

import (
	"context"
	"io"
	"log/slog"

	"github.com/crispy-enigma/crispy/platform/request"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// New returns a JSON logger writing to w at level.
func New(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(ContextHandler{Handler: slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})})
}

// ContextHandler adds requestId and tenant from the record's context to every record.
type ContextHandler struct{ slog.Handler }

// Handle implements slog.Handler.
func (h ContextHandler) Handle(ctx context.Context, r slog.Record) error {
	if ctx != nil {
		if id := request.From(ctx).ID; id != "" {
			r.AddAttrs(slog.String("requestId", id))
		}
		if t, ok := tenant.FromContext(ctx); ok && !hasTenant(r) {
			r.AddAttrs(slog.String("tenant", t.String()))
		}
	}
	return h.Handler.Handle(ctx, r)
}

// hasTenant avoids a duplicate key when the caller already logged the tenant (the access log does).
func hasTenant(r slog.Record) bool {
	found := false
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "tenant" {
			found = true
			return false
		}
		return true
	})
	return found
}

// WithAttrs implements slog.Handler, keeping the context lookup on derived loggers.
func (h ContextHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return ContextHandler{Handler: h.Handler.WithAttrs(as)}
}

// WithGroup implements slog.Handler.
func (h ContextHandler) WithGroup(name string) slog.Handler {
	return ContextHandler{Handler: h.Handler.WithGroup(name)}
}
