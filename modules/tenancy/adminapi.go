package tenancy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/crispy-enigma/crispy/modules/tenancy/events"
	"github.com/crispy-enigma/crispy/modules/tenancy/internal/adapters"
	"github.com/crispy-enigma/crispy/modules/tenancy/internal/app"
	"github.com/crispy-enigma/crispy/modules/tenancy/internal/domain"
	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/httpapi"
	"github.com/crispy-enigma/crispy/platform/request"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// SchemeAdminKey is the admin API's security scheme: an admin key as a bearer token.
const SchemeAdminKey = "adminKey"

// TenantView is a tenant as the admin API shows it.
type TenantView struct {
	ID string `json:"id"`
	// Origin is "api" for tenants made through the admin API, "file" for the tenants file's (which
	// a tenants-file sync may change or remove).
	Origin   string              `json:"origin" enum:"api,file"`
	Revision uint64              `json:"revision" doc:"Position of the last change in the tenant's stream"`
	Keys     int                 `json:"keys" doc:"API keys not revoked"`
	Config   events.TenantConfig `json:"config"`
}

// KeyView is an API key as the admin API shows it: never its secret.
type KeyView struct {
	events.APIKey
	Revoked            bool       `json:"revoked"`
	Expired            bool       `json:"expired"`
	LastUsedAt         *time.Time `json:"lastUsedAt,omitempty" doc:"When the key last authenticated a request: the latest of what this replica saw (to the second) and what any replica recorded (each records its keys' use at most once a minute, so a use on another replica shows within a minute, and survives restarts)"`
	LastUsedAtPending  bool       `json:"lastUsedAtPending,omitempty" example:"false" doc:"In the answer to a change only: true when lastUsedAt is what this replica saw alone, because the record of every replica's use is catching up after a start (the key list answers 503 catching_up meanwhile); list the keys again for the whole answer"`
	PreviousValidUntil *time.Time `json:"previousValidUntil,omitempty" doc:"After a rotation: until when the previous secret still works"`
}

func (m *Module) tenantView(t *domain.Tenant) TenantView {
	origin := "file"
	if !t.FromFile() {
		origin = "api"
	}
	return TenantView{ID: t.ID.String(), Origin: origin, Revision: t.LastRevision, Keys: len(t.ActiveHashes()), Config: t.Config}
}

func (m *Module) keyView(t tenant.ID, k domain.Key, recorded map[string]time.Time) KeyView {
	v := KeyView{APIKey: k.APIKey, Revoked: k.Revoked, Expired: k.ExpiresAt != nil && !m.now().Before(*k.ExpiresAt)}
	if v.Scopes == nil {
		v.Scopes = []string{}
	}
	lu := m.adm.LastUsed(t, k.ID)
	if r := recorded[k.ID]; r.After(lu) {
		lu = r
	}
	if !lu.IsZero() {
		v.LastUsedAt = &lu
	}
	if !k.PrevValidUntil.IsZero() && m.now().Before(k.PrevValidUntil) {
		p := k.PrevValidUntil
		v.PreviousValidUntil = &p
	}
	return v
}

// changedKeyView is the view of k in the answer to a change: the change is recorded, so a read model
// catching up does not fail the answer; it marks lastUsedAt as this replica's alone.
func (m *Module) changedKeyView(ctx context.Context, t tenant.ID, k domain.Key) KeyView {
	used, err := m.recordedUse(ctx, t, []domain.Key{k})
	v := m.keyView(t, k, used)
	v.LastUsedAtPending = err != nil
	return v
}

func (m *Module) manager() app.Manager {
	return app.Manager{Store: m.store, Codec: m.codec, Now: m.now, Served: m.adm.Directory,
		Observe: func(t *domain.Tenant) { m.observe(context.Background(), t) }}
}

type tenantIDPath struct {
	TenantID string `path:"tenantId" pattern:"^[a-z0-9][a-z0-9-]{0,62}$" maxLength:"63" doc:"Tenant id"`
}

type keyPath struct {
	TenantID string `path:"tenantId" pattern:"^[a-z0-9][a-z0-9-]{0,62}$" maxLength:"63" doc:"Tenant id"`
	KeyID    string `path:"keyId" pattern:"^key:[0-9a-f]{12}$" doc:"Key id (key:<12 hex digits>)"`
}

type tenantBodyInput struct {
	RawBody []byte
}

type tenantPutInput struct {
	TenantID string `path:"tenantId" pattern:"^[a-z0-9][a-z0-9-]{0,62}$" maxLength:"63" doc:"Tenant id"`
	RawBody  []byte
}

type tenantOutput struct {
	Body struct {
		TenantView
		RequestID string `json:"requestId"`
	}
}

type tenantListOutput struct {
	Body struct {
		Tenants   []TenantView `json:"tenants"`
		RequestID string       `json:"requestId"`
	}
}

type deletedOutput struct {
	Body struct {
		Deleted   string `json:"deleted"`
		Erased    bool   `json:"erased" doc:"Its data keys were destroyed: its sealed sessions and documents read as erased"`
		RequestID string `json:"requestId"`
	}
}

type keyCreateInput struct {
	TenantID string `path:"tenantId" pattern:"^[a-z0-9][a-z0-9-]{0,62}$" maxLength:"63" doc:"Tenant id"`
	Body     struct {
		Name      string            `json:"name,omitempty" maxLength:"200"`
		Scopes    []string          `json:"scopes,omitempty" maxItems:"6" doc:"chat, search, ingest, tools, audit, usage (default: all but audit)"`
		ExpiresAt *time.Time        `json:"expiresAt,omitempty" doc:"When the key stops working (RFC 3339); none: never"`
		Limits    *events.KeyLimits `json:"limits,omitempty"`
		Budget    *events.KeyBudget `json:"budget,omitempty"`
		User      string            `json:"user,omitempty" maxLength:"256" doc:"Bind the key to this end user: its requests act as this x-user-id"`
	}
}

type keySecretOutput struct {
	Body struct {
		KeyView
		Secret    string `json:"secret" doc:"The key itself, shown this once: only its SHA-256 is kept"`
		RequestID string `json:"requestId"`
	}
}

type keyOutput struct {
	Body struct {
		KeyView
		RequestID string `json:"requestId"`
	}
}

type keyListOutput struct {
	Body struct {
		Keys      []KeyView `json:"keys"`
		RequestID string    `json:"requestId"`
	}
}

type rotateInput struct {
	TenantID string `path:"tenantId" pattern:"^[a-z0-9][a-z0-9-]{0,62}$" maxLength:"63" doc:"Tenant id"`
	KeyID    string `path:"keyId" pattern:"^key:[0-9a-f]{12}$" doc:"Key id (key:<12 hex digits>)"`
	Body     struct {
		GraceSeconds int `json:"graceSeconds" minimum:"0" maximum:"2592000" doc:"How long the previous secret keeps working (0: not at all)"`
	}
}

// Mount registers the admin API (/admin/…, security scheme adminKey) on api. The operations are
// public to the tenant guard and check the admin key themselves.
func (m *Module) Mount(api huma.API) {
	oapi := api.OpenAPI()
	if oapi.Components.SecuritySchemes == nil {
		oapi.Components.SecuritySchemes = map[string]*huma.SecurityScheme{}
	}
	oapi.Components.SecuritySchemes[SchemeAdminKey] = &huma.SecurityScheme{Type: "http", Scheme: "bearer",
		Description: "An admin key (Authorization: Bearer <key>): its SHA-256 is listed in CRISPY_ADMIN_KEY_SHA256 (`crispy admin key new` makes one). Tenant API keys never authorise the admin API."}
	cfgSchema := oapi.Components.Schemas.Schema(reflect.TypeFor[events.TenantConfig](), true, "TenantConfig")
	auth := func(hctx huma.Context, next func(huma.Context)) {
		id, err := m.adminOf(hctx)
		if err != nil {
			writeErr(api, hctx, err)
			return
		}
		ctx := hctx.Context()
		info := request.From(ctx)
		info.Actor = id
		next(huma.WithContext(hctx, request.With(ctx, info)))
	}
	op := func(id, method, path, summary, desc string, status int) huma.Operation {
		o := huma.Operation{OperationID: id, Method: method, Path: path, Summary: summary, Description: desc,
			Tags: []string{"admin"}, DefaultStatus: status, Middlewares: huma.Middlewares{auth},
			Responses: map[string]*huma.Response{
				"401": httpapi.ProblemResponse("Missing or wrong admin key"),
				"404": httpapi.ProblemResponse("Unknown tenant or key"),
				"422": httpapi.ProblemResponse("Invalid request (field paths in errors)"),
			}}
		httpapi.Public(&o) // no tenant guard: the admin key is checked by auth
		return o
	}
	// The configuration is validated by the tenants file's own parser (parseConfig), which knows
	// the defaults of fields left out; the schema only documents it, so it is set after huma
	// registered the operation (else huma would validate against it first, requiring every field).
	body := func(o huma.Operation) huma.Operation {
		o.MaxBodyBytes = 256 << 10
		if o.Metadata == nil {
			o.Metadata = map[string]any{}
		}
		o.Metadata[metaConfigBody] = cfgSchema
		return o
	}
	m.mountApply(api, op("admin-apply-tenants-file", http.MethodPost, "/admin/apply", "Apply a tenants file",
		"Records the differences between the tenants file in the body and the recorded tenants, as a start or SIGHUP does with the server's own file (crispy tenant apply). Keys and tenants made through the admin API are left alone. The server's own file is applied again at its next start or SIGHUP.", 200))
	register(api, op("admin-list-tenants", http.MethodGet, "/admin/tenants", "List tenants", "Every tenant served, in id order.", 200),
		func(ctx context.Context, _ *struct{}) (*tenantListOutput, error) {
			out := &tenantListOutput{}
			out.Body.Tenants = []TenantView{}
			m.liveMu.Lock()
			ids := make([]string, 0, len(m.known))
			for id := range m.known {
				ids = append(ids, id)
			}
			sort.Strings(ids)
			dir := m.adm.Directory()
			for _, id := range ids {
				if _, ok := dir.Get(tenant.MustParse(id)); ok {
					out.Body.Tenants = append(out.Body.Tenants, m.tenantView(m.known[id]))
				}
			}
			m.liveMu.Unlock()
			out.Body.RequestID = request.From(ctx).ID
			return out, nil
		})
	register(api, body(op("admin-create-tenant", http.MethodPost, "/admin/tenants", "Create a tenant",
		"Records TenantRegistered in the tenant's stream; every replica serves it within a second. A tenants-file sync never removes it.", 201)),
		func(ctx context.Context, in *tenantBodyInput) (*tenantOutput, error) {
			cfg, err := parseConfig(in.RawBody, "")
			if err == nil {
				err = m.serveable(cfg, "body.")
			}
			if err != nil {
				return nil, err
			}
			t, err := m.manager().PutTenant(ctx, app.PutTenant{Config: cfg, Create: true})
			return m.tenantOut(ctx, t, err)
		})
	register(api, op("admin-get-tenant", http.MethodGet, "/admin/tenants/{tenantId}", "Read a tenant", "The tenant's configuration as recorded.", 200),
		func(ctx context.Context, in *tenantIDPath) (*tenantOutput, error) {
			id, err := tenant.Parse(in.TenantID)
			if err != nil {
				return nil, apperr.Invalid(domain.CodeInvalidTenantID, "path.tenantId", err.Error())
			}
			t, err := m.manager().Get(ctx, id)
			return m.tenantOut(ctx, t, err)
		})
	register(api, body(op("admin-update-tenant", http.MethodPut, "/admin/tenants/{tenantId}", "Replace a tenant's configuration",
		"Records TenantConfigChanged (nothing when equal). Fields left out take their defaults, as in the tenants file.", 200)),
		func(ctx context.Context, in *tenantPutInput) (*tenantOutput, error) {
			cfg, err := parseConfig(in.RawBody, in.TenantID)
			if err == nil {
				err = m.serveable(cfg, "body.")
			}
			if err != nil {
				return nil, err
			}
			t, err := m.manager().PutTenant(ctx, app.PutTenant{Config: cfg})
			return m.tenantOut(ctx, t, err)
		})
	register(api, op("admin-delete-tenant", http.MethodDelete, "/admin/tenants/{tenantId}", "Delete a tenant and erase its data",
		"Records TenantDeleted (it stops resolving on every replica, its keys stop working), then destroys its data keys: its sealed sessions and documents read as erased from then on, and its search index is emptied. Identifiers stay (see the README's erasure section).", 200),
		func(ctx context.Context, in *tenantIDPath) (*deletedOutput, error) {
			id, err := tenant.Parse(in.TenantID)
			if err != nil {
				return nil, apperr.Invalid(domain.CodeInvalidTenantID, "path.tenantId", err.Error())
			}
			if err := m.manager().DeleteTenant(ctx, id, m.erase); err != nil {
				if _, ok := apperr.As(err); ok {
					return nil, err
				}
				return nil, apperr.Wrap(err, apperr.KindUnavailable, "erasure_pending",
					"the tenant is deleted, but destroying its data keys failed; it is retried from the recorded deletion")
			}
			out := &deletedOutput{}
			out.Body.Deleted, out.Body.Erased, out.Body.RequestID = id.String(), m.erase != nil, request.From(ctx).ID
			return out, nil
		})
	list := op("admin-list-keys", http.MethodGet, "/admin/tenants/{tenantId}/keys", "List a tenant's API keys",
		"Id, name, scopes, created, expires, last used, revoked; never the secret.", 200)
	list.Responses["503"] = httpapi.ProblemResponse("The record of every replica's key use is catching up after a start (catching_up, with retry-after)")
	register(api, list,
		func(ctx context.Context, in *tenantIDPath) (*keyListOutput, error) {
			id, err := tenant.Parse(in.TenantID)
			if err != nil {
				return nil, apperr.Invalid(domain.CodeInvalidTenantID, "path.tenantId", err.Error())
			}
			t, err := m.manager().Get(ctx, id)
			if err != nil {
				return nil, err
			}
			out := &keyListOutput{}
			out.Body.Keys = []KeyView{}
			// Never a partial answer: without every replica's record, a key used only elsewhere
			// would list as never used.
			used, err := m.recordedUse(ctx, id, t.Keys)
			if err != nil {
				return nil, err
			}
			for _, k := range t.Keys {
				out.Body.Keys = append(out.Body.Keys, m.keyView(id, k, used))
			}
			out.Body.RequestID = request.From(ctx).ID
			return out, nil
		})
	register(api, op("admin-create-key", http.MethodPost, "/admin/tenants/{tenantId}/keys", "Create an API key",
		"Returns the secret once; only its SHA-256 is recorded (ApiKeyAdded). A tenants-file sync never revokes it.", 201),
		func(ctx context.Context, in *keyCreateInput) (*keySecretOutput, error) {
			id, err := tenant.Parse(in.TenantID)
			if err != nil {
				return nil, apperr.Invalid(domain.CodeInvalidTenantID, "path.tenantId", err.Error())
			}
			if err := checkKeyNumbers(in.Body.Limits, in.Body.Budget); err != nil {
				return nil, err
			}
			secret, k, err := m.manager().CreateKey(ctx, id, domain.NewKeyRequest{Name: in.Body.Name, Scopes: in.Body.Scopes,
				ExpiresAt: in.Body.ExpiresAt, Limits: in.Body.Limits, Budget: in.Body.Budget, User: in.Body.User})
			if err != nil {
				return nil, err
			}
			out := &keySecretOutput{}
			out.Body.KeyView, out.Body.Secret, out.Body.RequestID = m.changedKeyView(ctx, id, k), secret, request.From(ctx).ID
			return out, nil
		})
	register(api, op("admin-revoke-key", http.MethodPost, "/admin/tenants/{tenantId}/keys/{keyId}/revoke", "Revoke an API key",
		"Records ApiKeyRevoked: the key is refused with 401 key_revoked on every replica within a second.", 200),
		func(ctx context.Context, in *keyPath) (*keyOutput, error) {
			id, err := tenant.Parse(in.TenantID)
			if err != nil {
				return nil, apperr.Invalid(domain.CodeInvalidTenantID, "path.tenantId", err.Error())
			}
			k, err := m.manager().RevokeKey(ctx, id, in.KeyID)
			if err != nil {
				return nil, err
			}
			out := &keyOutput{}
			out.Body.KeyView, out.Body.RequestID = m.changedKeyView(ctx, id, k), request.From(ctx).ID
			return out, nil
		})
	patch := op("admin-edit-key", http.MethodPatch, "/admin/tenants/{tenantId}/keys/{keyId}", "Edit an API key",
		"Changes the key's name, scopes, expiry, limits and budget (a JSON merge patch: a field left out is unchanged, null removes an expiry, limits or budget). Records ApiKeyChanged: every replica applies it within a second. The secret never changes here (rotate the key); a revoked key cannot be edited (409 key_revoked), nor the name and scopes of a key the tenants file declares (409 key_from_file: they are the file's).", 200)
	patch.MaxBodyBytes = 64 << 10
	patch.Responses["409"] = httpapi.ProblemResponse("The key is revoked, or its name or scopes are the tenants file's")
	// Set on the spec after registration (register): huma would otherwise validate against it
	// first, where null is not a value of the documented types.
	patch.Metadata[metaRequestBody] = &huma.RequestBody{Required: true, Description: "The fields of the key to change",
		Content: map[string]*huma.MediaType{"application/json": {
			Schema:  oapi.Components.Schemas.Schema(reflect.TypeFor[KeyPatch](), true, "KeyPatch"),
			Example: map[string]any{"name": "ci", "scopes": []string{"chat", "search"}, "budget": map[string]any{"dailyUsd": 5}}}}}
	register(api, patch, func(ctx context.Context, in *keyPatchInput) (*keyOutput, error) {
		id, err := tenant.Parse(in.TenantID)
		if err != nil {
			return nil, apperr.Invalid(domain.CodeInvalidTenantID, "path.tenantId", err.Error())
		}
		edit, err := parseKeyPatch(in.RawBody)
		if err != nil {
			return nil, err
		}
		k, err := m.manager().EditKey(ctx, id, in.KeyID, edit)
		if err != nil {
			return nil, err
		}
		out := &keyOutput{}
		out.Body.KeyView, out.Body.RequestID = m.changedKeyView(ctx, id, k), request.From(ctx).ID
		return out, nil
	})
	register(api, op("admin-rotate-key", http.MethodPost, "/admin/tenants/{tenantId}/keys/{keyId}/rotate", "Rotate an API key's secret",
		"Records ApiKeyRotated: returns the new secret once; the previous one keeps working for graceSeconds, then answers 401 key_expired. The key keeps its id, scopes and limits.", 200),
		func(ctx context.Context, in *rotateInput) (*keySecretOutput, error) {
			id, err := tenant.Parse(in.TenantID)
			if err != nil {
				return nil, apperr.Invalid(domain.CodeInvalidTenantID, "path.tenantId", err.Error())
			}
			secret, k, err := m.manager().RotateKey(ctx, id, in.KeyID, time.Duration(in.Body.GraceSeconds)*time.Second)
			if err != nil {
				return nil, err
			}
			out := &keySecretOutput{}
			out.Body.KeyView, out.Body.Secret, out.Body.RequestID = m.changedKeyView(ctx, id, k), secret, request.From(ctx).ID
			return out, nil
		})
}

// KeyPatch is the body of PATCH /admin/tenants/{tenantId}/keys/{keyId}, for the spec: a JSON merge
// patch of the key's editable fields. A field left out is unchanged; null takes an optional one away.
type KeyPatch struct {
	Name      *string           `json:"name,omitempty" maxLength:"200"`
	Scopes    []string          `json:"scopes,omitempty" maxItems:"6" doc:"chat, search, ingest, tools, audit, usage; null or [] for the default (all but audit)"`
	ExpiresAt *time.Time        `json:"expiresAt,omitempty" doc:"When the key stops working (RFC 3339, in the future); null: never"`
	Limits    *events.KeyLimits `json:"limits,omitempty" doc:"The key's own rate limits (replaced whole); null: none"`
	Budget    *events.KeyBudget `json:"budget,omitempty" doc:"The key's own budgets, tokens and USD (replaced whole); null: none"`
}

type keyPatchInput struct {
	TenantID string `path:"tenantId" pattern:"^[a-z0-9][a-z0-9-]{0,62}$" maxLength:"63" doc:"Tenant id"`
	KeyID    string `path:"keyId" pattern:"^key:[0-9a-f]{12}$" doc:"Key id (key:<12 hex digits>)"`
	RawBody  []byte
}

// parseKeyPatch reads a key's merge patch, naming the field of every problem under body.
func parseKeyPatch(raw []byte) (app.KeyEdit, error) {
	var e app.KeyEdit
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
		return e, apperr.Invalid("invalid_body", "body", "the body must be a JSON object: the fields of the key to change (name, scopes, expiresAt, limits, budget)")
	}
	isNull := func(v json.RawMessage) bool { return string(bytes.TrimSpace(v)) == "null" }
	strict := func(v json.RawMessage, dst any) error {
		d := json.NewDecoder(bytes.NewReader(v))
		d.DisallowUnknownFields()
		return d.Decode(dst)
	}
	for _, k := range slices.Sorted(maps.Keys(obj)) {
		v, field := obj[k], "body."+k
		switch k {
		case "name":
			var n string
			if err := json.Unmarshal(v, &n); err != nil || len(n) > 200 {
				return e, apperr.Invalid("invalid_body", field, "name must be a string of at most 200 bytes")
			}
			e.Name = &n
		case "scopes":
			e.ScopesSet = true
			if isNull(v) {
				continue
			}
			if err := json.Unmarshal(v, &e.Scopes); err != nil || len(e.Scopes) > len(events.AllScopes) {
				return e, apperr.Invalid("invalid_scope", field, "scopes must be a list of at most 6 of "+strings.Join(events.AllScopes, ", "))
			}
		case "expiresAt":
			if isNull(v) {
				e.ClearExpiry = true
				continue
			}
			var at time.Time
			if err := json.Unmarshal(v, &at); err != nil {
				return e, apperr.Invalid("invalid_expiry", field, "expiresAt must be an RFC 3339 time, or null for never")
			}
			e.ExpiresAt = &at
		case "limits":
			if isNull(v) {
				e.ClearLimits = true
				continue
			}
			var l events.KeyLimits
			if err := strict(v, &l); err != nil {
				return e, apperr.Invalid("invalid_limits", field, "limits must be an object of perMinute, burst, tokensPerMinute (integers), or null")
			}
			e.Limits = &l
		case "budget":
			if isNull(v) {
				e.ClearBudget = true
				continue
			}
			var b events.KeyBudget
			if err := strict(v, &b); err != nil {
				return e, apperr.Invalid("invalid_budget", field, "budget must be an object of dailyTokens, monthlyTokens (integers), dailyUsd, monthlyUsd (numbers), or null")
			}
			e.Budget = &b
		case "secret", "hash":
			return e, apperr.Invalid("invalid_body", field, "a key's secret never changes by an edit: rotate the key (POST …/rotate)")
		case "user":
			return e, apperr.Invalid("invalid_body", field, "a key's bound user cannot change: create a key for the other user")
		default:
			return e, apperr.Invalid("invalid_body", field, "unknown field (known: name, scopes, expiresAt, limits, budget)")
		}
	}
	if err := checkKeyNumbers(e.Limits, e.Budget); err != nil {
		return e, err
	}
	return e, nil
}

type applyInput struct {
	RawBody []byte
}

type applyOutput struct {
	Body struct {
		Tenants     int    `json:"tenants" doc:"Tenants the file lists"`
		Registered  int    `json:"registered"`
		Changed     int    `json:"changed"`
		KeysAdded   int    `json:"keysAdded"`
		KeysRevoked int    `json:"keysRevoked"`
		Removed     bool   `json:"removalsRecorded" doc:"The tenants of an earlier file that this one no longer lists were recorded as removed (tenants of the admin API are never removed)"`
		RequestID   string `json:"requestId"`
	}
}

func (m *Module) mountApply(api huma.API, op huma.Operation) {
	op.MaxBodyBytes = 1 << 20
	register(api, op, func(ctx context.Context, in *applyInput) (*applyOutput, error) {
		ds, err := adapters.ParseTenants("body", in.RawBody)
		if err != nil {
			return nil, apperr.Invalid("invalid_tenants_file", "body", clipMsg(err.Error()))
		}
		for i, d := range ds {
			if tenant.MustParse(d.Config.ID).Reserved() {
				return nil, apperr.Invalid(domain.CodeInvalidTenantID, fmt.Sprintf("body.tenants[%d].id", i), "tenant id "+d.Config.ID+" is reserved")
			}
			if err := m.serveable(d.Config, fmt.Sprintf("body.tenants[%d].", i)); err != nil {
				return nil, err
			}
		}
		rep, err := m.startWith(ctx, app.SyncTenants{Desired: ds, Source: "apply"})
		if err != nil {
			return nil, err
		}
		out := &applyOutput{}
		b := &out.Body
		b.Tenants, b.Registered, b.Changed, b.KeysAdded, b.KeysRevoked = len(ds), rep.Registered, rep.Changed, rep.KeysAdded, rep.KeysRevoked
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		b.Removed = m.WaitSynced(wctx) == nil
		cancel()
		b.RequestID = request.From(ctx).ID
		return out, nil
	})
	if pi := api.OpenAPI().Paths[op.Path]; pi != nil && pi.Post != nil {
		pi.Post.RequestBody = &huma.RequestBody{Required: true, Description: "A tenants file (YAML, or JSON)",
			Content: map[string]*huma.MediaType{"application/yaml": {Schema: &huma.Schema{Type: huma.TypeString},
				Example: "tenants:\n  - id: acme\n    hosts: [acme.example.com]\n    apiKeys:\n      - {hash: \"sha256:…\", scopes: [chat, search]}\n"}}}
	}
}

func clipMsg(s string) string {
	if len(s) > 2000 {
		return s[:2000] + "…"
	}
	return s
}

// register is huma.Register that then states the admin security on the operation as recorded
// (the server's contract hook states every public operation as needing none).
func register[I, O any](api huma.API, op huma.Operation, h func(context.Context, *I) (*O, error)) {
	huma.Register(api, op, h)
	if pi := api.OpenAPI().Paths[op.Path]; pi != nil {
		for _, o := range []*huma.Operation{pi.Get, pi.Post, pi.Put, pi.Patch, pi.Delete} {
			if o == nil || o.OperationID != op.OperationID {
				continue
			}
			o.Security = []map[string][]string{{SchemeAdminKey: {}}}
			if sc, ok := op.Metadata[metaConfigBody].(*huma.Schema); ok {
				o.RequestBody = &huma.RequestBody{Required: true,
					Description: "A tenant as in the tenants file (every field but apiKeys: keys have their own routes); fields left out take their defaults",
					Content: map[string]*huma.MediaType{"application/json": {Schema: sc, Example: map[string]any{
						"id": "acme", "hosts": []string{"acme.example.com"}, "models": map[string]any{"chat": "openai:gpt-4o-mini"},
						"rateLimit": map[string]any{"perMinute": 60, "burst": 10, "windowSec": 60}, "tokenBudget": map[string]any{"daily": 200000},
						"features": map[string]bool{"rag": true}, "sessionRetentionDays": 30, "maxMessagesPerSession": 500,
						"tools": map[string]any{"enabled": true}, "cors": map[string]any{"allowedOrigins": []string{"https://app.acme.example"}}}}}}
			}
			if op.RequestBody != nil {
				o.RequestBody = op.RequestBody
			}
			if rb, ok := op.Metadata[metaRequestBody].(*huma.RequestBody); ok {
				o.RequestBody = rb
			}
		}
	}
}

const (
	metaConfigBody  = "crispy.admin.configBody"
	metaRequestBody = "crispy.admin.requestBody"
)

func (m *Module) tenantOut(ctx context.Context, t *domain.Tenant, err error) (*tenantOutput, error) {
	if err != nil {
		return nil, err
	}
	out := &tenantOutput{}
	out.Body.TenantView, out.Body.RequestID = m.tenantView(t), request.From(ctx).ID
	return out, nil
}

// parseConfig validates a tenant configuration exactly as the tenants file's (unknown fields, types,
// ranges, model names …), with the problems' field paths under body. pathID, when set, is the id
// the path names: the body may leave id out, or must repeat it.
func parseConfig(raw []byte, pathID string) (events.TenantConfig, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
		return events.TenantConfig{}, apperr.Invalid("invalid_body", "body", "the body must be a JSON object: a tenant of the tenants file")
	}
	if _, ok := obj["apiKeys"]; ok {
		return events.TenantConfig{}, apperr.Invalid("invalid_body", "body.apiKeys", "API keys are not part of the configuration here: use POST /admin/tenants/{tenantId}/keys")
	}
	if pathID != "" {
		if v, ok := obj["id"]; ok {
			var id string
			if json.Unmarshal(v, &id) != nil || id != pathID {
				return events.TenantConfig{}, apperr.Invalid("invalid_body", "body.id", fmt.Sprintf("id must be the path's tenant id %q, or left out", pathID))
			}
		}
		obj["id"], _ = json.Marshal(pathID)
		raw, _ = json.Marshal(obj)
	}
	cfg, fields := adapters.ParseTenantConfig(raw)
	if len(fields) > 0 {
		e := apperr.New(apperr.KindInvalid, "invalid_tenant", fields[0].Location+": "+fields[0].Message)
		return events.TenantConfig{}, e.WithFields(fields...)
	}
	if tenant.MustParse(cfg.ID).Reserved() {
		return events.TenantConfig{}, apperr.Invalid(domain.CodeInvalidTenantID, "body.id", fmt.Sprintf("tenant id %s is reserved for the deployment's own records", cfg.ID))
	}
	return cfg, nil
}

// CodeModelNotConfigured refuses a configuration naming a model this server cannot call.
const CodeModelNotConfigured = "model_not_configured"

// serveable applies Deps.CheckConfig, naming the field under prefix.
func (m *Module) serveable(c events.TenantConfig, prefix string) error {
	if m.checkConfig == nil {
		return nil
	}
	if field, err := m.checkConfig(c); err != nil {
		return apperr.Invalid(CodeModelNotConfigured, prefix+field, err.Error())
	}
	return nil
}

func checkKeyNumbers(l *events.KeyLimits, b *events.KeyBudget) error {
	if l != nil && (l.PerMinute < 0 || l.Burst < 0 || l.TokensPerMinute < 0) {
		return apperr.Invalid("invalid_limits", "body.limits", "limits must not be negative")
	}
	if b != nil && (b.DailyTokens < 0 || b.MonthlyTokens < 0 || b.DailyUSD < 0 || b.MonthlyUSD < 0) {
		return apperr.Invalid("invalid_budget", "body.budget", "budgets must not be negative")
	}
	return nil
}

// APIKey returns the recorded key whose id is keyID (a request's credential) of a served tenant:
// its scopes, limits, budget and bound user. False: no such key (or not a key: "anonymous:…",
// "admin:…").
func (m *Module) APIKey(t tenant.ID, keyID string) (events.APIKey, bool) {
	e := m.entry(t)
	if e == nil {
		return events.APIKey{}, false
	}
	k := e.Key(keyID)
	if k == nil {
		return events.APIKey{}, false
	}
	return k.APIKey, true
}
