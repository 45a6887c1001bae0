package adapters

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/crispy-enigma/crispy/modules/tenancy/internal/domain"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// DefaultRedisPrefix starts every limiter key: crispy:rl:{tenant}:<kind>:<id>:m and …:s are a
// scope's minute and second logs (kind u for a user, k for an API key, t for the tenant). The braces
// are Redis Cluster's hash tag, so all keys of one decision live in the same slot and the script
// may touch them all.
const DefaultRedisPrefix = "crispy:rl:"

// slidingLogScript applies domain.Window to every scope of a request atomically. Each log is a hash
// whose fields are slot numbers (domain.Slots) and whose values are the requests accepted in that
// slot. For each log it drops the slots that left the span, sums the rest, and refuses when any
// ceiling would be crossed; only when every one admits does it count the request in every log,
// with a TTL of the log's span. It returns the verdict and, per log, its count and oldest counted
// slot before counting (all the caller needs for remaining and reset); on a refusal also every
// log's kept (slot, count) pairs, for retry-after. The caller computes the headers with the same Go
// code as the in-memory limiter.
//
// KEYS: per scope, its minute log then its second log. ARGV: the minute slot, the second slot, then
// per scope its per-minute and burst ceilings (0: none).
var slidingLogScript = redis.NewScript(`
local ms, ss = tonumber(ARGV[1]), tonumber(ARGV[2])
local ok = true
local out, kept = {0}, {}
for i = 1, #KEYS do
  local cur, span, lim = ms, 61, tonumber(ARGV[2 + i])
  if i % 2 == 0 then cur, span = ss, 33 end
  local flat = redis.call('HGETALL', KEYS[i])
  local pairs_, total, oldest = {}, 0, 0
  for f = 1, #flat, 2 do
    local s, c = tonumber(flat[f]), tonumber(flat[f + 1])
    if s <= cur - span then
      redis.call('HDEL', KEYS[i], flat[f])
    else
      total = total + c
      if oldest == 0 or s < oldest then oldest = s end
      pairs_[#pairs_ + 1] = s
      pairs_[#pairs_ + 1] = c
    end
  end
  if lim > 0 and total + 1 > lim then ok = false end
  out[#out + 1] = total
  out[#out + 1] = oldest
  kept[i] = pairs_
end
if ok then
  out[1] = 1
  for i = 1, #KEYS do
    local field, ttl = ARGV[1], 62000
    if i % 2 == 0 then field, ttl = ARGV[2], 2000 end
    redis.call('HINCRBY', KEYS[i], field, 1)
    redis.call('PEXPIRE', KEYS[i], ttl)
  end
else
  for i = 1, #KEYS do out[#out + 1] = kept[i] end
end
return out
`)

// RedisLimiter is the limiter shared by every replica: the same sliding logs per scope as
// MemoryLimiter (domain.Window), kept in Redis and decided atomically by one Lua script.
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

// Keys returns a scope's minute and second log keys.
func (l *RedisLimiter) Keys(t tenant.ID, kind byte, id string) (string, string) {
	base := l.prefix + "{" + t.String() + "}:" + string(kind) + ":" + id + ":"
	return base + "m", base + "s"
}

// Allow implements app.Limiter.
func (l *RedisLimiter) Allow(ctx context.Context, t tenant.ID, sc domain.Scopes) (domain.Decision, error) {
	if sc.N == 0 {
		return domain.Decision{Allowed: true}, nil
	}
	now := l.now().UnixNano()
	ms, ss := domain.Slots(now)
	keys := make([]string, 0, 2*sc.N)
	args := make([]any, 0, 2+2*sc.N)
	args = append(args, ms, ss)
	for _, x := range sc.List() {
		km, ks := l.Keys(t, x.Kind, x.ID)
		keys = append(keys, km, ks)
		args = append(args, max(x.Limit.PerMinute, 0), max(x.Limit.Burst, 0))
	}
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	res, err := slidingLogScript.Run(ctx, l.client, keys, args...).Slice()
	if err != nil {
		return domain.Decision{}, fmt.Errorf("redis limiter %s: %w", keys[0], err)
	}
	allowed, _ := res[0].(int64)
	if want := 1 + 2*len(keys) + int(1-allowed)*len(keys); len(res) != want {
		return domain.Decision{}, fmt.Errorf("redis limiter %s: script returned %d values, want %d", keys[0], len(res), want)
	}
	var vs [domain.MaxScopes]domain.Verdict
	ok := true
	for i, x := range sc.List() {
		var w domain.Window
		w.Minute.Advance(ms, domain.MinuteSpan)
		w.Second.Advance(ss, domain.SecondSpan)
		for j, g := range []*domain.Log{&w.Minute, &w.Second} {
			span := int64(domain.MinuteSpan)
			if j == 1 {
				span = domain.SecondSpan
			}
			k := 2*i + j
			if allowed == 0 {
				pairs, _ := res[1+2*len(keys)+k].([]any)
				for p := 0; p+1 < len(pairs); p += 2 {
					s, _ := pairs[p].(int64)
					c, _ := pairs[p+1].(int64)
					g.Set(s, c, span)
				}
				continue
			}
			// Admitted: the count and the oldest slot are all the verdict reads (remaining, reset).
			total, _ := res[1+2*k].(int64)
			oldest, _ := res[2+2*k].(int64)
			if total > 0 {
				g.Set(oldest, 1, span)
				g.Set(g.Last, total-1, span)
			}
		}
		vs[i] = w.Check(now, x.Limit)
		vs[i].Kind = x.Kind
		ok = ok && vs[i].Allowed
	}
	if (allowed == 1) != ok {
		// Cannot happen while the arithmetic agrees; if it ever does, Redis (which counted or
		// did not) is the truth.
		return domain.Decision{}, fmt.Errorf("redis limiter %s: script and window disagree (script allowed=%v)", keys[0], allowed == 1)
	}
	return domain.Combine(vs[:sc.N]...), nil
}

// Ping checks the connection (for start-up logs and /health).
func (l *RedisLimiter) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, l.timeout*10)
	defer cancel()
	return l.client.Ping(ctx).Err()
}
