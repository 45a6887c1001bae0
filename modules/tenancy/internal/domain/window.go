package domain

import (
	"math"
	"time"

	"github.com/crispy-enigma/crispy/modules/tenancy/events"
)

// Rate limit defaults (SPEC §1).
const (
	DefaultPerMinute = 60
	DefaultBurst     = 10
	DefaultWindowSec = 60
	// DefaultTenantFactor multiplies the per-key limit into the tenant's total when
	// rateLimit.tenantPerMinute is not configured.
	DefaultTenantFactor = 10
)

// RatePolicy is a tenant's rate limit in the limiter's terms.
//
// How the numbers apply: a window of Window admits KeyLimit = ceil(perMinute*windowSec/60) + burst
// requests per key, where the key is (tenant, x-user-id) or, without x-user-id, the tenant's
// anonymous key. Burst is therefore the allowance above the steady rate that a client may spend at
// once. Every request also counts against the tenant's total, TenantLimit =
// ceil(tenantPerMinute*windowSec/60) + burst (tenantPerMinute defaults to 10*perMinute).
type RatePolicy struct {
	KeyLimit    int64
	TenantLimit int64
	Window      time.Duration
}

// PolicyFor derives the policy from a tenant configuration, applying defaults.
func PolicyFor(c events.RateLimit) RatePolicy {
	per, burst, win := c.PerMinute, c.Burst, c.WindowSec
	if per <= 0 {
		per = DefaultPerMinute
	}
	if burst <= 0 {
		burst = DefaultBurst
	}
	if win <= 0 {
		win = DefaultWindowSec
	}
	tper := c.TenantPerMinute
	if tper <= 0 {
		tper = per * DefaultTenantFactor
	}
	scale := func(perMinute int) int64 {
		return int64(math.Ceil(float64(perMinute)*float64(win)/60)) + int64(burst)
	}
	return RatePolicy{KeyLimit: scale(per), TenantLimit: scale(tper), Window: time.Duration(win) * time.Second}
}

// Window is a two-bucket sliding-window counter. Buckets are aligned to multiples of the window
// length (so every replica and Redis agree on them); the count over the last window is estimated as
// Prev weighted by the part of the previous bucket still inside the window, plus Curr.
type Window struct {
	Start int64 // start of the current bucket, unix ns
	Curr  int64
	Prev  int64
}

// Verdict is one window's answer.
type Verdict struct {
	Allowed    bool
	Limit      int64
	Remaining  int64         // after this request, when allowed
	Reset      time.Duration // until the current bucket ends
	RetryAfter time.Duration // when refused: until one more request fits
}

// roll moves the buckets forward to the bucket that contains now.
func (w *Window) roll(now, win int64) {
	start := now - now%win
	switch {
	case start <= w.Start:
		// Same bucket, or the clock stepped back: keep counting in the current bucket.
	case start-w.Start == win:
		w.Prev, w.Curr, w.Start = w.Curr, 0, start
	default:
		w.Prev, w.Curr, w.Start = 0, 0, start
	}
}

// Check rolls the window to now and says whether one more request fits under limit, without
// counting it. Call Take to count it.
func (w *Window) Check(now int64, win time.Duration, limit int64) Verdict {
	n := int64(win)
	w.roll(now, n)
	elapsed := now - w.Start
	if elapsed < 0 {
		elapsed = 0
	}
	weight := 1 - float64(elapsed)/float64(n)
	est := float64(w.Prev)*weight + float64(w.Curr)
	v := Verdict{Limit: limit, Reset: time.Duration(w.Start + n - now)}
	if est+1 <= float64(limit) {
		v.Allowed = true
		v.Remaining = int64(float64(limit) - est - 1)
		return v
	}
	v.RetryAfter = retryAfter(w, now, n, limit)
	return v
}

// Take counts one admitted request (after Check said it fits).
func (w *Window) Take() { w.Curr++ }

// retryAfter is the time until the estimate leaves room for one request: later in this bucket while
// the previous bucket's weight decays, or in the next bucket when this one alone is full.
func retryAfter(w *Window, now, n, limit int64) time.Duration {
	room := float64(limit - 1)
	var at float64
	if w.Curr <= limit-1 && w.Prev > 0 {
		x := 1 - (room-float64(w.Curr))/float64(w.Prev)
		at = float64(w.Start) + x*float64(n)
	} else {
		x := 0.0
		if w.Curr > 0 {
			x = 1 - room/float64(w.Curr)
		}
		if x < 0 {
			x = 0
		}
		at = float64(w.Start+n) + x*float64(n)
	}
	d := time.Duration(math.Ceil(at - float64(now)))
	if d < time.Nanosecond {
		d = time.Nanosecond
	}
	return d
}

// Decision combines the key window and the tenant window into what the client sees.
type Decision struct {
	Allowed       bool
	Limit         int64
	Remaining     int64
	ResetSec      int64
	RetryAfterSec int64
}

// Combine reports the more constraining of two verdicts: the refused one (the later retry when
// both are), else the one with fewer requests remaining.
func Combine(a, b Verdict) Decision {
	pick := a
	switch {
	case !a.Allowed && !b.Allowed:
		if b.RetryAfter > a.RetryAfter {
			pick = b
		}
	case !b.Allowed:
		pick = b
	case a.Allowed && b.Remaining < a.Remaining:
		pick = b
	}
	d := Decision{Allowed: a.Allowed && b.Allowed, Limit: pick.Limit, Remaining: pick.Remaining, ResetSec: ceilSec(pick.Reset)}
	if !d.Allowed {
		d.Remaining = 0
		d.RetryAfterSec = ceilSec(pick.RetryAfter)
		if d.RetryAfterSec < 1 {
			d.RetryAfterSec = 1
		}
	}
	return d
}

func ceilSec(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}
