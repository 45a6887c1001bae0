package httpapi_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/danielgtaylor/huma/v2"

	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/httpapi"
	"github.com/crispy-enigma/crispy/platform/request"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// keyGuard admits acme with the credential id of x-api-key "good", and acme without a key.
type keyGuard struct{}

func (keyGuard) Admit(_ context.Context, a httpapi.Admission) (httpapi.Admitted, error) {
	switch {
	case a.TenantHeader == "acme" && a.APIKey == "good":
		return httpapi.Admitted{Tenant: tenant.MustParse("acme"), Credential: "key:0123456789ab"}, nil
	case a.TenantHeader == "acme" && a.APIKey == "":
		return httpapi.Admitted{Tenant: tenant.MustParse("acme")}, nil
	}
	return httpapi.Admitted{}, apperr.New(apperr.KindUnauthorized, "invalid_api_key", "no")
}

type whoOut struct {
	Body struct {
		Actor string `json:"actor"`
		User  string `json:"user"`
	}
}

// The actor a handler (and so every event it appends) sees is what the guard authenticated, never
// what the client claims; the x-user-id it claims is kept apart as the user.
func TestActorIsTheCredentialAndUserIsAsserted(t *testing.T) {
	t.Parallel()
	s, err := httpapi.New(httpapi.Config{}, httpapi.Deps{Guard: keyGuard{}})
	if err != nil {
		t.Fatal(err)
	}
	huma.Register(s.API, huma.Operation{OperationID: "get-who", Method: http.MethodGet, Path: "/who"}, func(ctx context.Context, _ *struct{}) (*whoOut, error) {
		info := request.From(ctx)
		out := &whoOut{}
		out.Body.Actor, out.Body.User = info.Actor, info.User
		return out, nil
	})
	for _, c := range []struct{ key, user, actor string }{
		{"good", "alice", "key:0123456789ab"},
		{"good", "", "key:0123456789ab"},
		{"", "key:0123456789ab", "anonymous:acme"}, // a user id that looks like a credential stays a user
		{"", "system:tenancy", "anonymous:acme"},
	} {
		r := httptest.NewRequest(http.MethodGet, "/who", nil)
		r.Header.Set("x-tenant-id", "acme")
		if c.key != "" {
			r.Header.Set("x-api-key", c.key)
		}
		if c.user != "" {
			r.Header.Set("x-user-id", c.user)
		}
		w := httptest.NewRecorder()
		s.Handler().ServeHTTP(w, r)
		want := `{"actor":"` + c.actor + `","user":"` + c.user + `"}` + "\n"
		if w.Code != 200 || w.Body.String() != want {
			t.Errorf("key %q user %q: %d %s, want %s", c.key, c.user, w.Code, w.Body.String(), want)
		}
	}
}
