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
}

type booking struct {
	tokens     int64
	day, month string
	at         eventstore.Position // the outcome event, once recorded (0: a reservation)
}

// NewLedger returns an empty ledger.
func NewLedger() *Ledger { return &Ledger{tenants: map[string]map[string]*booking{}} }

// DayOf and MonthOf are the UTC periods a budget counts tokens in ("2026-11-29", "2026-11").
func DayOf(t time.Time) string   { return t.UTC().Format("2006-01-02") }
func MonthOf(t time.Time) string { return t.UTC().Format("2006-01") }

// Refusal says which ceiling a reservation would cross.
type Refusal struct {
	Period     string // "daily" or "monthly"
	Limit      int64
	Used       int64 // used plus booked
	RetryAfter time.Duration
}

// Reserve books tokens for turn if they fit under both ceilings (0 = none) on top of used (the read
// model, read under the ledger's lock) and the bookings it does not count yet. It returns a Refusal
// when they do not fit, and used's error when the read model cannot answer (nothing is booked then).
// Without any ceiling nothing is read nor booked.
func (l *Ledger) Reserve(tenant, turn string, tokens, daily, monthly int64, now time.Time, used func() (Usage, error)) (*Refusal, error) {
	if daily <= 0 && monthly <= 0 {
		return nil, nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	u, err := used()
	if err != nil {
		return nil, err
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
	if daily > 0 && u.Day+bookedDay+tokens > daily {
		next := time.Date(now.UTC().Year(), now.UTC().Month(), now.UTC().Day()+1, 0, 0, 0, 0, time.UTC)
		return &Refusal{Period: "daily", Limit: daily, Used: u.Day + bookedDay, RetryAfter: next.Sub(now)}, nil
	}
	if monthly > 0 && u.Month+bookedMonth+tokens > monthly {
		next := time.Date(now.UTC().Year(), now.UTC().Month()+1, 1, 0, 0, 0, 0, time.UTC)
		return &Refusal{Period: "monthly", Limit: monthly, Used: u.Month + bookedMonth, RetryAfter: next.Sub(now)}, nil
	}
	if bs == nil {
		bs = map[string]*booking{}
		l.tenants[tenant] = bs
	}
	bs[turn] = &booking{tokens: tokens, day: day, month: month}
	return nil, nil
}

// Settle replaces a turn's reservation by the tokens its outcome recorded, at the outcome event's
// position: counted here until the read model has applied that position. A turn without a
// reservation (its tenant had no ceiling) is left alone.
func (l *Ledger) Settle(tenant, turn string, tokens int64, at eventstore.Position) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if b, ok := l.tenants[tenant][turn]; ok {
		b.tokens, b.at = tokens, at
	}
}

// Release drops the reservation of a turn that recorded nothing.
func (l *Ledger) Release(tenant, turn string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if bs, ok := l.tenants[tenant]; ok {
		delete(bs, turn)
		if len(bs) == 0 {
			delete(l.tenants, tenant)
		}
	}
}

// Bookings is how many turns the ledger holds for tenant (tests).
func (l *Ledger) Bookings(tenant string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.tenants[tenant])
}
