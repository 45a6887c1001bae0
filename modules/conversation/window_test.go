package conversation_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/crispy-enigma/crispy/modules/conversation"
	"github.com/crispy-enigma/crispy/modules/tenancy"
	tenancyevents "github.com/crispy-enigma/crispy/modules/tenancy/events"
	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// redisWindow is tenancy's shared tokens-per-minute log as the conversation module takes it (what
// cmd/crispy wires with --redis).
type redisWindow struct{ w *tenancy.TokenWindow }

func (r redisWindow) Reserve(ctx context.Context, t tenant.ID, scope, turn string, prompt, want, least, limit int64, now time.Time) (conversation.TokenGrant, error) {
	g, err := r.w.Reserve(ctx, t, scope, turn, prompt, want, least, limit, now)
	return conversation.TokenGrant{OK: g.OK, Granted: g.Granted, Used: g.Used, RetryAfter: g.RetryAfter}, err
}

func (r redisWindow) Settle(ctx context.Context, t tenant.ID, scope, turn string, tokens int64) error {
	return r.w.Settle(ctx, t, scope, turn, tokens)
}

func (r redisWindow) Release(ctx context.Context, t tenant.ID, scope, turn string) error {
	return r.w.Release(ctx, t, scope, turn)
}

// Two replicas (two modules, two stores, their own ledgers) with the Redis window share the
// tenant's tokensPerMinute: what a turn on replica a booked is not available on replica b, whose
// turn is capped at what is left and then refused. Without the window each replica would grant its
// own 2,000 (4,000 in a minute).
func TestIntegrationTokensPerMinuteHoldAcrossReplicasWithRedis(t *testing.T) {
	url := os.Getenv("CRISPY_REDIS_URL")
	if url == "" {
		t.Skip("no Redis: set CRISPY_REDIS_URL=redis://127.0.0.1:6379/0")
	}
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	prefix := fmt.Sprintf("crispy-test:%d:", time.Now().UnixNano())
	replica := func(g *greedyModel) *env {
		c := redis.NewClient(opts)
		t.Cleanup(func() { _ = c.Close() })
		return newEnv(t, opts2(g, redisWindow{tenancy.NewTokenWindow(c, prefix)}))
	}
	ga, gb := &greedyModel{}, &greedyModel{}
	a, b := replica(ga), replica(gb)
	if r := a.chatJSON("acme", sid(), "hi"); r.status != 200 {
		t.Fatalf("replica a: %d %s", r.status, r.raw)
	}
	if r := b.chatJSON("acme", sid(), "hi"); r.status != 200 {
		t.Fatalf("replica b: %d %s", r.status, r.raw)
	}
	if sa, sb := ga.maxSent(), gb.maxSent(); len(sa) != 1 || sa[0] != 1024 || len(sb) != 1 || sb[0] >= 1000 || sb[0] < 800 {
		t.Fatalf("max_tokens sent: replica a %v, replica b %v; want 1024 then what a left of 2,000", sa, sb)
	}
	wantProblem(t, a.chatJSON("acme", sid(), "hi"), 429, "budget_exceeded")
	wantProblem(t, b.chatJSON("acme", sid(), "hi"), 429, "budget_exceeded")
	if total := ga.total.Load() + gb.total.Load(); total > 2000 {
		t.Fatalf("two replicas wrote %d tokens in a minute under tokensPerMinute 2000", total)
	}
	// Another tenant has its own window.
	if r := b.chatJSON("globex", sid(), "hi"); r.status != 200 {
		t.Fatalf("globex: %d %s", r.status, r.raw)
	}
}

func opts2(g *greedyModel, w conversation.TokenWindow) opts {
	return opts{config: conversation.Config{MaxCompletionTokens: 1024}, provider: g, window: w,
		tenants: map[string]tenancyevents.TenantConfig{
			"acme":   {RateLimit: tenancyevents.RateLimit{TokensPerMinute: 2000}},
			"globex": {RateLimit: tenancyevents.RateLimit{TokensPerMinute: 2000}},
		}}
}

// failingWindow is a shared log whose Redis is down: err is what Reserve answers.
type failingWindow struct{ err error }

func (f failingWindow) Reserve(context.Context, tenant.ID, string, string, int64, int64, int64, int64, time.Time) (conversation.TokenGrant, error) {
	return conversation.TokenGrant{}, f.err
}
func (f failingWindow) Settle(context.Context, tenant.ID, string, string, int64) error { return f.err }
func (f failingWindow) Release(context.Context, tenant.ID, string, string) error       { return f.err }

// A failing shared window fails open onto the process's own log (the tenant's tokensPerMinute
// still holds for the calls this process serves), or closed with its 503 when it answers one.
func TestTokensPerMinuteWhenTheSharedWindowFails(t *testing.T) {
	t.Parallel()
	g := &greedyModel{}
	open := newEnv(t, opts2(g, failingWindow{err: errors.New("redis: connection refused")}))
	for i := 0; i < 2; i++ {
		if r := open.chatJSON("acme", sid(), "hi"); r.status != 200 {
			t.Fatalf("failing open, call %d: %d %s", i+1, r.status, r.raw)
		}
	}
	wantProblem(t, open.chatJSON("acme", sid(), "hi"), 429, "budget_exceeded")
	if sent := g.maxSent(); len(sent) != 2 || sent[0] != 1024 || sent[1] >= 1000 {
		t.Fatalf("failing open, max_tokens sent %v: the process's own log must hold the 2,000", sent)
	}
	ae := apperr.New(apperr.KindUnavailable, "ratelimit_unavailable", "the tokens-per-minute limiter is unavailable")
	closed := newEnv(t, opts2(&greedyModel{}, failingWindow{err: ae}))
	wantProblem(t, closed.chatJSON("acme", sid(), "hi"), 503, "ratelimit_unavailable")
}
