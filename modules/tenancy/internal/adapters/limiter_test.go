package adapters_test

import (
	"context"
	"fmt"
	"os"
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

// runLimiterAcceptance is the one behaviour every app.Limiter implementation must show.
func runLimiterAcceptance(t *testing.T, newFn newLimiter) {
	ctx := context.Background()
	acme, beta := tenant.MustParse("acme"), tenant.MustParse("beta")
	setup := func(t *testing.T) (app.Limiter, *clock) {
		c := &clock{t: epoch}
		return newFn(t, c.Now), c
	}
	allow := func(t *testing.T, l app.Limiter, id tenant.ID, user string, p domain.RatePolicy) domain.Decision {
		t.Helper()
		d, err := l.Allow(ctx, id, user, p)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}

	t.Run("key limit then refusal with retry-after", func(t *testing.T) {
		l, _ := setup(t)
		p := domain.RatePolicy{KeyLimit: 3, TenantLimit: 100, Window: 10 * time.Second}
		for i := int64(0); i < 3; i++ {
			d := allow(t, l, acme, "", p)
			if !d.Allowed || d.Limit != 3 || d.Remaining != 2-i || d.ResetSec != 10 {
				t.Fatalf("request %d: %+v", i, d)
			}
		}
		d := allow(t, l, acme, "", p)
		if d.Allowed || d.Remaining != 0 || d.Limit != 3 || d.RetryAfterSec < 1 {
			t.Fatalf("fourth: %+v", d)
		}
	})

	t.Run("users are separate; the tenant total caps them all", func(t *testing.T) {
		l, _ := setup(t)
		p := domain.RatePolicy{KeyLimit: 2, TenantLimit: 3, Window: 10 * time.Second}
		for _, u := range []string{"ann", "ann", "bob"} {
			if d := allow(t, l, acme, u, p); !d.Allowed {
				t.Fatalf("%s refused: %+v", u, d)
			}
		}
		if d := allow(t, l, acme, "ann", p); d.Allowed || d.Limit != 2 {
			t.Fatalf("ann's third: %+v", d)
		}
		if d := allow(t, l, acme, "cat", p); d.Allowed || d.Limit != 3 {
			t.Fatalf("cat over the tenant total: %+v", d)
		}
	})

	t.Run("tenants are isolated", func(t *testing.T) {
		l, _ := setup(t)
		p := domain.RatePolicy{KeyLimit: 2, TenantLimit: 2, Window: 10 * time.Second}
		allow(t, l, acme, "u", p)
		allow(t, l, acme, "u", p)
		if d := allow(t, l, acme, "u", p); d.Allowed {
			t.Fatalf("acme over its limit: %+v", d)
		}
		// The same user name under another tenant is another window.
		for i := 0; i < 2; i++ {
			if d := allow(t, l, beta, "u", p); !d.Allowed || d.Remaining != int64(1-i) {
				t.Fatalf("beta request %d: %+v", i, d)
			}
		}
	})

	t.Run("the window slides and retry-after is honest", func(t *testing.T) {
		l, c := setup(t)
		p := domain.RatePolicy{KeyLimit: 4, TenantLimit: 100, Window: 10 * time.Second}
		for i := 0; i < 4; i++ {
			allow(t, l, acme, "", p)
		}
		c.Set(epoch.Add(3 * time.Second))
		d := allow(t, l, acme, "", p)
		if d.Allowed || d.ResetSec != 7 {
			t.Fatalf("still full: %+v", d)
		}
		// 4 requests weigh 3 a quarter into the next bucket: one more fits there, not earlier.
		if d.RetryAfterSec != 10 {
			t.Fatalf("retry after %d s, want 10", d.RetryAfterSec)
		}
		c.Set(epoch.Add(12 * time.Second))
		if d := allow(t, l, acme, "", p); d.Allowed {
			t.Fatalf("before retry-after: %+v", d)
		}
		c.Set(epoch.Add(13 * time.Second))
		if d := allow(t, l, acme, "", p); !d.Allowed || d.Remaining != 0 || d.ResetSec != 7 {
			t.Fatalf("at retry-after: %+v", d)
		}
		c.Set(epoch.Add(40 * time.Second))
		if d := allow(t, l, acme, "", p); !d.Allowed || d.Remaining != 3 {
			t.Fatalf("after two quiet windows: %+v", d)
		}
	})

	t.Run("refusals are not counted", func(t *testing.T) {
		l, c := setup(t)
		p := domain.RatePolicy{KeyLimit: 2, TenantLimit: 2, Window: 10 * time.Second}
		allow(t, l, acme, "a", p)
		allow(t, l, acme, "a", p)
		for i := 0; i < 5; i++ {
			if d := allow(t, l, acme, "b", p); d.Allowed {
				t.Fatalf("b admitted over the tenant total: %+v", d)
			}
		}
		// Half-way into the next bucket the 2 counted requests weigh 1: exactly one more fits.
		c.Set(epoch.Add(15 * time.Second))
		if d := allow(t, l, acme, "b", p); !d.Allowed || d.Remaining != 0 {
			t.Fatalf("b after the slide: %+v", d)
		}
		if d := allow(t, l, acme, "c", p); d.Allowed {
			t.Fatalf("c admitted: %+v", d)
		}
	})

	t.Run("concurrent requests never exceed the limit", func(t *testing.T) {
		l, _ := setup(t)
		p := domain.RatePolicy{KeyLimit: 25, TenantLimit: 1000, Window: 60 * time.Second}
		var admitted atomic.Int64
		var wg sync.WaitGroup
		for g := 0; g < 10; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 5; i++ {
					d, err := l.Allow(ctx, acme, "same", p)
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
	url := os.Getenv("CRISPY_REDIS_URL")
	if url == "" {
		t.Skip("no Redis: set CRISPY_REDIS_URL=redis://127.0.0.1:6379/0 to run the Redis limiter against a real server")
	}
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	client := redis.NewClient(opts)
	t.Cleanup(func() { _ = client.Close() })
	if err := client.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("CRISPY_REDIS_URL=%s does not answer: %v", url, err)
	}
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
			ku, kt := l.Keys(tenant.MustParse("acme"), "u")
			if !strings.HasPrefix(ku, prefix+"{acme}:u:") || kt != prefix+"{acme}:t" {
				t.Errorf("keys %s %s", ku, kt)
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
	_, err := l.Allow(context.Background(), tenant.MustParse("acme"), "", domain.RatePolicy{KeyLimit: 1, TenantLimit: 1, Window: time.Minute})
	if err == nil || !strings.Contains(err.Error(), "{acme}") {
		t.Fatalf("Allow against a closed port = %v", err)
	}
}

func BenchmarkMemoryLimiterAllow(b *testing.B) {
	l := adapters.NewMemoryLimiter(nil)
	id := tenant.MustParse("acme")
	p := domain.RatePolicy{KeyLimit: 1 << 40, TenantLimit: 1 << 40, Window: time.Minute}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := l.Allow(ctx, id, "user-1", p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMemoryLimiterAllowParallel(b *testing.B) {
	l := adapters.NewMemoryLimiter(nil)
	p := domain.RatePolicy{KeyLimit: 1 << 40, TenantLimit: 1 << 40, Window: time.Minute}
	ids := []tenant.ID{tenant.MustParse("acme"), tenant.MustParse("beta"), tenant.MustParse("gamma"), tenant.MustParse("delta")}
	users := []string{"u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8"}
	var n atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := int(n.Add(1))
		ctx := context.Background()
		for pb.Next() {
			i++
			if _, err := l.Allow(ctx, ids[i%len(ids)], users[i%len(users)], p); err != nil {
				b.Fatal(err)
			}
		}
	})
}
