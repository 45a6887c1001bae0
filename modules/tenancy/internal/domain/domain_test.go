package domain_test

import (
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"testing/quick"
	"time"

	"github.com/crispy-enigma/crispy/modules/tenancy/events"
	"github.com/crispy-enigma/crispy/modules/tenancy/internal/domain"
	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/bus/codec"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

func fold(id string, evs ...any) *domain.Tenant {
	t := domain.NewTenant(tenant.MustParse(id))
	for i, e := range evs {
		t.Apply(uint64(i), e)
	}
	return t
}

func TestFold(t *testing.T) {
	t.Parallel()
	k1, k2 := domain.HashKey("one"), domain.HashKey("two")
	cfg := events.TenantConfig{ID: "acme", Hosts: []string{"acme.example"}}
	cfg2 := events.TenantConfig{ID: "acme", Hosts: []string{"api.acme.example"}}
	cases := []struct {
		name   string
		evs    []any
		active bool
		keys   []string
		hosts  []string
		rev    uint64
	}{
		{"registered", []any{events.TenantRegistered{Config: cfg}}, true, nil, cfg.Hosts, 0},
		{"keys added and revoked", []any{events.TenantRegistered{Config: cfg}, events.ApiKeyAdded{Hash: k1}, events.ApiKeyAdded{Hash: k2},
			events.ApiKeyRevoked{Hash: k1}}, true, []string{k2}, cfg.Hosts, 3},
		{"duplicate add is one key", []any{events.TenantRegistered{Config: cfg}, events.ApiKeyAdded{Hash: k1}, events.ApiKeyAdded{Hash: k1}}, true, []string{k1}, cfg.Hosts, 2},
		{"config changed", []any{events.TenantRegistered{Config: cfg}, events.TenantConfigChanged{Config: cfg2}}, true, nil, cfg2.Hosts, 1},
		{"removed drops keys", []any{events.TenantRegistered{Config: cfg}, events.ApiKeyAdded{Hash: k1}, events.TenantRemoved{}}, false, nil, cfg.Hosts, 2},
		{"re-registered starts clean", []any{events.TenantRegistered{Config: cfg}, events.ApiKeyAdded{Hash: k1}, events.TenantRemoved{},
			events.TenantRegistered{Config: cfg2}}, true, nil, cfg2.Hosts, 3},
		{"unknown event still advances revision", []any{events.TenantRegistered{Config: cfg}, nil}, true, nil, cfg.Hosts, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := fold("acme", c.evs...)
			if got.Active() != c.active || !reflect.DeepEqual(got.ActiveHashes(), c.keys) || !reflect.DeepEqual(got.Config.Hosts, c.hosts) ||
				got.LastRevision != c.rev || !got.Exists {
				t.Fatalf("fold = active %v keys %v hosts %v rev %d exists %v", got.Active(), got.ActiveHashes(), got.Config.Hosts, got.LastRevision, got.Exists)
			}
		})
	}
	if empty := domain.NewTenant(tenant.MustParse("acme")); empty.Exists || empty.Active() {
		t.Fatal("a tenant without events exists")
	}
}

// tenancyCodec is the event codec with the tenancy events, as the module builds it.
func tenancyCodec() *codec.Registry {
	c := codec.New()
	events.Register(c.Add)
	return c
}

func types(t *testing.T, evs []any) []string {
	t.Helper()
	out := []string{}
	c := tenancyCodec()
	for _, e := range evs {
		typ, err := c.NameOf(reflect.TypeOf(e))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, strings.TrimPrefix(typ, "tenancy."))
	}
	return out
}

func TestDiff(t *testing.T) {
	t.Parallel()
	k1, k2 := domain.HashKey("one"), domain.HashKey("two")
	cfg := events.TenantConfig{ID: "acme", Hosts: []string{"acme.example"}}
	recorded := []any{events.TenantRegistered{Config: cfg}, events.ApiKeyAdded{Hash: k1}}
	changed := cfg
	changed.RateLimit.PerMinute = 5
	cases := []struct {
		name string
		from []any
		want domain.Desired
		typs []string
	}{
		{"new tenant", nil, domain.Desired{Config: cfg, Keys: []string{k1}}, []string{"TenantRegistered", "ApiKeyAdded"}},
		{"no change", recorded, domain.Desired{Config: cfg, Keys: []string{k1}}, []string{}},
		{"nil and empty lists are the same", recorded, domain.Desired{Config: events.TenantConfig{ID: "acme", Hosts: []string{"acme.example"},
			Features: map[string]bool{}}, Keys: []string{k1}}, []string{}},
		{"config change", recorded, domain.Desired{Config: changed, Keys: []string{k1}}, []string{"TenantConfigChanged"}},
		{"key rotated", recorded, domain.Desired{Config: cfg, Keys: []string{k2}}, []string{"ApiKeyAdded", "ApiKeyRevoked"}},
		{"all changed", recorded, domain.Desired{Config: changed}, []string{"TenantConfigChanged", "ApiKeyRevoked"}},
		{"back after removal", append(append([]any{}, recorded...), events.TenantRemoved{}), domain.Desired{Config: cfg, Keys: []string{k1}},
			[]string{"TenantRegistered", "ApiKeyAdded"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tn := fold("acme", c.from...)
			evs, err := tn.Diff(c.want, "tenants.yaml")
			if err != nil {
				t.Fatal(err)
			}
			if got := types(t, evs); !reflect.DeepEqual(got, c.typs) {
				t.Fatalf("diff = %v, want %v", got, c.typs)
			}
			// Folding the diff reaches the desired state, and a second diff is empty.
			for i, e := range evs {
				tn.Apply(tn.LastRevision+uint64(i)+1, e)
			}
			again, _ := tn.Diff(c.want, "tenants.yaml")
			if len(again) != 0 {
				t.Fatalf("second diff = %v", types(t, again))
			}
		})
	}
}

func TestRemove(t *testing.T) {
	t.Parallel()
	tn := fold("acme", events.TenantRegistered{Config: events.TenantConfig{ID: "acme"}})
	if got := types(t, tn.Remove("f")); !reflect.DeepEqual(got, []string{"TenantRemoved"}) {
		t.Fatalf("remove = %v", got)
	}
	tn.Apply(1, events.TenantRemoved{})
	if got := tn.Remove("f"); len(got) != 0 {
		t.Fatalf("removing a removed tenant records %v", got)
	}
}

// Every event a tenant's stream holds is registered on the codec the module records and folds
// with, and comes back from its data as it was.
func TestEventsRoundTripThroughTheCodec(t *testing.T) {
	t.Parallel()
	enabled := false
	c := tenancyCodec()
	if err := c.Err(); err != nil {
		t.Fatal(err)
	}
	until := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	for _, e := range []any{
		events.TenantRegistered{Config: events.TenantConfig{ID: "a", Tools: events.Tools{Enabled: &enabled}}, Source: "f"},
		events.TenantConfigChanged{Config: events.TenantConfig{ID: "a", Features: map[string]bool{"rag": true}}},
		events.ApiKeyAdded{Hash: domain.HashKey("k")}, events.ApiKeyRevoked{Hash: domain.HashKey("k")}, events.TenantRemoved{Source: "f"},
		events.ApiKeyRotated{ID: "key:0123456789ab", Hash: domain.HashKey("k2"), PreviousValidUntil: until},
		events.TenantDeleted{Source: "api"}, events.ApiKeyChanged{ID: "key:0123456789ab", Name: "ci", Scopes: []string{"chat"}},
	} {
		data, err := c.Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.Decode(data.Type, data.Data)
		if err != nil || !reflect.DeepEqual(got, e) {
			t.Fatalf("decode %s = %#v, %v; want %#v", data.Type, got, err, e)
		}
	}
}

func entry(t *testing.T, id string, hosts []string, keys ...string) *domain.Entry {
	t.Helper()
	tn := fold(id, events.TenantRegistered{Config: events.TenantConfig{ID: id, Hosts: hosts, CORS: events.CORS{AllowedOrigins: []string{"https://app." + id + ".example"}}}})
	for i, k := range keys {
		tn.Apply(uint64(i+1), events.ApiKeyAdded{Hash: domain.HashKey(k)})
	}
	e, err := domain.NewEntry(tn)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestResolve(t *testing.T) {
	t.Parallel()
	acme := entry(t, "acme", []string{"acme.example"}, "key-a", "key-a2")
	beta := entry(t, "beta", []string{"beta.example"}, "key-b")
	open := entry(t, "open", []string{"open.example"})
	dir, err := domain.NewDirectory([]*domain.Entry{acme, beta, open}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		c      domain.Credentials
		want   string
		kind   apperr.Kind
		code   string
		reason string
	}{
		{"header and key", domain.Credentials{TenantHeader: "acme", APIKey: "key-a"}, "acme", 0, "", ""},
		{"header and second key", domain.Credentials{TenantHeader: "acme", APIKey: "key-a2"}, "acme", 0, "", ""},
		{"host and key", domain.Credentials{Host: "beta.example", APIKey: "key-b"}, "beta", 0, "", ""},
		{"key alone", domain.Credentials{APIKey: "key-b"}, "beta", 0, "", ""},
		{"header wins over host", domain.Credentials{TenantHeader: "open", Host: "acme.example"}, "open", 0, "", ""},
		{"keyless tenant by host", domain.Credentials{Host: "open.example"}, "open", 0, "", ""},
		{"unknown host falls to key", domain.Credentials{Host: "nowhere.example", APIKey: "key-a"}, "acme", 0, "", ""},
		{"missing key", domain.Credentials{TenantHeader: "acme"}, "", apperr.KindUnauthorized, domain.CodeAPIKeyRequired, domain.ReasonKeyRequired},
		{"wrong key", domain.Credentials{TenantHeader: "acme", APIKey: "nope"}, "", apperr.KindUnauthorized, domain.CodeInvalidAPIKey, domain.ReasonInvalidKey},
		{"other tenant's key with header", domain.Credentials{TenantHeader: "acme", APIKey: "key-b"}, "", apperr.KindUnauthorized, domain.CodeInvalidAPIKey, domain.ReasonInvalidKey},
		{"other tenant's key with host", domain.Credentials{Host: "acme.example", APIKey: "key-b"}, "", apperr.KindUnauthorized, domain.CodeInvalidAPIKey, domain.ReasonInvalidKey},
		{"key on keyless tenant", domain.Credentials{TenantHeader: "open", APIKey: "key-a"}, "", apperr.KindUnauthorized, domain.CodeInvalidAPIKey, domain.ReasonInvalidKey},
		{"unknown key alone", domain.Credentials{APIKey: "nope"}, "", apperr.KindUnauthorized, domain.CodeInvalidAPIKey, domain.ReasonInvalidKey},
		{"unknown tenant", domain.Credentials{TenantHeader: "ghost", APIKey: "key-a"}, "", apperr.KindNotFound, domain.CodeTenantNotFound, domain.ReasonTenantNotFound},
		{"invalid tenant id", domain.Credentials{TenantHeader: "Not_Valid"}, "", apperr.KindInvalid, domain.CodeInvalidTenantID, domain.ReasonInvalidTenantID},
		{"nothing named", domain.Credentials{}, "", apperr.KindNotFound, domain.CodeTenantNotFound, domain.ReasonTenantNotFound},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e, cred, reason, err := dir.ResolveCredential(c.c)
			if c.want != "" {
				if err != nil || e.ID.String() != c.want {
					t.Fatalf("resolve = %v, %v; want %s", e, err, c.want)
				}
				// The credential is the key's id (the start of the hash the tenants file lists),
				// or none when the tenant was admitted without a key.
				wantCred := ""
				if c.c.APIKey != "" {
					wantCred = "key:" + strings.TrimPrefix(domain.HashKey(c.c.APIKey), domain.HashPrefix)[:domain.KeyIDHexLen]
				}
				if cred != wantCred {
					t.Fatalf("credential = %q, want %q", cred, wantCred)
				}
				return
			}
			if cred != "" {
				t.Fatalf("a refusal named credential %q", cred)
			}
			ae, ok := apperr.As(err)
			if !ok || ae.Kind != c.kind || ae.Code != c.code || reason != c.reason || e != nil {
				t.Fatalf("resolve = %v, %q, %v; want %v %s %s", e, reason, err, c.kind, c.code, c.reason)
			}
		})
	}
}

func TestResolveDefault(t *testing.T) {
	t.Parallel()
	demo := entry(t, "demo", nil)
	dir, err := domain.NewDirectory([]*domain.Entry{demo}, demo)
	if err != nil {
		t.Fatal(err)
	}
	if e, _, err := dir.Resolve(domain.Credentials{Host: "localhost"}); err != nil || e.ID.String() != "demo" {
		t.Fatalf("default = %v, %v", e, err)
	}
	if _, _, err := dir.Resolve(domain.Credentials{TenantHeader: "other"}); apperr.KindOf(err) != apperr.KindNotFound {
		t.Fatalf("other tenant with a default = %v", err)
	}
}

func TestNewDirectoryRefusesSharedHosts(t *testing.T) {
	t.Parallel()
	_, err := domain.NewDirectory([]*domain.Entry{entry(t, "a", []string{"x.example"}), entry(t, "b", []string{"X.example"})}, nil)
	if err == nil || !strings.Contains(err.Error(), "x.example") {
		t.Fatalf("shared host = %v", err)
	}
	_, err = domain.NewDirectory([]*domain.Entry{entry(t, "a", nil), entry(t, "a", nil)}, nil)
	if err == nil {
		t.Fatal("duplicate id accepted")
	}
}

func TestCORSHeaders(t *testing.T) {
	t.Parallel()
	e := entry(t, "acme", nil)
	h := http.Header{}
	e.CORSHeaders(h, "https://evil.example")
	if len(h) != 0 {
		t.Fatalf("foreign origin got %v", h)
	}
	e.CORSHeaders(h, "https://APP.acme.example")
	if h.Get("Access-Control-Allow-Origin") != "https://APP.acme.example" || h.Get("Vary") != "Origin" {
		t.Fatalf("allowed origin got %v", h)
	}
}

func TestKeys(t *testing.T) {
	t.Parallel()
	k, h, err := domain.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	k2, _, _ := domain.NewKey()
	if !strings.HasPrefix(k, domain.KeyPrefix) || len(k) != len(domain.KeyPrefix)+43 || k == k2 {
		t.Fatalf("key %q / %q", k, k2)
	}
	if h != domain.HashKey(k) {
		t.Fatal("hash is not the key's")
	}
	norm, _, err := domain.ParseHash(strings.ToUpper(h[:7]) + strings.ToUpper(h[7:]))
	if err == nil {
		t.Fatalf("upper-case prefix accepted as %s", norm)
	}
	if norm, _, err = domain.ParseHash(h[:7] + strings.ToUpper(h[7:])); err != nil || norm != h {
		t.Fatalf("upper-case hex = %q, %v", norm, err)
	}
	for _, bad := range []string{k, "sha256:abc", "sha256:" + strings.Repeat("g", 64), "md5:" + strings.Repeat("a", 64)} {
		if _, _, err := domain.ParseHash(bad); err == nil {
			t.Errorf("ParseHash(%q) accepted", bad)
		}
	}
}

func TestPolicyFor(t *testing.T) {
	t.Parallel()
	p := domain.PolicyFor(events.RateLimit{})
	if p.User != (domain.Limit{PerMinute: 60, Burst: 10}) || p.Key != p.User || p.Tenant != (domain.Limit{PerMinute: 600, Burst: 100}) {
		t.Fatalf("defaults = %+v", p)
	}
	// windowSec no longer scales anything: perMinute is the ceiling over any 60 s, burst over any 1 s.
	p = domain.PolicyFor(events.RateLimit{PerMinute: 3, Burst: 2, WindowSec: 10, TenantPerMinute: 100, KeyPerMinute: 7})
	if p.User != (domain.Limit{PerMinute: 3, Burst: 2}) || p.Key != (domain.Limit{PerMinute: 7, Burst: 2}) || p.Tenant != (domain.Limit{PerMinute: 100, Burst: 20}) {
		t.Fatalf("custom = %+v", p)
	}
}

const sec = int64(time.Second)

// TestWindowPerMinuteIsACeiling is the bug of issue 14: perMinute 20 admitted 30 in a fresh window
// (the burst was added on top) and perMinute 3 with windowSec 10 admitted 14 in 60 s.
func TestWindowPerMinuteIsACeiling(t *testing.T) {
	t.Parallel()
	base := 1_000 * sec
	for _, c := range []struct {
		rl   events.RateLimit
		gap  time.Duration
		want int
	}{
		{events.RateLimit{PerMinute: 20, Burst: 10}, 100 * time.Millisecond, 20},
		{events.RateLimit{PerMinute: 3, WindowSec: 10}, time.Second, 3},
	} {
		l := domain.PolicyFor(c.rl).User
		var w domain.Window
		n := 0
		for at := base; at < base+60*sec; at += int64(c.gap) {
			if w.Check(at, l).Allowed {
				w.Take()
				n++
			}
		}
		if n != c.want {
			t.Errorf("%+v, one request every %s: %d admitted in 60 s, want %d", c.rl, c.gap, n, c.want)
		}
	}
}

func TestWindow(t *testing.T) {
	t.Parallel()
	base := 1_000 * sec // on a second boundary
	l := domain.Limit{PerMinute: 5, Burst: 2}
	var w domain.Window
	take := func(at int64) domain.Verdict {
		t.Helper()
		v := w.Check(at, l)
		if v.Allowed {
			w.Take()
		}
		return v
	}
	if v := take(base); !v.Allowed || v.Remaining != 4 || v.Limit != 5 {
		t.Fatalf("first: %+v", v)
	}
	if v := take(base + 1); !v.Allowed || v.Remaining != 3 {
		t.Fatalf("second: %+v", v)
	}
	// The third in the same second is over the burst of 2: retry once the first second's slot
	// has left the 1 s log (at most 1/32 s late).
	v := take(base + 2)
	if v.Allowed || !v.Burst || v.RetryAfter <= 0 || v.RetryAfter > time.Second+domain.SecondSlot {
		t.Fatalf("third: %+v", v)
	}
	if v := take(base + 2 + int64(v.RetryAfter)); !v.Allowed {
		t.Fatalf("at the burst's retry-after: %+v", v)
	}
	for _, at := range []int64{base + 10*sec, base + 20*sec} {
		if v := take(at); !v.Allowed {
			t.Fatalf("at %d s: %+v", (at-base)/sec, v)
		}
	}
	// Five in the minute: refused until the first two leave, 60 s (+ up to one slot) later.
	v = take(base + 30*sec)
	if v.Allowed || v.Burst || v.RetryAfter < 30*time.Second || v.RetryAfter > 31*time.Second || v.Reset != v.RetryAfter {
		t.Fatalf("sixth: %+v", v)
	}
	if v := take(base + 59*sec + 999*int64(time.Millisecond)); v.Allowed {
		t.Fatalf("inside 60 s of the first: %+v", v)
	}
	if v := take(base + 61*sec); !v.Allowed || v.Remaining != 1 { // the 3rd, 4th and 5th still count
		t.Fatalf("after the first left: %+v", v)
	}
	// A minute of silence forgets everything.
	if v := take(base + 200*sec); !v.Allowed || v.Remaining != 4 {
		t.Fatalf("after silence: %+v", v)
	}
}

// TestWindowCeilingProperty: over random arrival sequences (bursts, gaps, clock jumps), no 60 s
// span holds more than perMinute accepted requests and no 1 s span more than burst. testing/quick
// (the standard library) rather than rapid: rapid resolves, but this needs no shrinking to read a
// counter-example (the test prints the offending span) and no new module in go.mod.
func TestWindowCeilingProperty(t *testing.T) {
	t.Parallel()
	prop := func(per, burst uint8, seed int64, start uint32) bool {
		l := domain.Limit{PerMinute: int64(per%50) + 1, Burst: int64(burst % 12)}
		r := rand.New(rand.NewPCG(uint64(seed), 14))
		var w domain.Window
		at := 1_000*sec + int64(start)
		var acc []int64
		for range 600 {
			// Mostly sub-second gaps, sometimes seconds, rarely a minute or more.
			switch k := r.IntN(32); {
			case k == 0:
				at += r.Int64N(120 * sec)
			case k < 6:
				at += r.Int64N(5 * sec)
			default:
				at += r.Int64N(300 * int64(time.Millisecond))
			}
			if w.Check(at, l).Allowed {
				w.Take()
				acc = append(acc, at)
			}
		}
		return spanOK(t, acc, 60*sec, l.PerMinute) && (l.Burst == 0 || spanOK(t, acc, sec, l.Burst))
	}
	if err := quick.Check(prop, &quick.Config{MaxCount: 2000}); err != nil {
		t.Fatal(err)
	}
}

// spanOK checks that no half-open span of length w holds more than limit of the sorted times.
func spanOK(t *testing.T, times []int64, w, limit int64) bool {
	for i := range times {
		j := i + int(limit)
		if j < len(times) && times[j]-times[i] < w {
			t.Logf("%d accepted within %s: %d..%d", limit+1, time.Duration(w), times[i], times[j])
			return false
		}
	}
	return true
}

func TestCombine(t *testing.T) {
	t.Parallel()
	ok := func(rem int64) domain.Verdict {
		return domain.Verdict{Allowed: true, Limit: 10, Remaining: rem, Reset: 1500 * time.Millisecond}
	}
	no := func(retry time.Duration) domain.Verdict {
		return domain.Verdict{Limit: 100, Reset: 3 * time.Second, RetryAfter: retry, Kind: domain.ScopeKey}
	}
	if d := domain.Combine(ok(5), ok(2)); !d.Allowed || d.Remaining != 2 || d.ResetSec != 2 {
		t.Fatalf("both allowed = %+v", d)
	}
	if d := domain.Combine(ok(5), no(1200*time.Millisecond), ok(1)); d.Allowed || d.Remaining != 0 || d.RetryAfterSec != 2 || d.Limit != 100 || d.Scope != domain.ScopeKey {
		t.Fatalf("key refused = %+v", d)
	}
	if d := domain.Combine(no(time.Millisecond), no(4*time.Second)); d.Allowed || d.RetryAfterSec != 4 {
		t.Fatalf("both refused = %+v", d)
	}
	if d := domain.Combine(no(time.Nanosecond), ok(1)); d.RetryAfterSec != 1 {
		t.Fatalf("retry-after under a second = %+v", d)
	}
	if d := domain.Combine(); !d.Allowed {
		t.Fatalf("no scope = %+v", d)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDirectoryAllowsOriginForPreflight(t *testing.T) {
	t.Parallel()
	d, err := domain.NewDirectory([]*domain.Entry{entry(t, "acme", []string{"acme.example.com"}), entry(t, "beta", []string{"beta.example.com"})}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		host, origin string
		want         bool
	}{
		{"acme.example.com", "https://app.acme.example", true},
		{"acme.example.com", "https://app.beta.example", false}, // the host names acme: beta's origin is not acme's
		{"api.example.com", "https://app.beta.example", true},   // no tenant host: any tenant's origin passes the preflight
		{"api.example.com", "https://evil.example", false},
	}
	for _, c := range cases {
		if got := d.AllowsOrigin(c.host, c.origin); got != c.want {
			t.Errorf("AllowsOrigin(%s, %s) = %v, want %v", c.host, c.origin, got, c.want)
		}
	}
}
