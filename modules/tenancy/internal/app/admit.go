package app

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/crispy-enigma/crispy/modules/tenancy/internal/domain"
	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/httpapi"
)

// Metric names (VictoriaMetrics, Prometheus text). The tenant label appears only for configured
// tenants, so a caller inventing tenant ids cannot grow the series without bound.
const (
	MetricAuthRefusals  = "crispy_tenancy_auth_refusals_total"
	MetricRateLimited   = "crispy_tenancy_rate_limited_total"
	MetricLimiterErrors = "crispy_tenancy_limiter_errors_total"
	// MetricLimiterBypassed counts requests decided without the limiter (it failed, or is cooling
	// down after a failure), by mode: open (fallback or uncounted) or closed (refused).
	MetricLimiterBypassed = "crispy_tenancy_limiter_bypassed_total"
	// CodeLimiterUnavailable refuses a request when the limiter fails closed.
	CodeLimiterUnavailable = "ratelimit_unavailable"
)

var refusalReasons = []string{domain.ReasonTenantNotFound, domain.ReasonInvalidTenantID, domain.ReasonKeyRequired, domain.ReasonInvalidKey,
	domain.ReasonKeyExpired, domain.ReasonKeyRevoked}

// errLogEvery spaces out the log lines of a failing limiter backend; the counter counts every one.
const errLogEvery = 10 * time.Second

// Admitter is the request path's guard (httpapi.Guard): it resolves the tenant (SPEC §1), checks the
// API key, validates x-user-id, applies the rate limit per tenant and per (tenant, user), and answers
// the x-ratelimit-* and CORS headers.
//
// When the limiter fails (Redis unreachable, or slower than its timeout), the Admitter fails open by
// default: it asks Fallback (a per-process limiter, so each replica still enforces the tenant's limit
// on its own share) or, with no Fallback, admits the request uncounted. With FailClosed it refuses
// instead (503 ratelimit_unavailable with retry-after), for deployments where an unmetered request
// costs more than a refused one. Either way it counts every failure and every request decided
// without the limiter, and logs at most one line per errLogEvery. After a failure it leaves the
// limiter alone for Cooldown, so a Redis that hangs costs one timeout per Cooldown rather than one
// per request.
type Admitter struct {
	Limiter    Limiter
	Fallback   Limiter
	Cooldown   time.Duration
	FailClosed bool
	Log        *slog.Logger
	Metrics    *metrics.Set
	Now        func() time.Time
	// Admin tells an admin key (and names it); nil: none. An admin key is admitted for the
	// tenant the request names, as "admin:…"; the scope check lets it audit, nothing else.
	Admin func(key string) (string, bool)

	used        lastUsed // when each key last authenticated a request (lastused.go)
	snap        atomic.Pointer[snapshot]
	lastErrLog  atomic.Int64
	bypassUntil atomic.Int64 // unix ns; the limiter is skipped before it
}

// snapshot pairs a directory with the metric counters of its tenants, built once per directory so
// the request path does not format metric names.
type snapshot struct {
	dir       *domain.Directory
	refusals  map[string]map[string]*metrics.Counter // tenant -> reason -> counter
	anonymous map[string]*metrics.Counter            // reason -> counter, for unconfigured tenants
	limited   map[string]*metrics.Counter            // tenant -> counter
	limErrs   *metrics.Counter
	bypassed  *metrics.Counter // in the Admitter's mode
}

// SetDirectory replaces the tenants served. Safe while requests are admitted.
func (a *Admitter) SetDirectory(d *domain.Directory) {
	s := &snapshot{dir: d}
	if a.Metrics != nil {
		s.refusals, s.anonymous, s.limited = map[string]map[string]*metrics.Counter{}, map[string]*metrics.Counter{}, map[string]*metrics.Counter{}
		for _, r := range refusalReasons {
			s.anonymous[r] = a.Metrics.GetOrCreateCounter(fmt.Sprintf(`%s{reason=%q}`, MetricAuthRefusals, r))
		}
		for _, id := range d.IDs() {
			m := map[string]*metrics.Counter{}
			for _, r := range refusalReasons {
				m[r] = a.Metrics.GetOrCreateCounter(fmt.Sprintf(`%s{reason=%q,tenant=%q}`, MetricAuthRefusals, r, id))
			}
			s.refusals[id.String()] = m
			s.limited[id.String()] = a.Metrics.GetOrCreateCounter(fmt.Sprintf(`%s{tenant=%q}`, MetricRateLimited, id))
		}
		s.limErrs = a.Metrics.GetOrCreateCounter(MetricLimiterErrors)
		s.bypassed = a.Metrics.GetOrCreateCounter(fmt.Sprintf(`%s{mode=%q}`, MetricLimiterBypassed, a.mode()))
	}
	a.snap.Store(s)
}

// Directory returns the tenants served (nil before SetDirectory).
func (a *Admitter) Directory() *domain.Directory {
	if s := a.snap.Load(); s != nil {
		return s.dir
	}
	return nil
}

// AllowsOrigin implements httpapi.Preflighter.
func (a *Admitter) AllowsOrigin(host, origin string) bool {
	s := a.snap.Load()
	return s != nil && s.dir.AllowsOrigin(host, origin)
}

// Admit implements httpapi.Guard.
func (a *Admitter) Admit(ctx context.Context, in httpapi.Admission) (httpapi.Admitted, error) {
	h := make(http.Header, 4)
	out := httpapi.Admitted{Headers: h}
	s := a.snap.Load()
	if s == nil {
		return out, apperr.New(apperr.KindUnavailable, "tenancy_not_ready", "the server is starting; retry shortly")
	}
	// Hosts are configured without the root's trailing dot; "acme.example." is the same name.
	c := domain.Credentials{TenantHeader: in.TenantHeader, Host: strings.TrimSuffix(in.Host, "."), APIKey: in.APIKey, Now: time.Unix(0, a.now())}
	if a.Admin != nil && in.APIKey != "" {
		if id, ok := a.Admin(in.APIKey); ok {
			return a.admitAdmin(s, c, id, in.Origin, out)
		}
	}
	e, cred, reason, err := s.dir.ResolveCredential(c)
	if err != nil {
		named := s.dir.Named(c)
		if named != nil {
			named.CORSHeaders(h, in.Origin)
		}
		a.refused(s, named, reason)
		return out, err
	}
	e.CORSHeaders(h, in.Origin)
	if err := validUserID(in.UserID); err != nil {
		return out, err
	}
	d, err := a.decide(ctx, s, e, scopesOf(e, cred, in.UserID))
	if err != nil {
		return out, err
	}
	// One backing array for the three values: the headers are on every response.
	vals := [...]string{strconv.FormatInt(d.Limit, 10), strconv.FormatInt(d.Remaining, 10), strconv.FormatInt(d.ResetSec, 10)}
	v := vals[:]
	h["X-Ratelimit-Limit"] = v[0:1:1]
	h["X-Ratelimit-Remaining"] = v[1:2:2]
	h["X-Ratelimit-Reset"] = v[2:3:3]
	if !d.Allowed {
		if s.limited != nil {
			s.limited[e.ID.String()].Inc()
		}
		ae := apperr.New(apperr.KindRateLimited, domain.CodeRateLimited,
			refusalMessage(d))
		ae.RetryAfterSec = int(d.RetryAfterSec)
		return out, ae
	}
	out.Tenant, out.Credential = e.ID, cred
	a.used.touch(e.ID, cred, a.now())
	return out, nil
}

func (a *Admitter) refused(s *snapshot, named *domain.Entry, reason string) {
	if s.anonymous == nil || reason == "" {
		return
	}
	if named != nil {
		s.refusals[named.ID.String()][reason].Inc()
		return
	}
	s.anonymous[reason].Inc()
}

func (a *Admitter) now() int64 {
	if a.Now != nil {
		return a.Now().UnixNano()
	}
	return time.Now().UnixNano()
}

// scopesOf lists the scopes a request counts against: the tenant, the API key that authenticated it
// (none for a keyless tenant) and its (tenant, user). Every one must admit it, so a user id made up
// per request still counts against its key's ceiling and the tenant's.
func scopesOf(e *domain.Entry, cred, user string) domain.Scopes {
	var sc domain.Scopes
	sc.Add(domain.ScopeTenant, "", e.Policy.Tenant)
	if strings.HasPrefix(cred, domain.KeyIDPrefix) {
		sc.Add(domain.ScopeKey, cred, e.KeyLimit(cred))
	}
	sc.Add(domain.ScopeUser, e.LimitUser(cred, user), e.Policy.User)
	return sc
}

func refusalMessage(d domain.Decision) string {
	per := "minute"
	if d.Burst {
		per = "second"
	}
	return fmt.Sprintf("the %s's rate limit (requests per %s) is reached; retry in %d s", domain.ScopeName(d.Scope), per, d.RetryAfterSec)
}

// decide asks the limiter, or decides without it while it is cooling down after a failure.
func (a *Admitter) decide(ctx context.Context, s *snapshot, e *domain.Entry, user domain.Scopes) (domain.Decision, error) {
	if a.Cooldown > 0 && (a.Fallback != nil || a.FailClosed) {
		if until := a.bypassUntil.Load(); until != 0 && a.now() < until {
			return a.without(ctx, s, e, user, time.Duration(until-a.now()))
		}
	}
	d, err := a.Limiter.Allow(ctx, e.ID, user)
	if err == nil {
		return d, nil
	}
	if ctx.Err() != nil {
		// The client went away: not the limiter's fault, and nobody reads the answer.
		return domain.Decision{}, ctx.Err()
	}
	a.failed(ctx, s, e, err)
	return a.without(ctx, s, e, user, a.Cooldown)
}

// failed counts and (at most once per errLogEvery) logs a failure of the limiter, and starts the
// cooldown.
func (a *Admitter) failed(ctx context.Context, s *snapshot, e *domain.Entry, cause error) {
	if s.limErrs != nil {
		s.limErrs.Inc()
	}
	t := a.now()
	if a.Cooldown > 0 {
		a.bypassUntil.Store(t + int64(a.Cooldown))
	}
	// 0 means never logged; t|1 keeps a stored time non-zero (a nanosecond is no matter here).
	if last := a.lastErrLog.Load(); (last == 0 || t-last >= int64(errLogEvery)) && a.lastErrLog.CompareAndSwap(last, t|1) && a.Log != nil {
		msg := "rate limiter failed: failing open (per-process fallback limits apply)"
		if a.FailClosed {
			msg = "rate limiter failed: failing closed (requests are refused with 503 until it answers)"
		}
		a.Log.WarnContext(ctx, msg, "tenant", e.ID.String(), "cooldown", a.Cooldown.String(), "error", cause.Error())
	}
}

// without decides while the limiter is unavailable: a refusal when failing closed (retry once the
// cooldown is over), else the fallback's decision, or an uncounted admission.
func (a *Admitter) without(ctx context.Context, s *snapshot, e *domain.Entry, user domain.Scopes, wait time.Duration) (domain.Decision, error) {
	if s.bypassed != nil {
		s.bypassed.Inc()
	}
	if a.FailClosed {
		ae := apperr.New(apperr.KindUnavailable, CodeLimiterUnavailable,
			"the rate limiter is unavailable and this server refuses unmetered requests; retry shortly")
		ae.RetryAfterSec = max(1, int((wait+time.Second-1)/time.Second))
		return domain.Decision{}, ae
	}
	if a.Fallback != nil {
		if d, err := a.Fallback.Allow(ctx, e.ID, user); err == nil {
			return d, nil
		}
	}
	return domain.Decision{Allowed: true, Limit: e.Policy.User.PerMinute, Remaining: e.Policy.User.PerMinute - 1}, nil
}

func (a *Admitter) mode() string {
	if a.FailClosed {
		return "closed"
	}
	return "open"
}

// validUserID bounds x-user-id (it becomes part of a limiter key and the audit actor) and keeps
// control characters out of keys and logs.
func validUserID(u string) error {
	bad := len(u) > domain.MaxUserIDLen
	for i := 0; i < len(u) && !bad; i++ {
		if u[i] < 0x20 || u[i] == 0x7f {
			bad = true
		}
	}
	if bad {
		return apperr.Invalid(domain.CodeInvalidUserID, "header.x-user-id",
			fmt.Sprintf("x-user-id must be at most %d printable characters", domain.MaxUserIDLen))
	}
	return nil
}
