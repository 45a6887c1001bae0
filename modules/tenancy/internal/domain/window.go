package domain

import (
	"time"

	"github.com/crispy-enigma/crispy/modules/tenancy/events"
)

// Rate limit defaults (SPEC §1).
const (
	DefaultPerMinute = 60
	DefaultBurst     = 10
	// DefaultTenantFactor multiplies the per-user limit into the tenant's total when
	// rateLimit.tenantPerMinute is not configured.
	DefaultTenantFactor = 10
)

// Limit is one scope's ceilings: at most PerMinute accepted requests in any 60 s span and at most
// Burst in any 1 s span. 0 is no ceiling.
type Limit struct {
	PerMinute int64
	Burst     int64
}

// None reports a limit with no ceiling (nothing to count).
func (l Limit) None() bool { return l.PerMinute <= 0 && l.Burst <= 0 }

// Scope kinds: a request is counted against every scope that applies to it.
const (
	ScopeTenant byte = 't' // the tenant's total
	ScopeKey    byte = 'k' // the API key (credential id) that authenticated the request
	ScopeUser   byte = 'u' // the (tenant, user) pair; user "" is the tenant's anonymous user
)

// Scope is one counter a request must fit: kind, its id within the tenant (key id or user id; ""
// for the tenant) and its limit.
type Scope struct {
	Kind  byte
	ID    string
	Limit Limit
}

// RatePolicy is a tenant's rate limit in the limiter's terms.
//
// How the numbers apply: every request counts against the tenant (Tenant), against the API key that
// authenticated it (Key; keyless tenants have none) and against its (tenant, x-user-id) pair (User;
// no x-user-id is the tenant's anonymous user), and is accepted only when it fits all of them. So a
// client that invents user ids is still held to its key's ceiling and the tenant's: per-user limits
// divide a key's allowance, they never add to it.
type RatePolicy struct {
	User, Key, Tenant Limit
}

// PolicyFor derives the policy from a tenant configuration, applying defaults: perMinute and
// burst are the per-user limit; keyPerMinute (default perMinute) is each key's, with the same
// burst; tenantPerMinute (default 10×perMinute) is the tenant's total, with 10× the burst.
// windowSec is no longer used: every ceiling holds over any 60 s span.
func PolicyFor(c events.RateLimit) RatePolicy {
	per, burst := int64(c.PerMinute), int64(c.Burst)
	if per <= 0 {
		per = DefaultPerMinute
	}
	if burst <= 0 {
		burst = DefaultBurst
	}
	kper := int64(c.KeyPerMinute)
	if kper <= 0 {
		kper = per
	}
	tper := int64(c.TenantPerMinute)
	if tper <= 0 {
		tper = per * DefaultTenantFactor
	}
	return RatePolicy{
		User:   Limit{PerMinute: per, Burst: burst},
		Key:    Limit{PerMinute: kper, Burst: burst},
		Tenant: Limit{PerMinute: tper, Burst: burst * DefaultTenantFactor},
	}
}

// The algorithm: each scope keeps two bucketed sliding logs, one for the minute and one for the
// second. A log counts accepted requests in slots of width q; a request accepted in slot s is
// counted while the current slot is within s+W/q (W is 60 s or 1 s), so it stays counted at least
// W after it was accepted (up to W+q). A request is accepted only when the count plus one fits the
// ceiling. Hence the ceiling is exact: if n requests were accepted in any span shorter than W, the
// last of them saw all the others counted, and was accepted only because their count was at most
// ceiling-1. The price of bounded memory is that a request leaves the count up to q late (1 s for
// the minute, 1/32 s for the second), never early.
const (
	ringSlots = 64
	// MinuteSlot is the minute log's slot width; MinuteSpan slots (the current one and the 60
	// before) are counted.
	MinuteSlot = time.Second
	MinuteSpan = 61
	// SecondSlot is the second log's slot width; SecondSpan slots are counted.
	SecondSlot = time.Second / 32
	SecondSpan = 33
)

// Log is one bucketed sliding log: the counts of the last span slots, ending at slot Last.
// Slots outside the span hold 0.
type Log struct {
	Last  int64
	Total int64
	C     [ringSlots]int64
}

// Advance moves the log to slot s, dropping the slots that left the span. A slot earlier than Last
// (the clock stepped back) keeps counting into Last.
func (g *Log) Advance(s, span int64) {
	if s <= g.Last {
		return
	}
	if s-g.Last >= span {
		*g = Log{Last: s}
		return
	}
	for x := g.Last + 1; x <= s; x++ {
		i := (x - span) % ringSlots
		g.Total -= g.C[i]
		g.C[i] = 0
	}
	g.Last = s
}

// Add counts n in the current slot.
func (g *Log) Add(n int64) {
	g.C[g.Last%ringSlots] += n
	g.Total += n
}

// Set records a slot's count, for a log rebuilt from stored (slot, count) pairs; call it after
// Advance to the current slot, for slots within the span.
func (g *Log) Set(slot, n, span int64) {
	if slot <= g.Last-span {
		return
	}
	if slot > g.Last {
		slot = g.Last // another clock ahead of ours: count it now, as Check would
	}
	g.C[slot%ringSlots] += n
	g.Total += n
}

// until returns the slot at whose start the count falls to at most room: the oldest slots leave
// first, slot x at the start of slot x+span. It returns -1 when room < 0.
func (g *Log) until(room, span int64) int64 {
	if room < 0 {
		return -1
	}
	left := g.Total
	for x := g.Last - span + 1; x <= g.Last; x++ {
		if left <= room {
			return x - 1 + span
		}
		left -= g.C[x%ringSlots]
	}
	return g.Last + span
}

// Window is one scope's two logs.
type Window struct {
	Minute, Second Log
}

// Verdict is one scope's answer.
type Verdict struct {
	Allowed    bool
	Limit      int64         // the per-minute ceiling (the burst one when only that is set)
	Remaining  int64         // in the minute, after this request when allowed
	Reset      time.Duration // until the oldest counted request leaves the minute
	RetryAfter time.Duration // when refused: until one more request fits
	Kind       byte          // the scope
	Burst      bool          // refused by the 1 s ceiling
}

// Slots returns the minute and second slots of now (unix ns).
func Slots(now int64) (minute, second int64) {
	return now / int64(MinuteSlot), now / int64(SecondSlot)
}

// Check moves the window to now and says whether one more request fits l, without counting it.
// Call Take to count it.
func (w *Window) Check(now int64, l Limit) Verdict {
	ms, ss := Slots(now)
	w.Minute.Advance(ms, MinuteSpan)
	w.Second.Advance(ss, SecondSpan)
	v := Verdict{Limit: l.PerMinute, Allowed: true}
	if l.PerMinute <= 0 {
		v.Limit = l.Burst
	}
	if l.PerMinute > 0 {
		v.Remaining = l.PerMinute - w.Minute.Total - 1
		if w.Minute.Total+1 > l.PerMinute {
			v.Allowed = false
			at := w.Minute.until(l.PerMinute-1, MinuteSpan)
			v.RetryAfter = max(time.Duration(at*int64(MinuteSlot)-now), time.Nanosecond)
		}
	} else {
		v.Remaining = l.Burst - w.Second.Total - 1
	}
	if l.Burst > 0 && w.Second.Total+1 > l.Burst {
		at := w.Second.until(l.Burst-1, SecondSpan)
		ra := max(time.Duration(at*int64(SecondSlot)-now), time.Nanosecond)
		if v.Allowed || ra > v.RetryAfter {
			v.RetryAfter, v.Burst = ra, true
		}
		v.Allowed = false
	}
	// Reset: when the oldest counted request leaves the minute (at the start of its slot + span),
	// counting this one when it is admitted.
	if w.Minute.Total > 0 {
		v.Reset = time.Duration(w.Minute.until(w.Minute.Total-1, MinuteSpan)*int64(MinuteSlot) - now)
	} else if v.Allowed {
		v.Reset = time.Duration((ms+MinuteSpan)*int64(MinuteSlot) - now)
	}
	v.Remaining = max(v.Remaining, 0)
	return v
}

// Take counts one accepted request (after Check said it fits).
func (w *Window) Take() {
	w.Minute.Add(1)
	w.Second.Add(1)
}

// Decision combines the scopes' verdicts into what the client sees.
type Decision struct {
	Allowed       bool
	Limit         int64
	Remaining     int64
	ResetSec      int64
	RetryAfterSec int64
	// Scope is the kind of scope that decided (the refusing one, or the one with fewest left);
	// Burst says the 1 s ceiling refused.
	Scope byte
	Burst bool
}

// Combine reports the most constraining verdict: a refused one (the latest retry when several
// are), else the one with fewest requests remaining. Verdicts of scopes without a per-minute
// ceiling only count when they refuse.
func Combine(vs ...Verdict) Decision {
	var pick *Verdict
	allowed := true
	for i := range vs {
		v := &vs[i]
		switch {
		case !v.Allowed:
			if allowed || v.RetryAfter > pick.RetryAfter {
				pick = v
			}
			allowed = false
		case !allowed:
		case pick == nil || v.Remaining < pick.Remaining:
			pick = v
		}
	}
	if pick == nil {
		return Decision{Allowed: true}
	}
	d := Decision{Allowed: allowed, Limit: pick.Limit, Remaining: pick.Remaining, ResetSec: ceilSec(pick.Reset), Scope: pick.Kind, Burst: pick.Burst}
	if !d.Allowed {
		d.Remaining = 0
		d.RetryAfterSec = max(ceilSec(pick.RetryAfter), 1)
	}
	return d
}

// ScopeName names a scope kind for messages.
func ScopeName(k byte) string {
	switch k {
	case ScopeTenant:
		return "tenant"
	case ScopeKey:
		return "API key"
	case ScopeUser:
		return "user"
	}
	return "scope"
}

func ceilSec(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}

// MaxScopes is how many scopes one request counts against: tenant, key, user.
const MaxScopes = 3

// Scopes are the scopes of one request, passed by value so a decision allocates nothing.
type Scopes struct {
	S [MaxScopes]Scope
	N int
}

// Add appends a scope with a ceiling (one without any is left out: nothing to count).
func (s *Scopes) Add(kind byte, id string, l Limit) {
	if l.None() || s.N == MaxScopes {
		return
	}
	s.S[s.N] = Scope{Kind: kind, ID: id, Limit: l}
	s.N++
}

// List is the scopes added.
func (s *Scopes) List() []Scope { return s.S[:s.N] }

// KeyLimit is the ceiling of the API key whose credential id is cred: the key's own limits where
// it has them (admin API, tenants file), else the tenant's keyPerMinute with its burst. The
// tenant's total still applies on top.
func (e *Entry) KeyLimit(cred string) Limit {
	l := e.Policy.Key
	if k := e.Key(cred); k != nil && k.Limits != nil {
		if k.Limits.PerMinute > 0 {
			l.PerMinute = int64(k.Limits.PerMinute)
		}
		if k.Limits.Burst > 0 {
			l.Burst = int64(k.Limits.Burst)
		}
	}
	return l
}

// LimitUser is the user a request is limited as: the user a key is bound to, whatever x-user-id
// says, else x-user-id.
func (e *Entry) LimitUser(cred, user string) string {
	if k := e.Key(cred); k != nil && k.User != "" {
		return k.User
	}
	return user
}
