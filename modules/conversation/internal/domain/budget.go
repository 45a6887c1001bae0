package domain

import (
	"sync"
	"time"
)

// Ledger holds every tenant's token use for the current UTC day and month, plus the reservations of
// turns in flight. Reserve checks and books atomically, so concurrent turns cannot overshoot a
// ceiling. Used tokens come only from recorded events (Count, fed by the projection on every
// start); a reservation stays booked until the projection has counted its turn, so a turn is never
// counted twice nor missed in between.
type Ledger struct {
	mu      sync.Mutex
	tenants map[string]*tenantLedger
}

type tenantLedger struct {
	day, month         string // the UTC day / month the counters are for
	usedDay, usedMonth int64
	reserved           map[string]*reservation // by turn id
	reservedDay        int64                   // reservations booked today
	reservedMonth      int64
}

type reservation struct {
	tokens     int64
	day, month string
}

// NewLedger returns an empty ledger.
func NewLedger() *Ledger { return &Ledger{tenants: map[string]*tenantLedger{}} }

func dayOf(t time.Time) string   { return t.UTC().Format("2006-01-02") }
func monthOf(t time.Time) string { return t.UTC().Format("2006-01") }

func (l *Ledger) get(tenant string, now time.Time) *tenantLedger {
	tl, ok := l.tenants[tenant]
	if !ok {
		tl = &tenantLedger{reserved: map[string]*reservation{}}
		l.tenants[tenant] = tl
	}
	d, m := dayOf(now), monthOf(now)
	if tl.day != d {
		tl.day, tl.usedDay, tl.reservedDay = d, 0, 0
		for _, r := range tl.reserved {
			if r.day == d {
				tl.reservedDay += r.tokens
			}
		}
	}
	if tl.month != m {
		tl.month, tl.usedMonth, tl.reservedMonth = m, 0, 0
		for _, r := range tl.reserved {
			if r.month == m {
				tl.reservedMonth += r.tokens
			}
		}
	}
	return tl
}

// Refusal says which ceiling a reservation would cross.
type Refusal struct {
	Period     string // "daily" or "monthly"
	Limit      int64
	Used       int64 // used plus reserved
	RetryAfter time.Duration
}

// Reserve books tokens for turn if they fit under both ceilings (0 = none). It returns nil on success.
func (l *Ledger) Reserve(tenant, turn string, tokens, daily, monthly int64, now time.Time) *Refusal {
	l.mu.Lock()
	defer l.mu.Unlock()
	if daily <= 0 && monthly <= 0 {
		return nil // no ceiling: nothing to hold back (used tokens are still counted by Count)
	}
	tl := l.get(tenant, now)
	if daily > 0 && tl.usedDay+tl.reservedDay+tokens > daily {
		next := time.Date(now.UTC().Year(), now.UTC().Month(), now.UTC().Day()+1, 0, 0, 0, 0, time.UTC)
		return &Refusal{Period: "daily", Limit: daily, Used: tl.usedDay + tl.reservedDay, RetryAfter: next.Sub(now)}
	}
	if monthly > 0 && tl.usedMonth+tl.reservedMonth+tokens > monthly {
		next := time.Date(now.UTC().Year(), now.UTC().Month()+1, 1, 0, 0, 0, 0, time.UTC)
		return &Refusal{Period: "monthly", Limit: monthly, Used: tl.usedMonth + tl.reservedMonth, RetryAfter: next.Sub(now)}
	}
	tl.reserved[turn] = &reservation{tokens: tokens, day: dayOf(now), month: monthOf(now)}
	tl.reservedDay += tokens
	tl.reservedMonth += tokens
	return nil
}

func (tl *tenantLedger) unbook(turn string) (*reservation, bool) {
	r, ok := tl.reserved[turn]
	if !ok {
		return nil, false
	}
	delete(tl.reserved, turn)
	if r.day == tl.day {
		tl.reservedDay -= r.tokens
	}
	if r.month == tl.month {
		tl.reservedMonth -= r.tokens
	}
	return r, true
}

// Settle replaces a turn's reservation by its real use, after its outcome event was appended. If
// the projection has already counted the turn, the reservation is simply dropped.
func (l *Ledger) Settle(tenant, turn string, actual int64, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	tl := l.get(tenant, now)
	r, ok := tl.unbook(turn)
	if !ok {
		return // the projection has already counted the turn
	}
	r.tokens = actual
	tl.reserved[turn] = r
	if r.day == tl.day {
		tl.reservedDay += actual
	}
	if r.month == tl.month {
		tl.reservedMonth += actual
	}
}

// Release drops a reservation of a turn that recorded nothing.
func (l *Ledger) Release(tenant, turn string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.get(tenant, now).unbook(turn)
}

// Count adds a recorded turn's tokens at the event's time (the projection calls it for every
// outcome event, on replay and live) and drops the turn's reservation if it is still booked.
func (l *Ledger) Count(tenant, turn string, tokens int64, at, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	tl := l.get(tenant, now)
	tl.unbook(turn)
	if dayOf(at) == tl.day {
		tl.usedDay += tokens
	}
	if monthOf(at) == tl.month {
		tl.usedMonth += tokens
	}
}

// Used reports a tenant's used and reserved tokens today and this month.
func (l *Ledger) Used(tenant string, now time.Time) (day, month int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	tl := l.get(tenant, now)
	return tl.usedDay + tl.reservedDay, tl.usedMonth + tl.reservedMonth
}
