package adapters_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/crispy-enigma/crispy/modules/tenancy/internal/adapters"
	"github.com/crispy-enigma/crispy/modules/tenancy/internal/domain"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// redisFor connects to CRISPY_REDIS_URL (skipping without it) and returns a client and a key
// prefix of this test only (its keys deleted at the end).
func redisFor(t testing.TB) (*redis.Client, string) {
	t.Helper()
	url := os.Getenv("CRISPY_REDIS_URL")
	if url == "" {
		t.Skip("no Redis: set CRISPY_REDIS_URL=redis://127.0.0.1:6379/0 to run against a real server")
	}
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	newClient := func() *redis.Client {
		c := redis.NewClient(opts)
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	c := newClient()
	if err := c.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("CRISPY_REDIS_URL=%s does not answer: %v", url, err)
	}
	prefix := fmt.Sprintf("crispy-test:%d:", time.Now().UnixNano())
	t.Cleanup(func() {
		ctx := context.Background()
		iter := c.Scan(ctx, 0, prefix+"*", 100).Iterator()
		for iter.Next(ctx) {
			c.Del(ctx, iter.Val())
		}
	})
	return newClient(), prefix
}

// Two replicas' limiters (two clients, one Redis) share one perMinute ceiling: 30 requests
// alternating between them admit exactly the 10 a minute allows, not 10 each.
func TestIntegrationRedisLimitersOfTwoReplicasShareTheCeiling(t *testing.T) {
	c1, prefix := redisFor(t)
	c2, _ := redisFor(t)
	now := func() time.Time { return time.Unix(1_800_000_000, 0) }
	a := adapters.NewRedisLimiter(c1, adapters.RedisLimiterConfig{Prefix: prefix, Timeout: 2 * time.Second, Now: now})
	b := adapters.NewRedisLimiter(c2, adapters.RedisLimiterConfig{Prefix: prefix, Timeout: 2 * time.Second, Now: now})
	id := tenant.MustParse("acme")
	var sc domain.Scopes
	sc.Add(domain.ScopeTenant, "", domain.Limit{PerMinute: 10, Burst: 100})
	admitted := 0
	for i := 0; i < 30; i++ {
		l := a
		if i%2 == 1 {
			l = b
		}
		d, err := l.Allow(context.Background(), id, sc)
		if err != nil {
			t.Fatal(err)
		}
		if d.Allowed {
			admitted++
		}
	}
	if admitted != 10 {
		t.Fatalf("two replicas admitted %d requests under perMinute 10", admitted)
	}
}

// Two replicas' token windows share one tokensPerMinute ceiling: what the first books, the second
// cannot have; it is granted what is left, then refused with when enough leaves; a settle gives
// back what a call did not use, and a release all of it.
func TestIntegrationRedisTokenWindowsOfTwoReplicasShareTheCeiling(t *testing.T) {
	c1, prefix := redisFor(t)
	c2, _ := redisFor(t)
	a := adapters.NewRedisTokenWindow(c1, prefix, 2*time.Second)
	b := adapters.NewRedisTokenWindow(c2, prefix, 2*time.Second)
	ctx, id, now := context.Background(), tenant.MustParse("acme"), time.Unix(1_800_000_000, 0)
	reserve := func(w *adapters.RedisTokenWindow, turn string, at time.Time) adapters.TokenGrant {
		t.Helper()
		g, err := w.Reserve(ctx, id, "t", turn, 10, 1024, 16, 2000, at)
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	if g := reserve(a, "t1", now); !g.OK || g.Granted != 1024 {
		t.Fatalf("first call on replica a: %+v", g)
	}
	if g := reserve(b, "t2", now.Add(time.Second)); !g.OK || g.Granted != 2000-1034-10 {
		t.Fatalf("second call on replica b: %+v, want what replica a left (956)", g)
	}
	g := reserve(a, "t3", now.Add(2*time.Second))
	if g.OK || g.Used != 2000 || g.RetryAfter != 58*time.Second {
		t.Fatalf("third call: %+v, want refused, 2000 used, retry once the first leaves (58 s)", g)
	}
	// t1 used only 100 of its 1,034: 934 come back, on either replica.
	if err := a.Settle(ctx, id, "t", "t1", 100); err != nil {
		t.Fatal(err)
	}
	if g := reserve(b, "t4", now.Add(3*time.Second)); !g.OK || g.Granted != 2000-100-966-10 {
		t.Fatalf("after the settle: %+v, want 924", g)
	}
	if err := b.Release(ctx, id, "t", "t4"); err != nil {
		t.Fatal(err)
	}
	if g := reserve(a, "t5", now.Add(4*time.Second)); !g.OK || g.Granted != 924 {
		t.Fatalf("after the release: %+v, want 924 again", g)
	}
	// A minute after the first booking it leaves the window.
	if g := reserve(b, "t6", now.Add(61*time.Second)); !g.OK || g.Granted != 1024 {
		t.Fatalf("after the minute: %+v", g)
	}
	// Another tenant is not held by acme's log.
	if g, err := a.Reserve(ctx, tenant.MustParse("beta"), "t", "t7", 10, 1024, 16, 2000, now); err != nil || !g.OK || g.Granted != 1024 {
		t.Fatalf("beta: %+v %v", g, err)
	}
}

// BenchmarkIntegrationRedisTokenWindow is one shared tokens-per-minute decision: a reservation and
// its settle in a real Redis, against a log holding 100 calls of the minute:
// CRISPY_REDIS_URL=redis://127.0.0.1:6379/0 go test -run '^$' -bench IntegrationRedisTokenWindow ./modules/tenancy/internal/adapters/
func BenchmarkIntegrationRedisTokenWindow(b *testing.B) {
	client, prefix := redisFor(b)
	w := adapters.NewRedisTokenWindow(client, prefix, 2*time.Second)
	ctx, id := context.Background(), tenant.MustParse("acme")
	turns := make([]string, 100)
	for i := range turns {
		turns[i] = fmt.Sprintf("turn-%d", i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		turn := turns[i%len(turns)] // 100 calls in the log, each booked again in turn
		i++
		g, err := w.Reserve(ctx, id, "t", turn, 10, 1024, 16, 1<<40, time.Now())
		if err != nil || !g.OK {
			b.Fatal(err, g)
		}
		if err := w.Settle(ctx, id, "t", turn, 500); err != nil {
			b.Fatal(err)
		}
	}
}
