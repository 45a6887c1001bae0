package adapters

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/modules/tenancy/internal/domain"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

func TestMemoryLimiterForgetsIdleWindows(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	l := NewMemoryLimiter(func() time.Time { return now })
	l.sweepFloor = 8
	for i := range l.shards {
		l.shards[i].sweepAt = 8 // instead of 1,024, so a few thousand keys exercise the sweep
	}
	ctx := context.Background()
	id := tenant.MustParse("acme")
	p := func(user string) domain.Scopes {
		var s domain.Scopes
		s.Add(domain.ScopeTenant, "", domain.Limit{PerMinute: 1 << 30})
		s.Add(domain.ScopeUser, user, domain.Limit{PerMinute: 10})
		return s
	}
	const users = 3_000 // ~47 windows per shard, past sweepAt in every shard
	for i := 0; i < users; i++ {
		if _, err := l.Allow(ctx, id, p(fmt.Sprint("old-", i))); err != nil {
			t.Fatal(err)
		}
	}
	if n := l.Len(); n != users+1 {
		t.Fatalf("%d windows for %d active users and the tenant", n, users)
	}
	now = now.Add(3 * time.Minute)
	for i := 0; i < users; i++ {
		d, err := l.Allow(ctx, id, p(fmt.Sprint("new-", i)))
		if err != nil || !d.Allowed || d.Remaining != 9 {
			t.Fatalf("new user %d: %+v, %v", i, d, err)
		}
	}
	if n := l.Len(); n > users+users/2 {
		t.Fatalf("%d windows held after the old users went idle, want the idle ones swept", n)
	}
	// The new users' windows survived the sweeps their own arrival triggered.
	for i := 0; i < users; i += 7 {
		if d, _ := l.Allow(ctx, id, p(fmt.Sprint("new-", i))); d.Remaining != 8 {
			t.Fatalf("new user %d's second request: %+v", i, d)
		}
	}
}
