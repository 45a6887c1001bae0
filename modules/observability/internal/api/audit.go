// Package api holds the observability module's HTTP operations.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/crispy-enigma/crispy/modules/observability/events"
	"github.com/crispy-enigma/crispy/modules/observability/internal/audit"
	"github.com/crispy-enigma/crispy/modules/observability/internal/domain"
	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/request"
	"github.com/crispy-enigma/crispy/platform/sealing"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// SessionFunc rebuilds a session as of a time; nil when the conversation module is not wired.
type SessionFunc func(ctx context.Context, t tenant.ID, sessionID string, asOf time.Time) (domain.AuditedSession, error)

// Audit serves the audit endpoints.
type Audit struct {
	Store    eventstore.Store
	Sessions SessionFunc
	Now      func() time.Time
	Log      AuditLog // nil: the signed-log operations answer 503
}

const tag = "observability"

type KeyHeaders struct {
	APIKey        string `header:"x-api-key" doc:"The tenant's API key; audit endpoints require one"`
	Authorization string `header:"Authorization" doc:"Alternatively: Bearer <api key>"`
}

// requireKey enforces "audit endpoints need the tenant's key". The guard has already checked that a
// presented key belongs to the tenant; here we refuse requests that presented none (keyless tenants
// cannot be audited over HTTP; use crispy replay on the server).
func (k KeyHeaders) requireKey() error {
	if k.APIKey == "" && k.Authorization == "" {
		return apperr.New(apperr.KindUnauthorized, "audit_requires_api_key", "audit endpoints require the tenant's API key (x-api-key)")
	}
	return nil
}

// AuditEvent is one event with its envelope and hash.
type AuditEvent struct {
	ID        string          `json:"id"`
	Type      string          `json:"type"`
	Stream    string          `json:"stream"`
	Revision  uint64          `json:"revision"`
	Position  uint64          `json:"position"`
	Time      time.Time       `json:"time"`
	RequestID string          `json:"requestId"`
	Actor     string          `json:"actor" doc:"The authenticated credential that acted: key:<first 12 hex digits of the API key's SHA-256>, anonymous:<tenant> for a tenant without keys, or system:<component>. Never a secret."`
	User      string          `json:"user,omitempty" doc:"The user id the client asserted (x-user-id), unverified; absent when none was sent."`
	Data      json.RawMessage `json:"data" doc:"The data as stored, what the hash covers: sealed content reads {\"sealed\":{k,n,c},\"plain\":{…}}"`
	// Content and Erased open sealed data for the reader, beside the stored bytes the hash and
	// the inclusion proofs need.
	Content json.RawMessage `json:"content,omitempty" doc:"Sealed data opened with its key (absent for data stored plain, and once erased)"`
	Erased  bool            `json:"erased,omitempty" doc:"The data was sealed under a key since destroyed (a deleted or expired session, a deleted document): only data.plain remains"`
	Prev    string          `json:"prev"`
	Hash    string          `json:"hash"`
	// Causation and correlation ids are hashed with the event: with them an event as listed here
	// is enough to recompute its hash (crispy audit prove).
	CausationID   string `json:"causationId,omitempty"`
	CorrelationID string `json:"correlationId,omitempty"`
}

type eventsInput struct {
	KeyHeaders
	From   string `query:"from" doc:"RFC 3339; events at or after" example:"2026-11-01T00:00:00Z"`
	Until  string `query:"until" doc:"RFC 3339; events at or before"`
	Stream string `query:"stream" maxLength:"600" doc:"Stream name, with or without the t-{tenant}. prefix" example:"session-0b0f6a2e-0c4b-4a57-9a65-3f5f0f3a1d2e"`
	Type   string `query:"type" maxLength:"200" doc:"Event type" example:"conversation.UserMessageAdded"`
	Limit  int    `query:"limit" minimum:"1" maximum:"1000" default:"100"`
	Cursor string `query:"cursor" maxLength:"40" doc:"nextCursor of the previous page"`
}

type eventsOutput struct {
	Body struct {
		Events     []AuditEvent `json:"events"`
		NextCursor string       `json:"nextCursor,omitempty"`
		RequestID  string       `json:"requestId"`
	}
}

type verifyInput struct{ KeyHeaders }

type verifyOutput struct {
	Body struct {
		audit.Report
		RequestID string `json:"requestId"`
	}
}

type sessionInput struct {
	KeyHeaders
	SessionID string `path:"sessionId" format:"uuid" pattern:"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$" patternDescription:"a lowercase hyphenated UUID" doc:"Session id (a UUID, lowercase and hyphenated, as the chat endpoints take it)"`
	AsOf      string `query:"asOf" doc:"RFC 3339 instant; default now" example:"2026-11-20T12:00:00Z"`
}

type sessionOutput struct {
	Body struct {
		domain.AuditedSession
		RequestID string `json:"requestId"`
	}
}

// ParseTime parses an optional RFC 3339 query parameter.
func ParseTime(name, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, apperr.Invalid("invalid_time", "query."+name, name+" must be an RFC 3339 time such as 2026-11-20T12:00:00Z")
	}
	return t, nil
}

// Register mounts the audit operations.
func (a *Audit) Register(api huma.API) {
	a.RegisterLog(api)
	huma.Register(api, huma.Operation{OperationID: "list-audit-events", Method: http.MethodGet, Path: "/audit/events", Tags: []string{tag},
		Summary: "The tenant's events in global order", Description: "Every event of the tenant with its envelope and hash, filtered and paginated. Requires the tenant's API key; the read is itself recorded (AuditAccessed)."},
		func(ctx context.Context, in *eventsInput) (*eventsOutput, error) {
			t, err := tenantOf(ctx)
			if err != nil {
				return nil, err
			}
			if err := in.requireKey(); err != nil {
				return nil, err
			}
			var f audit.Filter
			if f.From, err = ParseTime("from", in.From); err != nil {
				return nil, err
			}
			if f.Until, err = ParseTime("until", in.Until); err != nil {
				return nil, err
			}
			f.Stream, f.Type = in.Stream, in.Type
			from := eventstore.Start
			if in.Cursor != "" {
				n, perr := strconv.ParseUint(in.Cursor, 10, 64)
				if perr != nil || n == 0 {
					return nil, apperr.Invalid("invalid_cursor", "query.cursor", "cursor must be the nextCursor of a previous page")
				}
				from = eventstore.Position(n)
			}
			// Listed as stored (the hash and the inclusion proofs are over those bytes), opened beside.
			evs, next, err := audit.List(ctx, sealing.Raw(a.Store), t, f, from, in.Limit)
			if err != nil {
				return nil, apperr.Wrap(err, apperr.KindUnavailable, "eventstore_unavailable", "the event store could not be read; try again")
			}
			out := &eventsOutput{}
			out.Body.Events = make([]AuditEvent, len(evs))
			for i, e := range evs {
				out.Body.Events[i] = AuditEvent{ID: e.ID, Type: e.Type, Stream: e.Stream, Revision: e.Revision, Position: uint64(e.Position),
					Time: e.Time, RequestID: e.RequestID, Actor: e.Actor, User: e.User, Data: e.Data, Prev: e.Prev, Hash: e.Hash,
					CausationID: e.CausationID, CorrelationID: e.CorrelationID}
				if ss, ok := sealing.Find(a.Store); ok && sealing.IsSealed(e.Data) {
					o, err := ss.Sealer().OpenEvent(ctx, e)
					if errors.Is(err, eventstore.ErrCorrupt) || err == nil && o.Unreadable {
						continue // altered: listed as stored, for verification to name
					}
					if err != nil {
						return nil, apperr.Wrap(err, apperr.KindUnavailable, "keystore_unavailable", "the data keys could not be read; try again")
					}
					out.Body.Events[i].Erased = o.Erased
					if !o.Erased {
						out.Body.Events[i].Content = o.Data
					}
				}
			}
			if next != 0 {
				out.Body.NextCursor = strconv.FormatUint(uint64(next), 10)
			}
			out.Body.RequestID = request.From(ctx).ID
			err = a.record(ctx, t, "events", map[string]string{"from": in.From, "until": in.Until, "stream": in.Stream, "type": in.Type, "cursor": in.Cursor}, len(evs))
			return out, err
		})

	huma.Register(api, huma.Operation{OperationID: "verify-audit", Method: http.MethodGet, Path: "/audit/verify", Tags: []string{tag},
		Summary: "Verify the tenant's hash chains", Description: "Walks every stream's hash chain: {ok, eventsChecked, firstBadEvent}. Requires the tenant's API key."},
		func(ctx context.Context, in *verifyInput) (*verifyOutput, error) {
			t, err := tenantOf(ctx)
			if err != nil {
				return nil, err
			}
			if err := in.requireKey(); err != nil {
				return nil, err
			}
			rep, err := audit.Verify(ctx, a.Store, t, nil)
			switch {
			case errors.Is(err, eventstore.ErrCorrupt):
				// An unreadable record fails verification like a broken link; its details go to the log.
				rep.OK = false
				rep.FirstBadEvent = &audit.BadEvent{Reason: "a record after the last checked event could not be read back as written"}
			case err != nil:
				return nil, apperr.Wrap(err, apperr.KindUnavailable, "eventstore_unavailable", "the event store could not be read; try again")
			}
			out := &verifyOutput{}
			out.Body.Report = rep
			out.Body.RequestID = request.From(ctx).ID
			// Verification is read-only (issue 10): unlike the reads that show content, it records no
			// AuditAccessed event. It reveals no event data, appending to the chains it checks would
			// change what it reports, and it must answer while the store refuses writes (a full disk).
			return out, nil
		})

	huma.Register(api, huma.Operation{OperationID: "get-audit-session", Method: http.MethodGet, Path: "/audit/sessions/{sessionId}", Tags: []string{tag},
		Summary: "A session as it stood at a time", Description: "Rebuilt from the session's events up to asOf. A deleted or expired session shows that and when, not its erased content. Requires the tenant's API key."},
		func(ctx context.Context, in *sessionInput) (*sessionOutput, error) {
			t, err := tenantOf(ctx)
			if err != nil {
				return nil, err
			}
			if err := in.requireKey(); err != nil {
				return nil, err
			}
			asOf, err := ParseTime("asOf", in.AsOf)
			if err != nil {
				return nil, err
			}
			if asOf.IsZero() {
				asOf = a.Now()
			}
			if a.Sessions == nil {
				return nil, apperr.New(apperr.KindUnavailable, "sessions_unavailable", "session audit needs the conversation module, which is not running")
			}
			s, err := a.Sessions(ctx, t, in.SessionID, asOf)
			if err != nil {
				return nil, err
			}
			out := &sessionOutput{}
			out.Body.AuditedSession = s
			out.Body.RequestID = request.From(ctx).ID
			return out, a.record(ctx, t, "sessions", map[string]string{"sessionId": in.SessionID, "asOf": asOf.Format(time.RFC3339Nano)}, 1)
		})
}

func (a *Audit) record(ctx context.Context, t tenant.ID, endpoint string, q map[string]string, n int) error {
	for k, v := range q {
		if v == "" {
			delete(q, k)
		}
	}
	ev, err := eventstore.NewEventData(events.TypeAuditAccessed, events.AuditAccessed{Endpoint: endpoint, Query: q, Results: n})
	if err != nil {
		return err
	}
	if _, err := a.Store.Append(ctx, tenant.MustStream(t, "audit-log", ""), eventstore.Any, ev); err != nil {
		// An audit read is served only once its access is on record; when the store cannot write
		// for now, say when to come back, as its own refusal does.
		ae := apperr.Wrap(err, apperr.KindUnavailable, "audit_record_failed", "could not record this audit access; the audit was not served")
		if cause, ok := apperr.As(err); ok && cause.Kind == apperr.KindUnavailable {
			ae.RetryAfterSec = cause.RetryAfterSec
		}
		return ae
	}
	return nil
}

// tenantOf returns the tenant the guard admitted. The guard admits every non-public operation, so a
// missing tenant is a wiring bug: answered as an internal error, never a panic.
func tenantOf(ctx context.Context) (tenant.ID, error) {
	t, ok := tenant.FromContext(ctx)
	if !ok {
		return tenant.ID{}, apperr.New(apperr.KindInternal, "tenant_missing", "the request reached a tenant-scoped operation without a tenant")
	}
	return t, nil
}
