package domain_test

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/modules/tenancy/events"
	"github.com/crispy-enigma/crispy/modules/tenancy/internal/domain"
	"github.com/crispy-enigma/crispy/platform/apperr"
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
			if got.Active() != c.active || !reflect.DeepEqual(got.Keys, c.keys) || !reflect.DeepEqual(got.Config.Hosts, c.hosts) ||
				got.LastRevision != c.rev || !got.Exists {
				t.Fatalf("fold = active %v keys %v hosts %v rev %d exists %v", got.Active(), got.Keys, got.Config.Hosts, got.LastRevision, got.Exists)
			}
		})
	}
	if empty := domain.NewTenant(tenant.MustParse("acme")); empty.Exists || empty.Active() {
		t.Fatal("a tenant without events exists")
	}
}

func types(t *testing.T, evs []any) []string {
	t.Helper()
	out := []string{}
	for _, e := range evs {
		typ, err := domain.EventType(e)
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

func TestDecodeRoundTrip(t *testing.T) {
	t.Parallel()
	enabled := false
	for _, e := range []any{
		events.TenantRegistered{Config: events.TenantConfig{ID: "a", Tools: events.Tools{Enabled: &enabled}}, Source: "f"},
		events.TenantConfigChanged{Config: events.TenantConfig{ID: "a", Features: map[string]bool{"rag": true}}},
		events.ApiKeyAdded{Hash: domain.HashKey("k")}, events.ApiKeyRevoked{Hash: domain.HashKey("k")}, events.TenantRemoved{Source: "f"},
	} {
		typ, err := domain.EventType(e)
		if err != nil {
			t.Fatal(err)
		}
		b := mustJSON(t, e)
		got, err := domain.Decode(typ, b)
		if err != nil || !reflect.DeepEqual(got, e) {
			t.Fatalf("decode %s = %#v, %v; want %#v", typ, got, err, e)
		}
	}
	if v, err := domain.Decode("tenancy.SomethingNew", []byte(`{}`)); v != nil || err != nil {
		t.Fatalf("unknown type = %v, %v", v, err)
	}
	if _, err := domain.EventType("nope"); err == nil {
		t.Fatal("a string is not an event")
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
	if p := domain.PolicyFor(events.RateLimit{}); p.KeyLimit != 70 || p.TenantLimit != 610 || p.Window != time.Minute {
		t.Fatalf("defaults = %+v", p)
	}
	if p := domain.PolicyFor(events.RateLimit{PerMinute: 30, Burst: 2, WindowSec: 10, TenantPerMinute: 100}); p.KeyLimit != 7 || p.TenantLimit != 19 || p.Window != 10*time.Second {
		t.Fatalf("custom = %+v", p)
	}
}

const sec = int64(time.Second)

func TestWindow(t *testing.T) {
	t.Parallel()
	win := 10 * time.Second
	base := 1_000 * sec // aligned to the window
	var w domain.Window
	for i := int64(0); i < 5; i++ {
		v := w.Check(base+i*sec, win, 5)
		if !v.Allowed || v.Remaining != 4-i || v.Limit != 5 {
			t.Fatalf("request %d: %+v", i, v)
		}
		w.Take()
	}
	v := w.Check(base+5*sec, win, 5)
	// The sliding estimate leaves room for one more only once the full bucket weighs 4: 2 s into the next.
	if v.Allowed || v.RetryAfter != 7*time.Second || v.Reset != 5*time.Second {
		t.Fatalf("sixth: %+v", v)
	}
	// Next bucket, 20% in: the previous 5 weigh 4, so one more fits and then none.
	v = w.Check(base+12*sec, win, 5)
	if !v.Allowed || v.Remaining != 0 {
		t.Fatalf("after roll: %+v", v)
	}
	w.Take()
	v = w.Check(base+12*sec, win, 5)
	if v.Allowed {
		t.Fatalf("over the sliding estimate: %+v", v)
	}
	// Retry when the previous bucket's weight has decayed by one request: at 40% of the bucket.
	if v.RetryAfter != 2*time.Second {
		t.Fatalf("retry after = %s", v.RetryAfter)
	}
	if v := w.Check(base+14*sec, win, 5); !v.Allowed {
		t.Fatalf("at the retry time: %+v", v)
	}
	// Two windows of silence forget everything.
	if v := w.Check(base+40*sec, win, 5); !v.Allowed || v.Remaining != 4 {
		t.Fatalf("after silence: %+v", v)
	}
}

func TestCombine(t *testing.T) {
	t.Parallel()
	ok := func(rem int64) domain.Verdict {
		return domain.Verdict{Allowed: true, Limit: 10, Remaining: rem, Reset: 1500 * time.Millisecond}
	}
	no := func(retry time.Duration) domain.Verdict {
		return domain.Verdict{Limit: 100, Reset: 3 * time.Second, RetryAfter: retry}
	}
	if d := domain.Combine(ok(5), ok(2)); !d.Allowed || d.Remaining != 2 || d.ResetSec != 2 {
		t.Fatalf("both allowed = %+v", d)
	}
	if d := domain.Combine(ok(5), no(1200*time.Millisecond)); d.Allowed || d.Remaining != 0 || d.RetryAfterSec != 2 || d.Limit != 100 {
		t.Fatalf("tenant refused = %+v", d)
	}
	if d := domain.Combine(no(time.Millisecond), no(4*time.Second)); d.Allowed || d.RetryAfterSec != 4 {
		t.Fatalf("both refused = %+v", d)
	}
	if d := domain.Combine(no(time.Nanosecond), ok(1)); d.RetryAfterSec != 1 {
		t.Fatalf("retry-after under a second = %+v", d)
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
