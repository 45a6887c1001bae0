package adapters

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/crispy-enigma/crispy/modules/tenancy/internal/domain"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// DefaultRedisPrefix starts every limiter key: crispy:rl:{tenant}:u:{user} for a (tenant, user)
// window and crispy:rl:{tenant}:t for the tenant's total. The braces are Redis Cluster's hash tag,
// so both keys of one decision live in the same slot and the script may touch both.
const DefaultRedisPrefix = "crispy:rl:"

// slidingWindowScript applies domain.Window to two windows atomically: each is a hash {s, c, p}
// (bucket start in µs, current and previous bucket counts). It rolls both to now, counts the request
// in both only when both admit it, stores them with a TTL of two windows, and returns the rolled
// state before counting plus the verdict, so the caller computes remaining, reset and retry-after
// with the same Go code as the in-memory limiter.
//
// Times are microseconds so every value stays an exact integer in Lua's doubles; the estimate is then
// bit-for-bit the one domain.Window computes in nanoseconds (both operands scale by 1000).
//
// KEYS: user window, tenant window. ARGV: now µs, window µs, key limit, tenant limit.
var slidingWindowScript = redis.NewScript(`
local now = tonumber(ARGV[1])
local win = tonumber(ARGV[2])
local limits = {tonumber(ARGV[3]), tonumber(ARGV[4])}
local state, ok = {}, true
for i = 1, 2 do
  local v = redis.call('HMGET', KEYS[i], 's', 'c', 'p')
  local s, c, p = tonumber(v[1]) or 0, tonumber(v[2]) or 0, tonumber(v[3]) or 0
  local start = now - (now % win)
  if start > s then
    if start - s == win then p = c else p = 0 end
    c = 0
    s = start
  end
  local elapsed = now - s
  if elapsed < 0 then elapsed = 0 end
  local est = p * (1 - elapsed / win) + c
  if est + 1 > limits[i] then ok = false end
  state[i] = {s, c, p}
end
local ttl = math.ceil(2 * win / 1000)
for i = 1, 2 do
  local c = state[i][2]
  if ok then c = c + 1 end
  redis.call('HSET', KEYS[i], 's', state[i][1], 'c', c, 'p', state[i][3])
  redis.call('PEXPIRE', KEYS[i], ttl)
end
local allowed = 0
if ok then allowed = 1 end
return {state[1][1], state[1][2], state[1][3], state[2][1], state[2][2], state[2][3], allowed}
`)

// RedisLimiter is the limiter shared by every replica: the same two sliding windows as
// MemoryLimiter, kept in Redis and decided atomically by a Lua script.
//
// Errors (Redis unreachable, slow past Timeout) are returned, not hidden: the caller decides how to
// fail (the tenancy Admitter fails open onto a per-process limiter, counting and logging it).
type RedisLimiter struct {
	client  redis.UniversalClient
	prefix  string
	timeout time.Duration
	now     func() time.Time
}

// RedisLimiterConfig configures a RedisLimiter.
type RedisLimiterConfig struct {
	// Prefix of every key (default DefaultRedisPrefix).
	Prefix string
	// Timeout bounds one decision (default 100 ms), so a slow Redis delays a request by at most this.
	Timeout time.Duration
	// Now is the clock (default time.Now). Replicas' clocks should agree (NTP): skew shifts the
	// windows' bucket boundaries by the skew.
	Now func() time.Time
}

// NewRedisLimiter returns a limiter on client.
func NewRedisLimiter(client redis.UniversalClient, c RedisLimiterConfig) *RedisLimiter {
	if c.Prefix == "" {
		c.Prefix = DefaultRedisPrefix
	}
	if c.Timeout <= 0 {
		c.Timeout = 100 * time.Millisecond
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return &RedisLimiter{client: client, prefix: c.Prefix, timeout: c.Timeout, now: c.Now}
}

// Keys returns the user window's and the tenant window's keys.
func (l *RedisLimiter) Keys(t tenant.ID, user string) (string, string) {
	base := l.prefix + "{" + t.String() + "}:"
	return base + "u:" + user, base + "t"
}

// Allow implements app.Limiter.
func (l *RedisLimiter) Allow(ctx context.Context, t tenant.ID, user string, p domain.RatePolicy) (domain.Decision, error) {
	if p.Window < time.Second {
		return domain.Decision{}, fmt.Errorf("redis limiter: window %s is under a second", p.Window)
	}
	// Whole microseconds on both sides, so the script and domain.Window compute the same estimate.
	nowUS := l.now().UnixMicro()
	winUS := p.Window.Microseconds()
	ku, kt := l.Keys(t, user)
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	res, err := slidingWindowScript.Run(ctx, l.client, []string{ku, kt}, nowUS, winUS, p.KeyLimit, p.TenantLimit).Int64Slice()
	if err != nil {
		return domain.Decision{}, fmt.Errorf("redis limiter %s: %w", kt, err)
	}
	if len(res) != 7 {
		return domain.Decision{}, fmt.Errorf("redis limiter %s: script returned %d values, want 7", kt, len(res))
	}
	now := nowUS * 1000
	wu := domain.Window{Start: res[0] * 1000, Curr: res[1], Prev: res[2]}
	wt := domain.Window{Start: res[3] * 1000, Curr: res[4], Prev: res[5]}
	vu := wu.Check(now, p.Window, p.KeyLimit)
	vt := wt.Check(now, p.Window, p.TenantLimit)
	if allowed := res[6] == 1; allowed != (vu.Allowed && vt.Allowed) {
		// Cannot happen while the arithmetic agrees; if it ever does, Redis (which counted or
		// did not) is the truth.
		return domain.Decision{}, fmt.Errorf("redis limiter %s: script and window disagree (script allowed=%v)", kt, allowed)
	}
	return domain.Combine(vu, vt), nil
}

// Ping checks the connection (for start-up logs and /health).
func (l *RedisLimiter) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, l.timeout*10)
	defer cancel()
	return l.client.Ping(ctx).Err()
}
