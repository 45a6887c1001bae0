package app_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/crispy-enigma/crispy/modules/tenancy/events"
	"github.com/crispy-enigma/crispy/modules/tenancy/internal/app"
	"github.com/crispy-enigma/crispy/modules/tenancy/internal/domain"
	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/httpapi"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// limiterFunc adapts a function to app.Limiter.
type limiterFunc func(tenant.ID, domain.Scopes) (domain.Decision, error)

func (f limiterFunc) Allow(_ context.Context, t tenant.ID, s domain.Scopes) (domain.Decision, error) {
	return f(t, s)
}

func directory(t *testing.T) *domain.Directory {
	t.Helper()
	tn := domain.NewTenant(tenant.MustParse("acme"))
	tn.Apply(0, events.TenantRegistered{Config: events.TenantConfig{ID: "acme", RateLimit: events.RateLimit{PerMinute: 5, Burst: 1}}})
	e, err := domain.NewEntry(tn)
	if err != nil {
		t.Fatal(err)
	}
	d, err := domain.NewDirectory([]*domain.Entry{e}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestAdmitFailsOpenWithoutFallback(t *testing.T) {
	t.Parallel()
	var log bytes.Buffer
	set := metrics.NewSet()
	calls := 0
	a := &app.Admitter{
		Limiter: limiterFunc(func(tenant.ID, domain.Scopes) (domain.Decision, error) {
			calls++
			return domain.Decision{}, errors.New("connection refused")
		}),
		Log: slog.New(slog.NewTextHandler(&log, nil)), Metrics: set, Now: func() time.Time { return time.Unix(0, 0) },
	}
	a.SetDirectory(directory(t))
	for i := 0; i < 3; i++ {
		adm, err := a.Admit(context.Background(), httpapi.Admission{TenantHeader: "acme"})
		if err != nil || adm.Tenant.String() != "acme" || adm.Headers.Get("X-Ratelimit-Limit") != "5" {
			t.Fatalf("admit %d = %+v, %v", i, adm, err)
		}
	}
	if calls != 3 || strings.Count(log.String(), "rate limiter failed") != 1 || !strings.Contains(log.String(), "connection refused") {
		t.Fatalf("calls %d, log:\n%s", calls, log.String())
	}
	var b bytes.Buffer
	set.WritePrometheus(&b)
	if !strings.Contains(b.String(), app.MetricLimiterErrors+" 3") {
		t.Fatalf("metrics:\n%s", b.String())
	}
}

func TestAdmitRefusesBadUserIDs(t *testing.T) {
	t.Parallel()
	a := &app.Admitter{Limiter: limiterFunc(func(tenant.ID, domain.Scopes) (domain.Decision, error) {
		t.Fatal("the limiter saw an invalid user id")
		return domain.Decision{}, nil
	})}
	a.SetDirectory(directory(t))
	for _, u := range []string{strings.Repeat("x", domain.MaxUserIDLen+1), "ann\nbob", "tab\there", "nul\x00"} {
		_, err := a.Admit(context.Background(), httpapi.Admission{TenantHeader: "acme", UserID: u})
		if ae, ok := apperr.As(err); !ok || ae.Kind != apperr.KindInvalid || ae.Code != domain.CodeInvalidUserID {
			t.Fatalf("user %q: %v", u, err)
		}
	}
}

func TestAdmitPassesTenantUserAndPolicyToTheLimiter(t *testing.T) {
	t.Parallel()
	var gotT tenant.ID
	var got domain.Scopes
	a := &app.Admitter{Limiter: limiterFunc(func(id tenant.ID, s domain.Scopes) (domain.Decision, error) {
		gotT, got = id, s
		return domain.Decision{Allowed: false, Limit: 6, ResetSec: 12, RetryAfterSec: 9}, nil
	})}
	a.SetDirectory(directory(t))
	adm, err := a.Admit(context.Background(), httpapi.Admission{TenantHeader: "acme", UserID: "ann@example.com"})
	ae, ok := apperr.As(err)
	if !ok || ae.Kind != apperr.KindRateLimited || ae.Code != "rate_limited" || ae.RetryAfterSec != 9 || !adm.Tenant.IsZero() {
		t.Fatalf("refusal = %+v, %v", adm, err)
	}
	if adm.Headers.Get("X-Ratelimit-Remaining") != "0" || adm.Headers.Get("X-Ratelimit-Reset") != "12" {
		t.Fatalf("headers on a refusal: %v", adm.Headers)
	}
	// A keyless tenant: the tenant's total (10× the user's) and the user's; no key scope.
	want := domain.Scopes{N: 2, S: [domain.MaxScopes]domain.Scope{
		{Kind: domain.ScopeTenant, Limit: domain.Limit{PerMinute: 50, Burst: 10}},
		{Kind: domain.ScopeUser, ID: "ann@example.com", Limit: domain.Limit{PerMinute: 5, Burst: 1}}}}
	if gotT.String() != "acme" || got != want {
		t.Fatalf("limiter saw %s %+v", gotT, got)
	}
}

// A key's own limits (admin API) replace the tenant's keyPerMinute for that key, and a key bound
// to a user is limited as that user whatever x-user-id says.
func TestAdmitUsesTheKeysOwnLimitsAndBoundUser(t *testing.T) {
	t.Parallel()
	const secret = "ce_boundKeyForLimits"
	hash := domain.HashKey(secret)
	tn := domain.NewTenant(tenant.MustParse("acme"))
	tn.Apply(0, events.TenantRegistered{Config: events.TenantConfig{ID: "acme", RateLimit: events.RateLimit{PerMinute: 5, Burst: 1}}})
	tn.Apply(1, events.ApiKeyAdded{Hash: hash, Limits: &events.KeyLimits{PerMinute: 2, Burst: 2}, User: "ann"})
	e, err := domain.NewEntry(tn)
	if err != nil {
		t.Fatal(err)
	}
	d, err := domain.NewDirectory([]*domain.Entry{e}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got domain.Scopes
	a := &app.Admitter{Limiter: limiterFunc(func(_ tenant.ID, s domain.Scopes) (domain.Decision, error) {
		got = s
		return domain.Decision{Allowed: true}, nil
	})}
	a.SetDirectory(d)
	if _, err := a.Admit(context.Background(), httpapi.Admission{TenantHeader: "acme", APIKey: secret, UserID: "mallory"}); err != nil {
		t.Fatal(err)
	}
	if got.N != 3 || got.S[1].Kind != domain.ScopeKey || got.S[1].Limit != (domain.Limit{PerMinute: 2, Burst: 2}) ||
		got.S[2].ID != "ann" || got.S[2].Limit != (domain.Limit{PerMinute: 5, Burst: 1}) {
		t.Fatalf("scopes %+v", got)
	}
}
