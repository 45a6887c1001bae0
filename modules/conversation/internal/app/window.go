package app

import (
	"context"
	"time"

	"github.com/crispy-enigma/crispy/modules/conversation/internal/domain"
	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// TokenWindow is a tokens-per-minute log shared by replicas (the tenancy module's, in Redis): the
// tenant's rateLimit.tokensPerMinute and a key's limits.tokensPerMinute are booked there instead of
// in the per-process Ledger, so the ceiling holds across replicas. A failing window (Redis down or
// slow) is not waited for: the call is booked in the Ledger's per-process log instead, unless the
// window answers an *apperr.Error (it fails closed), which refuses the call.
type TokenWindow interface {
	// Reserve books prompt and up to want completion tokens (at least least) of turn in scope's
	// log of t, under limit tokens in any 60 s.
	Reserve(ctx context.Context, t tenant.ID, scope, turn string, prompt, want, least, limit int64, now time.Time) (TokenGrant, error)
	// Settle replaces turn's reservation by the tokens it used; Release drops it.
	Settle(ctx context.Context, t tenant.ID, scope, turn string, tokens int64) error
	Release(ctx context.Context, t tenant.ID, scope, turn string) error
}

// TokenGrant is a TokenWindow reservation's answer: OK with Granted completion tokens, or refused
// with the tokens Used in the last 60 s and when enough of them leave.
type TokenGrant struct {
	OK         bool
	Granted    int64
	Used       int64
	RetryAfter time.Duration
}

// Window scopes: the tenant's log, and an API key's.
const windowTenant = "t"

func windowKey(key string) string { return "k:" + key }

type windowBooking struct {
	t     tenant.ID
	scope string
}

// windowLogEvery spaces out the warnings of a failing window.
const windowLogEvery = 10 * time.Second

// reserveWindow books up to want completion tokens of turn under limit per minute in the shared
// window's scope, and returns what it granted (a Refusal when fewer than least fit). When the
// window fails, the call is booked in the Ledger's per-process log under ledgerScope instead (each
// replica then holds its own calls to the limit, as without Redis).
func (s *Service) reserveWindow(ctx context.Context, t tenant.ID, scope, ledgerScope, turn string, prompt, want, least, limit int64, now time.Time) (int64, *domain.Refusal, error) {
	g, err := s.Window.Reserve(ctx, t, scope, turn, prompt, want, least, limit, now)
	if err != nil {
		if ctx.Err() != nil {
			return 0, nil, ctx.Err()
		}
		if _, ok := apperr.As(err); ok {
			return 0, nil, err // the window fails closed: the call is refused
		}
		if last := s.windowLog.Load(); now.UnixNano()-last >= int64(windowLogEvery) && s.windowLog.CompareAndSwap(last, now.UnixNano()) {
			s.Log.WarnContext(ctx, "shared tokens-per-minute log failed: counting this process's calls only", "tenant", t.String(), "error", err.Error())
		}
		return s.Ledger.ReserveUpTo(ledgerScope, turn, prompt, want, least, domain.Ceilings{PerMinute: limit}, now, nil)
	}
	if !g.OK {
		return 0, &domain.Refusal{Period: "per-minute", Limit: limit, Used: g.Used, RetryAfter: g.RetryAfter}, nil
	}
	v, _ := s.windowed.LoadOrStore(turn, &windowBookings{})
	b := v.(*windowBookings)
	b.add(windowBooking{t: t, scope: scope})
	return g.Granted, nil, nil
}

// windowBookings are a turn's bookings in the shared window (the tenant's, its key's).
type windowBookings struct {
	list []windowBooking
}

func (w *windowBookings) add(b windowBooking) { w.list = append(w.list, b) }

// WindowDone is the Ledger's Hook: a turn's Settle or Release applies to its window bookings too.
// It does not wait for the client: the outcome is recorded by then, and a booking the window could
// not update counts its reservation until it leaves the window (60 s).
func (s *Service) WindowDone(turn string, tokens int64, settled bool) {
	v, ok := s.windowed.LoadAndDelete(turn)
	if !ok {
		return
	}
	ctx := context.Background()
	for _, b := range v.(*windowBookings).list {
		var err error
		if settled {
			err = s.Window.Settle(ctx, b.t, b.scope, turn, tokens)
		} else {
			err = s.Window.Release(ctx, b.t, b.scope, turn)
		}
		if err != nil {
			s.Log.WarnContext(ctx, "shared tokens-per-minute log: a booking not updated counts its reservation until it leaves the window", "tenant", b.t.String(), "error", err.Error())
		}
	}
}
