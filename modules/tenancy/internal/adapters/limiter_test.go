package adapters_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/crispy-enigma/crispy/modules/tenancy/internal/adapters"
	"github.com/crispy-enigma/crispy/modules/tenancy/internal/app"
	"github.com/crispy-enigma/crispy/modules/tenancy/internal/domain"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// clock is a fake clock shared by a limiter and its test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

// epoch is aligned to every window the tests use, so bucket arithmetic is easy to follow.
var epoch = time.Unix(1_800_000_000, 0)

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

type newLimiter func(t *testing.T, now func() time.Time) app.Limiter

// scopes builds a request's scopes: the tenant's, key k's (none when ""), user u's.
func scopes(tl, kl, ul domain.Limit, k, u string) domain.Scopes {
	var s domain.Scopes
	s.Add(domain.ScopeTenant, "", tl)
	if k != "" {
		s.Add(domain.ScopeKey, k, kl)
	}
	s.Add(domain.ScopeUser, u, ul)
	return s
}

func perMin(n int64) domain.Limit { return domain.Limit{PerMinute: n} }

// runLimiterAcceptance is the one behaviour every app.Limiter implementation must show.
func runLimiterAcceptance(t *testing.T, newFn newLimiter) {
	ctx := context.Background()
	acme, beta := tenant.MustParse("acme"), tenant.MustParse("beta")
	setup := func(t *testing.T) (app.Limiter, *clock) {
		c := &clock{t: epoch}
		return newFn(t, c.Now), c
	}
	allow := func(t *testing.T, l app.Limiter, id tenant.ID, s domain.Scopes) domain.Decision {
		t.Helper()
		d, err := l.Allow(ctx, id, s)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}

	t.Run("per-minute ceiling then refusal with retry-after", func(t *testing.T) {
		l, c := setup(t)
		s := scopes(perMin(100), domain.Limit{}, perMin(3), "", "")
		for i := int64(0); i < 3; i++ {
			c.Set(epoch.Add(time.Duration(i) * 10 * time.Second))
			d := allow(t, l, acme, s)
			if !d.Allowed || d.Limit != 3 || d.Remaining != 2-i || d.Scope != domain.ScopeUser {
				t.Fatalf("request %d: %+v", i, d)
			}
		}
		c.Set(epoch.Add(30 * time.Second))
		d := allow(t, l, acme, s)
		if d.Allowed || d.Remaining != 0 || d.Limit != 3 || d.RetryAfterSec != 31 || d.ResetSec != 31 {
			t.Fatalf("fourth: %+v", d)
		}
		c.Set(epoch.Add(60 * time.Second))
		if d := allow(t, l, acme, s); d.Allowed {
			t.Fatalf("60 s after the first, inside its counting slot: %+v", d)
		}
		c.Set(epoch.Add(61 * time.Second))
		if d := allow(t, l, acme, s); !d.Allowed || d.Remaining != 0 {
			t.Fatalf("at retry-after: %+v", d)
		}
	})

	t.Run("burst caps any second", func(t *testing.T) {
		l, c := setup(t)
		s := scopes(perMin(100), domain.Limit{}, domain.Limit{PerMinute: 20, Burst: 2}, "", "u")
		allow(t, l, acme, s)
		allow(t, l, acme, s)
		d := allow(t, l, acme, s)
		if d.Allowed || !d.Burst || d.RetryAfterSec != 2 {
			t.Fatalf("third in a second: %+v", d)
		}
		c.Set(epoch.Add(time.Second + domain.SecondSlot))
		if d := allow(t, l, acme, s); !d.Allowed || d.Remaining != 17 {
			t.Fatalf("a second later: %+v", d)
		}
	})

	t.Run("invented user ids stay within the key's and the tenant's ceilings", func(t *testing.T) {
		l, _ := setup(t)
		for i := 0; i < 4; i++ {
			if d := allow(t, l, acme, scopes(perMin(6), perMin(4), perMin(2), "key:1", fmt.Sprint("u", i))); !d.Allowed {
				t.Fatalf("user %d refused: %+v", i, d)
			}
		}
		if d := allow(t, l, acme, scopes(perMin(6), perMin(4), perMin(2), "key:1", "fresh")); d.Allowed || d.Scope != domain.ScopeKey || d.Limit != 4 {
			t.Fatalf("a fifth invented user of the key: %+v", d)
		}
		allow(t, l, acme, scopes(perMin(6), perMin(4), perMin(2), "key:2", "a"))
		allow(t, l, acme, scopes(perMin(6), perMin(4), perMin(2), "key:2", "b"))
		if d := allow(t, l, acme, scopes(perMin(6), perMin(4), perMin(2), "key:2", "c")); d.Allowed || d.Scope != domain.ScopeTenant || d.Limit != 6 {
			t.Fatalf("over the tenant's total: %+v", d)
		}
	})

	t.Run("tenants are isolated", func(t *testing.T) {
		l, _ := setup(t)
		s := scopes(perMin(2), domain.Limit{}, perMin(2), "", "u")
		allow(t, l, acme, s)
		allow(t, l, acme, s)
		if d := allow(t, l, acme, s); d.Allowed {
			t.Fatalf("acme over its limit: %+v", d)
		}
		// The same user name under another tenant is another window.
		for i := 0; i < 2; i++ {
			if d := allow(t, l, beta, s); !d.Allowed || d.Remaining != int64(1-i) {
				t.Fatalf("beta request %d: %+v", i, d)
			}
		}
	})

	t.Run("refusals are not counted", func(t *testing.T) {
		l, c := setup(t)
		allow(t, l, acme, scopes(perMin(2), domain.Limit{}, perMin(2), "", "a"))
		allow(t, l, acme, scopes(perMin(2), domain.Limit{}, perMin(2), "", "a"))
		for i := 0; i < 5; i++ {
			if d := allow(t, l, acme, scopes(perMin(2), domain.Limit{}, perMin(2), "", "b")); d.Allowed {
				t.Fatalf("b admitted over the tenant total: %+v", d)
			}
		}
		c.Set(epoch.Add(61 * time.Second))
		for _, u := range []string{"b", "b"} {
			if d := allow(t, l, acme, scopes(perMin(2), domain.Limit{}, perMin(2), "", u)); !d.Allowed {
				t.Fatalf("b after a minute: %+v", d)
			}
		}
	})

	t.Run("concurrent requests never exceed the limit", func(t *testing.T) {
		l, _ := setup(t)
		var admitted atomic.Int64
		var wg sync.WaitGroup
		for g := 0; g < 10; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 5; i++ {
					d, err := l.Allow(ctx, acme, scopes(perMin(1000), perMin(25), perMin(1000), "key:k", fmt.Sprint("u", g)))
					if err != nil {
						t.Error(err)
						return
					}
					if d.Allowed {
						admitted.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		if n := admitted.Load(); n != 25 {
			t.Fatalf("admitted %d of 50, want 25", n)
		}
	})
}

func TestMemoryLimiter(t *testing.T) {
	t.Parallel()
	runLimiterAcceptance(t, func(t *testing.T, now func() time.Time) app.Limiter { return adapters.NewMemoryLimiter(now) })
}

// TestIntegrationRedisLimiter runs the acceptance suite against a real Redis.
func TestIntegrationRedisLimiter(t *testing.T) {
	client, _ := redisFor(t)
	var n atomic.Int64
	runLimiterAcceptance(t, func(t *testing.T, now func() time.Time) app.Limiter {
		// A prefix per subtest keeps runs (and other users of the server) apart.
		prefix := fmt.Sprintf("crispy-test:%d-%d:rl:", time.Now().UnixNano(), n.Add(1))
		t.Cleanup(func() {
			ctx := context.Background()
			iter := client.Scan(ctx, 0, prefix+"*", 100).Iterator()
			for iter.Next(ctx) {
				client.Del(ctx, iter.Val())
			}
		})
		l := adapters.NewRedisLimiter(client, adapters.RedisLimiterConfig{Prefix: prefix, Timeout: 2 * time.Second, Now: now})
		t.Cleanup(func() {
			// The keys carry the tenant as a cluster hash tag.
			km, ks := l.Keys(tenant.MustParse("acme"), domain.ScopeUser, "ann")
			if km != prefix+"{acme}:u:ann:m" || ks != prefix+"{acme}:u:ann:s" {
				t.Errorf("keys %s %s", km, ks)
			}
		})
		return l
	})
}

func TestRedisLimiterReportsOutage(t *testing.T) {
	t.Parallel()
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { _ = client.Close() })
	l := adapters.NewRedisLimiter(client, adapters.RedisLimiterConfig{Timeout: time.Second})
	_, err := l.Allow(context.Background(), tenant.MustParse("acme"), scopes(perMin(1), domain.Limit{}, perMin(1), "", ""))
	if err == nil || !strings.Contains(err.Error(), "{acme}") {
		t.Fatalf("Allow against a closed port = %v", err)
	}
}

func BenchmarkMemoryLimiterAllow(b *testing.B) {
	l := adapters.NewMemoryLimiter(nil)
	id := tenant.MustParse("acme")
	p := scopes(perMin(1<<40), perMin(1<<40), perMin(1<<40), "key:0123456789ab", "user-1")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := l.Allow(ctx, id, p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMemoryLimiterAllowParallel(b *testing.B) {
	l := adapters.NewMemoryLimiter(nil)
	ids := []tenant.ID{tenant.MustParse("acme"), tenant.MustParse("beta"), tenant.MustParse("gamma"), tenant.MustParse("delta")}
	users := []string{"u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8"}
	var n atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := int(n.Add(1))
		ctx := context.Background()
		for pb.Next() {
			i++
			p := scopes(perMin(1<<40), perMin(1<<40), perMin(1<<40), "key:0123456789ab", users[i%len(users)])
			if _, err := l.Allow(ctx, ids[i%len(ids)], p); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkIntegrationRedisLimiterAllow is one decision of three scopes (six logs) in a real Redis:
// CRISPY_REDIS_URL=redis://127.0.0.1:6379/0 go test -run '^$' -bench IntegrationRedisLimiterAllow ./modules/tenancy/internal/adapters/
func BenchmarkIntegrationRedisLimiterAllow(b *testing.B) {
	client, prefix := redisFor(b)
	l := adapters.NewRedisLimiter(client, adapters.RedisLimiterConfig{Prefix: prefix + "rl:", Timeout: 2 * time.Second})
	p := scopes(perMin(1<<40), perMin(1<<40), perMin(1<<40), "key:0123456789ab", "user-1")
	id := tenant.MustParse("acme")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := l.Allow(ctx, id, p); err != nil {
			b.Fatal(err)
		}
	}
}
