package domain

import (
	"sync"
	"time"

	"github.com/crispy-enigma/crispy/platform/eventstore"
)

// Usage is a tenant's recorded token use as the token ledger read model has it: the tokens of the
// current UTC day and month, counted from every event up to position At.
type Usage struct {
	Day, Month int64
	At         eventstore.Position
}

// Ledger books, on top of the recorded use (the token ledger read model, read through the func
// given to Reserve), what the read model does not count yet: the reservations of this process's
// turns in flight, and the real use of its turns recorded after the read model's snapshot.
//
//   - Reserve checks and books a turn's worst case, atomically, so concurrent turns cannot overshoot
//     a ceiling;
//   - Settle, once the turn's outcome is appended, replaces the booking by the tokens recorded and
//     the position of the outcome event;
//   - a booking at or below the position of the read model's snapshot is counted there: it is left
//     out of the sum, and dropped.
//
// So a turn's own use counts for the next turn on this replica from the moment its outcome is
// acknowledged (before the read model has applied it), and never twice. Memory holds only the
// turns in flight and those recorded since a tenant's last reservation.
type Ledger struct {
	mu      sync.Mutex
	tenants map[string]map[string]*booking // tenant → turn id → booking
	minute  map[string][]minuteBooking     // tenant → its reservations and uses of the last minute
	// linked are the other scopes a turn is booked under (an API key's token budget: KeyScope;
	// its USD budget: KeyCostScope), which its Settle and Release apply to as well.
	linked map[string][]link
	// Hook, when set, is told every Settle (settled, with the tokens) and Release of a turn, after
	// the ledger's lock is released: the shared tokens-per-minute log books outside the ledger.
	Hook func(turn string, tokens int64, settled bool)
}

// link is a scope a turn is also booked under. A cost scope counts nano-USD, not tokens: Settle
// keeps its reservation (priced at the dearest model the call could reach) and only marks its
// position, so it counts until the read model counts the call at its real cost.
type link struct {
	scope string
	cost  bool
}

// KeyScope is the ledger scope of an API key's own token budget within tenant.
func KeyScope(tenant, key string) string { return tenant + "\x00" + key }

// KeyCostScope is the ledger scope of an API key's own USD budget within tenant (in nano-USD).
func KeyCostScope(tenant, key string) string { return tenant + "\x00" + key + "\x00usd" }

// Link books turn's Settle and Release under scope too (a key's budget, reserved with ReserveUpTo
// under that scope). cost marks a scope counted in nano-USD (ReserveSpend).
func (l *Ledger) Link(turn, scope string, cost bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.linked[turn] = append(l.linked[turn], link{scope: scope, cost: cost})
}

// minuteBooking is a turn's tokens in the tokens-per-minute log: booked at at, its reservation
// until it settles, then its recorded use. It counts for a minute from at, wherever the read model
// is: a minute is too short to wait for it, and the log is this process's own (see README).
type minuteBooking struct {
	turn   string
	at     time.Time
	tokens int64
}

type booking struct {
	tokens     int64
	day, month string
	at         eventstore.Position // the outcome event, once recorded (0: a reservation)
}

// NewLedger returns an empty ledger.
func NewLedger() *Ledger {
	return &Ledger{tenants: map[string]map[string]*booking{}, minute: map[string][]minuteBooking{}, linked: map[string][]link{}}
}

// DayOf and MonthOf are the UTC periods a budget counts tokens in ("2026-11-29", "2026-11").
func DayOf(t time.Time) string   { return t.UTC().Format("2006-01-02") }
func MonthOf(t time.Time) string { return t.UTC().Format("2006-01") }

// SpendTokens are a call's tokens as its cost is computed from: prompt (cached included) and
// completion (reasoning included), with the cached and reasoning shares the price table may bill
// apart.
type SpendTokens struct {
	Prompt, Cached, Completion, Reasoning int64
}

// Refusal says which ceiling a reservation would cross.
type Refusal struct {
	Period     string // "daily" or "monthly"
	Limit      int64
	Used       int64 // used plus booked
	RetryAfter time.Duration
}

// Ceilings are a tenant's token ceilings (0: none): per UTC day, per UTC month, and in any 60 s.
type Ceilings struct {
	Daily, Monthly, PerMinute int64
}

func (c Ceilings) none() bool { return c.Daily <= 0 && c.Monthly <= 0 && c.PerMinute <= 0 }

// Reserve books tokens for turn if they fit under both ceilings (0 = none) on top of used (the read
// model, read under the ledger's lock) and the bookings it does not count yet. It returns a Refusal
// when they do not fit, and used's error when the read model cannot answer (nothing is booked then).
// Without any ceiling nothing is read nor booked.
func (l *Ledger) Reserve(tenant, turn string, tokens, daily, monthly int64, now time.Time, used func() (Usage, error)) (*Refusal, error) {
	_, r, err := l.ReserveUpTo(tenant, turn, 0, tokens, tokens, Ceilings{Daily: daily, Monthly: monthly}, now, used)
	return r, err
}

// ReserveUpTo books prompt tokens and as many completion tokens as fit, up to want and at least
// least, under every ceiling, and returns the completion tokens granted: the max_tokens to send
// upstream, so that a model that stops at max_tokens cannot take the tenant past a ceiling however
// many turns run at once. It refuses (a Refusal naming the tightest ceiling) when fewer than least
// fit. Without any ceiling it books nothing and grants want.
func (l *Ledger) ReserveUpTo(tenant, turn string, prompt, want, least int64, c Ceilings, now time.Time, used func() (Usage, error)) (int64, *Refusal, error) {
	return l.reserve(tenant, turn, prompt, 1, want, least, c, now, used)
}

// ReserveSpend is ReserveUpTo for a budget counted in nano-USD (an API key's dailyUsd/monthlyUsd):
// promptCost is what the prompt costs, perToken what each completion token may cost (the dearest
// model the call may reach); it grants as many completion tokens as the money left pays for, up
// to want, and refuses when fewer than least are paid for or nothing is left. Ceilings and used
// are in nano-USD; PerMinute does not apply.
func (l *Ledger) ReserveSpend(scope, turn string, promptCost, perToken, want, least int64, c Ceilings, now time.Time, used func() (Usage, error)) (int64, *Refusal, error) {
	c.PerMinute = 0
	return l.reserve(scope, turn, promptCost, max(perToken, 0), want, least, c, now, used)
}

// reserve books prompt units and unit units per completion token granted (tokens: 1 and 1).
func (l *Ledger) reserve(tenant, turn string, prompt, unit, want, least int64, c Ceilings, now time.Time, used func() (Usage, error)) (int64, *Refusal, error) {
	if c.none() {
		return want, nil, nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var u Usage
	if c.Daily > 0 || c.Monthly > 0 {
		var err error
		if u, err = used(); err != nil {
			return 0, nil, err
		}
	}
	day, month := DayOf(now), MonthOf(now)
	bookedDay, bookedMonth := int64(0), int64(0)
	bs := l.tenants[tenant]
	for id, b := range bs {
		if b.at != 0 && b.at <= u.At {
			delete(bs, id) // the read model counts it
			continue
		}
		if b.day == day {
			bookedDay += b.tokens
		}
		if b.month == month {
			bookedMonth += b.tokens
		}
	}
	grant := want
	var refusal *Refusal
	fit := func(limit, usedOrBooked int64, r func() *Refusal) {
		if limit <= 0 {
			return
		}
		left := limit - usedOrBooked
		room := left - prompt
		if unit == 0 {
			// Completion tokens cost nothing (an unpriced or free model): only the prompt's
			// cost and a budget already spent can refuse.
			if left <= 0 || room < 0 {
				grant, refusal = 0, r()
			}
			return
		}
		if room < grant*unit {
			grant = room / unit
			if room < 0 {
				grant = min(room, -1) // room/unit rounds a small debt up to 0
			}
			if grant < least {
				refusal = r()
			}
		}
	}
	fit(c.Daily, u.Day+bookedDay, func() *Refusal {
		next := time.Date(now.UTC().Year(), now.UTC().Month(), now.UTC().Day()+1, 0, 0, 0, 0, time.UTC)
		return &Refusal{Period: "daily", Limit: c.Daily, Used: u.Day + bookedDay, RetryAfter: next.Sub(now)}
	})
	fit(c.Monthly, u.Month+bookedMonth, func() *Refusal {
		next := time.Date(now.UTC().Year(), now.UTC().Month()+1, 1, 0, 0, 0, 0, time.UTC)
		return &Refusal{Period: "monthly", Limit: c.Monthly, Used: u.Month + bookedMonth, RetryAfter: next.Sub(now)}
	})
	if c.PerMinute > 0 {
		log := l.minute[tenant][:0]
		var inMinute int64
		for _, m := range l.minute[tenant] {
			if now.Sub(m.at) < time.Minute {
				log = append(log, m)
				inMinute += m.tokens
			}
		}
		l.minute[tenant] = log
		fit(c.PerMinute, inMinute, func() *Refusal {
			// The oldest bookings leave first: retry once enough of them have.
			need, retry := inMinute+prompt+least-c.PerMinute, time.Minute
			for _, m := range log {
				if need -= m.tokens; need <= 0 {
					retry = m.at.Add(time.Minute).Sub(now)
					break
				}
			}
			return &Refusal{Period: "per-minute", Limit: c.PerMinute, Used: inMinute, RetryAfter: retry}
		})
	}
	if refusal != nil {
		return 0, refusal, nil
	}
	if c.Daily > 0 || c.Monthly > 0 {
		if bs == nil {
			bs = map[string]*booking{}
			l.tenants[tenant] = bs
		}
		bs[turn] = &booking{tokens: prompt + grant*unit, day: day, month: month}
	}
	if c.PerMinute > 0 {
		l.minute[tenant] = append(l.minute[tenant], minuteBooking{turn: turn, at: now, tokens: prompt + grant*unit})
	}
	return grant, nil, nil
}

// Settle replaces a turn's reservation by the tokens its outcome recorded, at the outcome event's
// position: counted here until the read model has applied that position. A turn without a
// reservation (its tenant had no ceiling) is left alone.
func (l *Ledger) Settle(tenant, turn string, tokens int64, at eventstore.Position) {
	if l.Hook != nil {
		defer l.Hook(turn, tokens, true)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range l.linked[turn] {
		if b, ok := l.tenants[k.scope][turn]; ok {
			if !k.cost {
				b.tokens = tokens
			}
			b.at = at
		}
		if !k.cost {
			l.settleMinute(k.scope, turn, tokens)
		}
	}
	delete(l.linked, turn)
	if b, ok := l.tenants[tenant][turn]; ok {
		b.tokens, b.at = tokens, at
	}
	l.settleMinute(tenant, turn, tokens)
}

func (l *Ledger) settleMinute(scope, turn string, tokens int64) {
	for i := range l.minute[scope] {
		if m := &l.minute[scope][i]; m.turn == turn {
			m.tokens = tokens
		}
	}
}

// Release drops the reservation of a turn that recorded nothing.
func (l *Ledger) Release(tenant, turn string) {
	if l.Hook != nil {
		defer l.Hook(turn, 0, false)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range l.linked[turn] {
		l.release(k.scope, turn)
	}
	delete(l.linked, turn)
	l.release(tenant, turn)
}

func (l *Ledger) release(tenant, turn string) {
	if bs, ok := l.tenants[tenant]; ok {
		delete(bs, turn)
		if len(bs) == 0 {
			delete(l.tenants, tenant)
		}
	}
	ms := l.minute[tenant]
	for i := range ms {
		if ms[i].turn == turn {
			l.minute[tenant] = append(ms[:i], ms[i+1:]...)
			break
		}
	}
	if len(l.minute[tenant]) == 0 {
		delete(l.minute, tenant)
	}
}

// Bookings is how many turns the ledger holds for tenant (tests).
func (l *Ledger) Bookings(tenant string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.tenants[tenant])
}
