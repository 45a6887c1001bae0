package adapters

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/crispy-enigma/crispy/platform/tenant"
)

// The tokens-per-minute logs shared by replicas (rateLimit.tokensPerMinute, a key's
// limits.tokensPerMinute). Each scope's log is a Redis hash, {prefix}{tenant}:tpm:<scope>, whose
// fields are the calls booked in the last 60 s (a turn id) and whose values are "<booked at, Unix
// ms>:<tokens>": the reservation until the call settles, then what it used. A reservation is one
// script: drop the bookings older than 60 s, sum the rest, and grant what is left under the
// ceiling (up to want, refusing below least), atomically, so replicas cannot overshoot it between
// them. The same algorithm as the per-process log (conversation's domain.Ledger): a call counts
// for 60 s from its booking.

// tokenReserveScript: KEYS[1] the log; ARGV now (ms), turn, prompt, want, least, limit. Returns
// {1, granted} or {0, used, retry after (ms)}.
var tokenReserveScript = redis.NewScript(`
local now, turn = tonumber(ARGV[1]), ARGV[2]
local prompt, want, least, limit = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local flat = redis.call('HGETALL', KEYS[1])
local used, live = 0, {}
for i = 1, #flat, 2 do
  local at, n = string.match(flat[i + 1], '^(%d+):(%d+)$')
  at, n = tonumber(at), tonumber(n)
  if at == nil or at <= now - 60000 then
    redis.call('HDEL', KEYS[1], flat[i])
  else
    used = used + n
    live[#live + 1] = {at, n}
  end
end
local grant = math.min(want, limit - used - prompt)
if grant < least then
  table.sort(live, function(a, b) return a[1] < b[1] end)
  local need, retry = used + prompt + least - limit, 60000
  for _, b in ipairs(live) do
    need = need - b[2]
    if need <= 0 then retry = b[1] + 60000 - now break end
  end
  return {0, used, retry}
end
redis.call('HSET', KEYS[1], turn, now .. ':' .. (prompt + grant))
redis.call('PEXPIRE', KEYS[1], 61000)
return {1, grant}
`)

// tokenSettleScript: KEYS[1] the log; ARGV turn, tokens. Keeps the booking's time.
var tokenSettleScript = redis.NewScript(`
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return 0 end
local at = string.match(v, '^(%d+):')
redis.call('HSET', KEYS[1], ARGV[1], at .. ':' .. ARGV[2])
return 1
`)

// RedisTokenWindow is the shared tokens-per-minute log. Errors (Redis down or slower than the
// timeout) are returned: the caller falls back onto its per-process log.
type RedisTokenWindow struct {
	client  redis.UniversalClient
	prefix  string
	timeout time.Duration
}

// NewRedisTokenWindow returns the shared log on client (keys under prefix, each call bounded by
// timeout; defaults DefaultRedisPrefix and 100 ms).
func NewRedisTokenWindow(client redis.UniversalClient, prefix string, timeout time.Duration) *RedisTokenWindow {
	if prefix == "" {
		prefix = DefaultRedisPrefix
	}
	if timeout <= 0 {
		timeout = 100 * time.Millisecond
	}
	return &RedisTokenWindow{client: client, prefix: prefix, timeout: timeout}
}

func (w *RedisTokenWindow) key(t tenant.ID, scope string) string {
	return w.prefix + "{" + t.String() + "}:tpm:" + scope
}

// TokenGrant is a reservation's answer: OK with Granted completion tokens, or refused with the
// tokens Used in the last 60 s and when enough of them leave.
type TokenGrant struct {
	OK         bool
	Granted    int64
	Used       int64
	RetryAfter time.Duration
}

// Reserve books prompt and up to want completion tokens (at least least) of turn in scope's log of
// tenant t, under limit tokens in any 60 s.
func (w *RedisTokenWindow) Reserve(ctx context.Context, t tenant.ID, scope, turn string, prompt, want, least, limit int64, now time.Time) (TokenGrant, error) {
	ctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	k := w.key(t, scope)
	res, err := tokenReserveScript.Run(ctx, w.client, []string{k}, now.UnixMilli(), turn, prompt, want, least, limit).Int64Slice()
	if err != nil {
		return TokenGrant{}, fmt.Errorf("redis token window %s: %w", k, err)
	}
	switch {
	case len(res) == 2 && res[0] == 1:
		return TokenGrant{OK: true, Granted: res[1]}, nil
	case len(res) == 3 && res[0] == 0:
		return TokenGrant{Used: res[1], RetryAfter: time.Duration(max(res[2], 0)) * time.Millisecond}, nil
	}
	return TokenGrant{}, fmt.Errorf("redis token window %s: unexpected answer %v", k, res)
}

// Settle replaces turn's reservation by the tokens it used (from the same booking time).
func (w *RedisTokenWindow) Settle(ctx context.Context, t tenant.ID, scope, turn string, tokens int64) error {
	ctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	k := w.key(t, scope)
	if err := tokenSettleScript.Run(ctx, w.client, []string{k}, turn, max(tokens, 0)).Err(); err != nil {
		return fmt.Errorf("redis token window %s: settle: %w", k, err)
	}
	return nil
}

// Release drops turn's reservation (it used nothing).
func (w *RedisTokenWindow) Release(ctx context.Context, t tenant.ID, scope, turn string) error {
	ctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	k := w.key(t, scope)
	if err := w.client.HDel(ctx, k, turn).Err(); err != nil {
		return fmt.Errorf("redis token window %s: release: %w", k, err)
	}
	return nil
}
