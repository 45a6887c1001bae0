package tenancy

import (
	"fmt"
	"strings"

	"github.com/danielgtaylor/huma/v2"

	"github.com/crispy-enigma/crispy/modules/tenancy/events"
	"github.com/crispy-enigma/crispy/modules/tenancy/internal/domain"
	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/httpapi"
	"github.com/crispy-enigma/crispy/platform/request"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// RouteScope is the scope a tenant route needs of the key that calls it, by its path (the
// operation's template): the first path segment decides, so a route added under an existing
// segment needs no entry. "" means the route is in no scope: keys are refused there (fail closed),
// and TestEveryRouteHasAScope (cmd/crispy) names it.
func RouteScope(path string) string {
	seg := strings.TrimPrefix(path, "/")
	rest := ""
	if i := strings.IndexByte(seg, '/'); i >= 0 {
		seg, rest = seg[:i], seg[i+1:]
	}
	switch seg {
	case "chat", "sessions", "tts":
		return events.ScopeChat
	case "v1":
		if strings.HasPrefix(rest, "embeddings") {
			return events.ScopeSearch
		}
		return events.ScopeChat
	case "search":
		return events.ScopeSearch
	case "ingest", "documents":
		return events.ScopeIngest
	case "tools", "schema":
		return events.ScopeTools
	case "audit":
		return events.ScopeAudit
	case "usage", "metrics":
		return events.ScopeUsage
	}
	return ""
}

// Middleware is the huma middleware that enforces, after the tenant guard has admitted a request,
// what the credential may do there:
//   - an API key needs the route's scope (403 scope_required naming it);
//   - an admin key is admitted by the guard only to audit (GET /audit/*): elsewhere it is refused
//     like any key that is not the tenant's (401 invalid_api_key);
//   - a keyless tenant's audit routes need an audit key of the tenant or an admin key once either
//     exists (the tenant has an audit key, or the server has admin keys); a server with neither
//     keeps them open, as before (local use);
//   - a key bound to a user acts as that user (the request's user is replaced);
//   - adminOnly lists operations ("GET /metrics") that need an admin key whatever the tenant.
//
// Register it on the API before any operation (huma binds middleware at registration).
func (m *Module) Middleware(api huma.API, adminOnly ...string) func(huma.Context, func(huma.Context)) {
	only := map[string]bool{}
	for _, o := range adminOnly {
		only[o] = true
	}
	return func(hctx huma.Context, next func(huma.Context)) {
		op := hctx.Operation()
		if op == nil {
			next(hctx)
			return
		}
		ctx := hctx.Context()
		if only[op.Method+" "+op.Path] {
			id, err := m.adminOf(hctx)
			if err != nil {
				writeErr(api, hctx, err)
				return
			}
			info := request.From(ctx)
			info.Actor = id
			next(huma.WithContext(hctx, request.With(ctx, info)))
			return
		}
		t, ok := tenant.FromContext(ctx)
		if !ok {
			next(hctx) // public, or the admin API (its own check)
			return
		}
		scope := RouteScope(op.Path)
		info := request.From(ctx)
		cred := info.Actor
		switch {
		case strings.HasPrefix(cred, AdminCredentialPrefix):
			if scope != events.ScopeAudit {
				writeErr(api, hctx, apperr.New(apperr.KindUnauthorized, domain.CodeInvalidAPIKey,
					"an admin key is not a tenant's API key: it authorises /admin and auditing (GET /audit/*) only"))
				return
			}
		case strings.HasPrefix(cred, domain.KeyIDPrefix):
			e := m.entry(t)
			var k *domain.Key
			if e != nil {
				k = e.Key(cred)
			}
			if k == nil || scope == "" || !k.HasScope(scope) {
				writeErr(api, hctx, scopeRequired(scope, cred))
				return
			}
			auditor := k.HasScope(events.ScopeAudit)
			if (k.User != "" && info.User != k.User) || auditor != info.Auditor {
				if k.User != "" {
					info.User = k.User
				}
				info.Auditor = auditor
				hctx = huma.WithContext(hctx, request.With(ctx, info))
			}
		default: // admitted without a key: a keyless tenant
			if scope == events.ScopeAudit {
				e := m.entry(t)
				if (e != nil && e.HasAuditKey()) || len(m.admins) > 0 {
					writeErr(api, hctx, apperr.New(apperr.KindUnauthorized, domain.CodeAPIKeyRequired,
						fmt.Sprintf("auditing tenant %s needs one of its API keys with the audit scope, or an admin key (with x-tenant-id)", t)))
					return
				}
			}
		}
		next(hctx)
	}
}

func scopeRequired(scope, cred string) error {
	if scope == "" {
		return apperr.New(apperr.KindForbidden, domain.CodeScopeRequired, "this route belongs to no key scope, so no API key may call it")
	}
	e := apperr.New(apperr.KindForbidden, domain.CodeScopeRequired,
		fmt.Sprintf("the API key %s lacks the scope %q this route needs", cred, scope))
	return e.WithFields(apperr.FieldError{Location: "scope", Message: "required scope", Value: scope})
}

// entry is the served entry of tenant t (nil: not served).
func (m *Module) entry(t tenant.ID) *domain.Entry {
	dir := m.adm.Directory()
	if dir == nil {
		return nil
	}
	e, _ := dir.Get(t)
	return e
}

// adminOf authenticates an admin key (Authorization: Bearer, or x-api-key) and names it.
func (m *Module) adminOf(hctx huma.Context) (string, error) {
	key := ""
	if auth := hctx.Header("Authorization"); len(auth) > 7 && strings.EqualFold(auth[:7], "bearer ") {
		key = strings.TrimSpace(auth[7:])
	} else {
		key = hctx.Header("x-api-key")
	}
	if len(m.admins) == 0 {
		return "", apperr.New(apperr.KindUnauthorized, CodeAdminKeyRequired,
			"no admin key is configured: set CRISPY_ADMIN_KEY_SHA256 to the hash `crispy admin key new` prints, and restart")
	}
	if key == "" {
		return "", apperr.New(apperr.KindUnauthorized, CodeAdminKeyRequired, "an admin key is required (Authorization: Bearer <admin key>)")
	}
	id, ok := m.admins.match(key)
	if !ok {
		return "", apperr.New(apperr.KindUnauthorized, CodeInvalidAdminKey, "the admin key is not valid (tenant API keys never authorise this route)")
	}
	return id, nil
}

// Codes of the admin key check.
const (
	CodeAdminKeyRequired = "admin_key_required"
	CodeInvalidAdminKey  = "invalid_admin_key"
)

func writeErr(api huma.API, hctx huma.Context, err error) {
	p := httpapi.ProblemFor(hctx.Context(), err)
	p.Instance = hctx.URL().Path
	_ = huma.WriteErr(api, hctx, p.Status, p.Detail, p)
}
